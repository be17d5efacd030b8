"""The torchrun entry point: flags -> RunSpec, and a 2-process run equal to the simulation's."""

import json
from dataclasses import replace

import pytest

from pipelines.train_distributed import build_parser, main, spec_from_args
from training.distributed import init_distributed, launch_local
from training.study.runner import execute_run

ARGV = ["--dataset", "digits", "--image-size", "8", "--model", "gn-lenet", "--algorithm",
        "fedavg", "--param", "iter_local=3", "--noniid-fraction", "1.0", "--iterations", "9",
        "--batch-size", "40", "--train", "eval_every=9", "--train", "progress=false"]


def test_flags_build_a_distributed_run_spec():
    spec = spec_from_args(build_parser().parse_args(ARGV), world_size=2)
    assert spec.dataset == {"name": "digits", "image_size": 8}
    assert spec.algorithm_params == {"iter_local": 3}
    assert spec.train == {"iterations": 9, "batch_size": 40, "eval_every": 9, "progress": False}
    assert spec.num_partitions == 2 and spec.engine == "distributed" and spec.knob == 3


def test_cifar10_without_data_root_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--dataset", "cifar10", "--model", "lenet", "--algorithm", "bsp"])
    assert info.value.code == 2
    assert "--dataset cifar10 needs --data-root" in capsys.readouterr().err


def test_init_distributed_explains_how_to_launch(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(RuntimeError, match="torchrun"):
        init_distributed("gloo")


def _run_main(rank: int, argv: list[str]) -> None:
    assert main(argv) == 0


def test_two_processes_reproduce_the_simulation_run(tmp_path):
    out = tmp_path / "row.json"
    launch_local(_run_main, 2, ([*ARGV, "--out", str(out)],))
    row = json.loads(out.read_text())
    spec = spec_from_args(build_parser().parse_args(ARGV), world_size=2)
    sim = execute_run(replace(spec, engine="simulation"))
    assert row["final_acc"] == pytest.approx(sim["final_acc"], abs=1e-6)
    assert row["bytes_sent"] == pytest.approx(sim["bytes_sent"])
    assert row["iterations"] == 9 and row["spec"]["engine"] == "distributed"
