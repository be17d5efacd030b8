"""A seed group (engine: ``Trainer(seeds=...)``) trains S runs in one stack; each run's result
must equal that seed trained alone."""

from __future__ import annotations

import pytest
import torch

from training.algorithms import create_algorithm
from training.comm import GroupedComm, LocalComm
from training.engine import DivergedError, PartitionData, TrainConfig, Trainer
from training.models import create_model

SEEDS = (0, 1, 2)
K = 3
ALGORITHMS = {
    "bsp": {},
    "gaia": {"t0": 0.05},
    "fedavg": {"iter_local": 3},
    "dgc": {"sparsity": 0.99, "warmup_epoch_iterations": 2},
}


def _model() -> torch.nn.Module:
    return create_model("bn-lenet", num_classes=4, in_channels=1, image_size=8)


def _partitions(seed: int) -> list[PartitionData]:
    """Each seed its own partitions (as the study partitions by seed)."""
    gen = torch.Generator().manual_seed(100 + seed)
    return [PartitionData(torch.randn(12, 1, 8, 8, generator=gen),
                          torch.randint(0, 4, (12,), generator=gen)) for _ in range(K)]


VAL = PartitionData(torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(7)),
                    torch.arange(24) % 4)


def _config(seed: int, vectorize: bool) -> TrainConfig:
    return TrainConfig(iterations=7, batch_size=4 * K, lr=0.05, eval_every=3, seed=seed,
                       lr_milestones=(0.5,), vectorize=vectorize, progress=False)


def _alone(algorithm: str, seed: int, vectorize: bool) -> tuple[Trainer, object]:
    trainer = Trainer(_model, create_algorithm(algorithm, **ALGORITHMS[algorithm]),
                      _partitions(seed), VAL, _config(seed, vectorize))
    return trainer, trainer.run()


def _group(algorithm: str, vectorize: bool) -> tuple[Trainer, list]:
    train = [p for seed in SEEDS for p in _partitions(seed)]
    trainer = Trainer(_model, create_algorithm(algorithm, **ALGORITHMS[algorithm]), train, VAL,
                      _config(99, vectorize), seeds=SEEDS)
    return trainer, trainer.run_group()


def _same(result, other) -> None:
    assert result.curve == other.curve
    assert result.global_curve == other.global_curve
    assert result.final == other.final
    assert result.bytes_sent == other.bytes_sent
    assert result.bytes_received == other.bytes_received
    assert result.wire_bytes_sent == other.wire_bytes_sent
    assert result.bytes_curve == other.bytes_curve
    assert result.iterations == other.iterations


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_group_equals_runs_alone_loop(algorithm: str) -> None:
    """The per-partition loop: every run of the group is bit-for-bit its seed alone."""
    group, results = _group(algorithm, vectorize=False)
    for run, seed in enumerate(SEEDS):
        alone, result = _alone(algorithm, seed, vectorize=False)
        _same(results[run], result)
        assert torch.equal(group.stack.params[run * K:(run + 1) * K], alone.stack.params)
        for name, buffer in group.stack.buffers.items():
            assert torch.equal(buffer[run * K:(run + 1) * K], alone.stack.buffers[name])


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_group_equals_runs_alone_vmap(algorithm: str) -> None:
    """The vmap pass over S*N replicas: each run equals its seed alone to float tolerance (the
    batched kernels may sum in another order), and its bytes exactly."""
    group, results = _group(algorithm, vectorize=True)
    for run, seed in enumerate(SEEDS):
        alone, result = _alone(algorithm, seed, vectorize=True)
        torch.testing.assert_close(group.stack.params[run * K:(run + 1) * K],
                                   alone.stack.params, rtol=1e-4, atol=1e-5)
        assert results[run].final.mean == pytest.approx(result.final.mean, abs=1 / 24 + 1e-9)


def test_runs_of_a_group_differ() -> None:
    """Each run has its own initial model and data: the group is not S copies of one run."""
    group, results = _group("bsp", vectorize=False)
    first, second = group.stack.params[0], group.stack.params[K]
    assert not torch.equal(first, second)


def test_grouped_comm_reduces_within_each_run() -> None:
    x = torch.arange(12.0).reshape(6, 2)
    comm = GroupedComm(2, 3)
    assert comm.num_partitions == 3
    assert comm.all_sum(x).tolist() == [[6.0, 9.0]] * 3 + [[24.0, 27.0]] * 3
    assert comm.all_mean(x).tolist() == [[2.0, 3.0]] * 3 + [[8.0, 9.0]] * 3
    # a block alone reduces as LocalComm reduces a run held alone
    assert torch.equal(comm.all_mean(x)[3:], LocalComm(3).all_mean(x[3:]))
    with pytest.raises(ValueError, match="6 rows"):
        comm.all_sum(x[:4])


def test_a_diverged_run_fails_alone() -> None:
    """One run's non-finite data ends that run with DivergedError; the others finish."""
    train = [p for seed in SEEDS for p in _partitions(seed)]
    bad = train[K + 1]
    train[K + 1] = PartitionData(torch.full_like(bad.x, float("nan")), bad.y)
    trainer = Trainer(_model, create_algorithm("bsp"), train, VAL, _config(0, False),
                      seeds=SEEDS)
    results = trainer.run_group()
    assert isinstance(results[1], DivergedError)
    assert "partition(s) [1]" in str(results[1])
    for run in (0, 2):
        _same(results[run], _alone("bsp", SEEDS[run], vectorize=False)[1])


def test_group_checks() -> None:
    train = [p for seed in SEEDS for p in _partitions(seed)]
    with pytest.raises(ValueError, match="split evenly"):
        Trainer(_model, create_algorithm("bsp"), train[:-1], VAL, _config(0, False),
                seeds=SEEDS)
    with pytest.raises(ValueError, match="callbacks"):
        Trainer(_model, create_algorithm("bsp"), train, VAL, _config(0, False), seeds=SEEDS,
                callbacks=[lambda trainer: None])
    trainer = Trainer(_model, create_algorithm("bsp"), train, VAL, _config(0, False),
                      seeds=SEEDS)
    with pytest.raises(ValueError, match="run_group"):
        trainer.run()
