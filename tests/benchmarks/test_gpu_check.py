"""benchmarks/gpu_check.py in its CPU quick mode (the simulation runs, the speed tables and the
cleaning timing; torchrun is left to the GPU machine), and its pieces."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402


def test_quick_cpu_mode_runs_every_config_and_writes_a_summary(tmp_path):
    out = tmp_path / "summary.json"
    code = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out),
                           "--sections", "configs", "speed", "clean"])
    summary = json.loads(out.read_text())
    assert code == 0 and summary["failures"] == 0
    runs = summary["sections"]["configs"]["result"]
    shipped = {p.stem for p in (BENCHMARKS.parent / "pipelines" / "configs").glob("*.toml")}
    # every config is loaded; each kind of run goes once (digits_full and the SkewScout seed
    # configs repeat the default's kinds, so they add none)
    ran = {r["config"] for r in runs}
    assert ran <= shipped and all(r["ok"] for r in runs)
    assert {"default", "baselines", "cifar10_alexnet", "flickr_mammal_continents"} <= ran
    kinds = [(r["config"], r["model"], r["algorithm"], r["mode"]) for r in runs]
    assert len(kinds) == len(set(kinds))
    speed = summary["sections"]["speed"]["result"]
    assert {r["config"] for r in speed["speed"]} == {"limit", "bsp/loop", "bsp/vmap"}
    assert all(r["ops_per_step"] > 0 and r["syncs_per_step"] == 0 for r in speed["speed"])
    assert {r["k"] for r in speed["scaling"]} == {5, 20}
    clean = summary["sections"]["clean"]["result"]
    assert clean[0]["model"] == "efficientnet_lite0" and 0 <= clean[0]["top5_agreement_pct"] <= 100


def test_non_finite_results_and_failed_runs_fail_the_check(monkeypatch, tmp_path):
    assert gpu_check.finite({"a": [1.0, {"b": 2}], "c": None, "d": "x"})
    assert not gpu_check.finite({"a": [1.0, float("nan")]})
    assert not gpu_check.finite({"curve": [[50, float("inf")]]})

    def diverged(spec):
        return {"final_acc": float("nan"), "spec": {}}

    def crashed(spec):
        raise RuntimeError("boom")

    out = tmp_path / "s.json"
    for fake in (diverged, crashed):
        monkeypatch.setattr(gpu_check, "execute_run", fake)
        assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out),
                               "--sections", "configs"]) == 1
        summary = json.loads(out.read_text())
        runs = summary["sections"]["configs"]["result"]
        assert summary["failures"] == len(runs) >= 6 and not any(r["ok"] for r in runs)


def test_cuda_without_a_gpu_is_a_one_line_error(capsys, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 2
    assert "--device cpu --quick" in capsys.readouterr().err


def test_pick_runs_takes_every_kind_first():
    from training.study.config import DEFAULT_CONFIG, load_study

    specs = load_study(DEFAULT_CONFIG).all_runs()
    picked = gpu_check.pick_runs(specs, 4)
    kinds = [(s.model, s.algorithm, s.mode) for s in picked]
    assert len(picked) == 4 and len(set(kinds)) == 4


def test_pick_runs_with_seen_runs_each_kind_once_across_configs():
    """The configs section runs a kind of run (data, model, algorithm, mode, code-path
    settings) once over all shipped configs: the digits configs repeat the default's kinds."""
    from training.study.config import DEFAULT_CONFIG, load_study

    seen: set = set()
    default = gpu_check.pick_runs(load_study(DEFAULT_CONFIG).all_runs(), 100, seen)
    again = gpu_check.pick_runs(load_study(DEFAULT_CONFIG.parent / "digits_skewscout_seeds.toml")
                                .all_runs(), 100, seen)
    kinds = [gpu_check.run_kind(s) for s in default]
    assert len(kinds) == len(set(kinds)) and again == []
    baselines = gpu_check.pick_runs(load_study(DEFAULT_CONFIG.parent / "baselines.toml")
                                    .all_runs(), 100, seen)
    assert {s.algorithm for s in baselines} >= {"fedprox", "scaffold", "ef_topk", "fedbn"}
    assert any(s.train.get("norm_stats") == "fixbn" for s in baselines)


def test_quick_mode_runs_the_precision_flickr_and_skewscout_sections_and_estimates_an_h100(
        tmp_path):
    out = tmp_path / "summary.json"
    code = gpu_check.main(["--device", "cpu", "--quick", "--out", str(out),
                           "--sections", "precision", "flickr", "skewscout"])
    summary = json.loads(out.read_text())
    assert code == 0 and summary["failures"] == 0
    rows = {s: summary["sections"][s]["result"] for s in ("precision", "flickr", "skewscout")}
    assert [r["variant"] for r in rows["precision"]] == ["fp32", "channels_last"]
    assert rows["flickr"][0]["dataset"] == "flickr_mammal"
    assert rows["skewscout"][0]["mode"] == "skewscout"
    estimate = summary["h100_estimate"]
    assert set(estimate["seconds"]) == set(gpu_check.SECTIONS)
    # the total depends on the decode time measured here (machine load), so it is reported by
    # the benchmark, not asserted: the sections add up to it
    assert estimate["total_seconds"] == pytest.approx(sum(estimate["seconds"].values()), abs=0.5)
    assert estimate["basis"]["models"]["torchvision:googlenet/42/3/224"]["fwd_flops"] > 1e9


def test_a_step_costs_the_largest_of_compute_launches_and_decoding():
    from gpu_check_estimate import (
        EFFICIENCY,
        H100_TFLOPS,
        OPS_PER_STEP_FACTOR,
        SECONDS_PER_OP,
        step_seconds,
    )

    tiny = {"fwd_flops": 1e6, "ops": 100.0}       # launch-bound
    assert step_seconds(tiny, 10) == pytest.approx(100 * OPS_PER_STEP_FACTOR * SECONDS_PER_OP)
    big = {"fwd_flops": 1e10, "ops": 10.0}        # compute-bound: 3 x forward per image
    throughput = H100_TFLOPS["fp32"] * 1e12 * EFFICIENCY
    assert step_seconds(big, 100) == pytest.approx(3e12 / throughput)
    bf16 = H100_TFLOPS["bf16"] * 1e12 * EFFICIENCY
    assert step_seconds(big, 100, "bf16") == pytest.approx(3e12 / bf16)
    assert step_seconds(tiny, 160, decode_seconds=0.1) == pytest.approx(160 * 0.1 / 16)
