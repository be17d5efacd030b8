"""The torchrun entry point: flags -> RunSpec, and a 2-process run equal to the simulation's."""

import json
from dataclasses import asdict, replace

import pytest

from pipelines.train_distributed import build_parser, main, spec_from_args
from training.distributed import init_distributed, launch_local
from training.study.run import execute_run

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


@pytest.mark.parametrize("change, message", [
    (["--model", "gn-lenett"], "unknown model 'gn-lenett'"),
    (["--algorithm", "gaiaa"], "unknown algorithm 'gaiaa'"),
    (["--param", "t0s=0.2"], "t0s"),
    (["--noniid-fraction", "1.5"], "noniid_fractions [1.5] must be in [0, 1]"),
    (["--image-size", "0"], "image_size = 0 (digits): give a whole number >= 1"),
    (["--partitioner", "nope"], "unknown partitioner 'nope'"),
    (["--train", "lrr=0.1"], "lrr"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent"], "no cifar-10-batches-py folder"),
])
def test_bad_arguments_are_one_line_before_any_process_group(change, message, capsys,
                                                              monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)    # reaching init_distributed would raise
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main([*ARGV, *change]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_a_bad_spec_file_is_one_line_and_only_rank_0_says_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["--spec", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{\"model\": ")
    assert main(["--spec", str(tmp_path / "bad.json")]) == 2
    assert "not a run spec" in capsys.readouterr().err
    spec = spec_from_args(build_parser().parse_args(ARGV), world_size=2)
    (tmp_path / "spec.json").write_text(json.dumps(asdict(spec)))
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    assert main(["--spec", str(tmp_path / "spec.json")]) == 2
    assert capsys.readouterr().err == ""                  # rank 1 is quiet
    monkeypatch.setenv("RANK", "0")
    assert main(["--spec", str(tmp_path / "spec.json")]) == 2
    assert "use torchrun --nproc_per_node=2" in capsys.readouterr().err


def test_a_spec_is_checked_as_the_study_checks_its_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    spec = spec_from_args(build_parser().parse_args(ARGV), world_size=2)
    assert spec.dataset == {"name": "digits", "image_size": 8}
    (tmp_path / "spec.json").write_text(json.dumps({**asdict(spec), "dataset": {"name": "mnist"}}))
    assert main(["--spec", str(tmp_path / "spec.json")]) == 2
    assert capsys.readouterr().err == ("error: dataset.name='mnist'; choose one of digits, "
                                       "cifar10, flickr_mammal\n")
    default = spec_from_args(build_parser().parse_args(["--model", "gn-lenet"]), world_size=2)
    assert default.dataset == {"name": "digits"}     # the study's default digits: 16 px


def test_each_train_config_field_is_a_flag_given_only_when_told():
    spec = spec_from_args(build_parser().parse_args([*ARGV, "--lr", "0.05", "--lr-milestones",
                                                     "0.6", "--no-progress"]), world_size=2)
    assert spec.train["lr"] == 0.05 and spec.train["lr_milestones"] == (0.6,)
    assert spec.train["progress"] is False       # --train progress=false comes after the flags
    bare = spec_from_args(build_parser().parse_args(["--model", "gn-lenet"]), world_size=2)
    assert bare.train == {"iterations": 1000}       # TrainConfig's own defaults stand
    assert bare.partitioner == "label_skew"         # the dataset's partitioner


def test_a_field_added_to_train_config_is_a_flag(monkeypatch):
    from dataclasses import dataclass

    import pipelines.train_distributed as cli
    from training.engine import TrainConfig

    @dataclass(frozen=True)
    class Wider(TrainConfig):
        warmup: int = 0                  # iterations of warm-up

    monkeypatch.setattr(cli, "TrainConfig", Wider)
    assert "iterations of warm-up" in cli.build_parser().format_help()
    spec = spec_from_args(cli.build_parser().parse_args([*ARGV, "--warmup", "5"]), world_size=2)
    assert spec.train["warmup"] == 5


def test_image_size_help_says_it_is_the_training_side():
    text = " ".join(build_parser().format_help().split())
    assert "--image-size IMAGE_SIZE the side (px) digits are resized to for training" in text
