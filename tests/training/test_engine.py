"""The simulation Trainer: BSP == single-model SGD end to end, vmap == loop, determinism, the
evaluation protocol, BN statistics, bookkeeping, and a short label-skew run on digits."""

import numpy as np
import pytest
import torch
from torch import nn

from training.algorithms import create_algorithm
from training.datasets import PartitionData, load_digits_dataset, split_partitions
from training.engine import DivergedError, TrainConfig, Trainer, _nonfinite_rows


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 3))


def toy_partitions(k=2, n=12, shape=(4,), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [PartitionData(torch.randn(n, *shape, generator=gen),
                          torch.randint(0, 3, (n,), generator=gen)) for _ in range(k)]


def config(**overrides) -> TrainConfig:
    base = dict(iterations=6, batch_size=8, lr=0.1, lr_milestones=(0.5,), eval_every=3,
                eval_batch_size=5, progress=False)
    return TrainConfig(**{**base, **overrides})


def test_a_validation_set_smaller_than_the_partitions_is_refused():
    train = toy_partitions(k=3)
    with pytest.raises(ValueError, match="2 samples, fewer than the 3 partitions"):
        Trainer(mlp, create_algorithm("bsp"), train, train[0].subset([0, 1]), config())


def test_bsp_equals_single_model_sgd_with_the_same_batches():
    train = toy_partitions()
    cfg = config()
    trainer = Trainer(mlp, create_algorithm("bsp"), train, train[0], cfg)
    torch.manual_seed(cfg.seed)
    reference = mlp()
    optimizer = torch.optim.SGD(reference.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, [3], gamma=cfg.lr_gamma)
    streams = [part.batches(4, np.random.default_rng([cfg.seed, p]))
               for p, part in enumerate(train)]
    for _ in range(cfg.iterations):
        trainer.step()
        batches = [next(s) for s in streams]
        x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        optimizer.zero_grad()
        nn.functional.cross_entropy(reference(x), y).backward()
        optimizer.step()
        schedule.step()
    expected = torch.nn.utils.parameters_to_vector(reference.parameters()).detach()
    assert torch.allclose(trainer.stack.params, expected.expand(2, -1), atol=1e-6)


@pytest.mark.parametrize("algorithm", ["bsp", "fedavg"])
def test_vectorized_pass_equals_the_loop(algorithm):
    train = toy_partitions(k=3, shape=(1, 4, 4))
    runs = []
    for vectorize in (True, False):
        trainer = Trainer(bn_net, create_algorithm(algorithm), train, train[0],
                          config(batch_size=9, vectorize=vectorize))
        for _ in range(4):
            trainer.step()
        runs.append((trainer.stack.params, trainer.stack.buffers["1.running_var"]))
    assert torch.allclose(runs[0][0], runs[1][0], atol=1e-5)
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-5)


def test_deterministic_for_a_seed():
    train = toy_partitions(k=3)

    def final_params(seed):
        trainer = Trainer(mlp, create_algorithm("gaia", t0=0.05), train, train[0],
                          config(batch_size=9, seed=seed))
        trainer.run()
        return trainer.stack.params

    assert torch.equal(final_params(0), final_params(0))
    assert not torch.equal(final_params(0), final_params(1))


def test_batchnorm_statistics_are_averaged_only_on_sync():
    train = toy_partitions(k=2, shape=(1, 4, 4))
    train[1] = PartitionData(train[1].x * 5 + 3, train[1].y)   # very different statistics
    cases = ((("bsp",), {}, True), (("fedavg",), {"iter_local": 2}, False),
             (("gaia",), {"share_buffers": False}, False))
    for (name,), params, shared in cases:
        trainer = Trainer(bn_net, create_algorithm(name, **params), train, train[0], config())
        trainer.step()
        mean = trainer.stack.buffers["1.running_mean"]
        assert torch.equal(mean[0], mean[1]) == shared


class ConstantClass(nn.Module):
    """Predicts the class held in its bias (zero weights), whatever the input."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(1, 3)

    def forward(self, x):
        return self.head(x)


def constant_trainer(algorithm: str) -> Trainer:
    val = PartitionData(torch.zeros(6, 1), torch.tensor([0, 1, 0, 1, 2, 2]))
    train = [PartitionData(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))] * 2
    trainer = Trainer(ConstantClass, create_algorithm(algorithm), train, val, config())
    with torch.no_grad():
        trainer.stack.params.zero_()
        trainer.stack.params[0, 3 + 0] = 1.0   # partition 0 always says class 0
        trainer.stack.params[1, 3 + 1] = 3.0   # partition 1 always says class 1
    return trainer


def test_evaluation_uses_round_robin_shards():
    result = constant_trainer("gaia").evaluate()
    # shard 0 = labels [0, 0, 2] -> 2/3; shard 1 = labels [1, 1, 2] -> 2/3
    assert result.per_partition == pytest.approx([2 / 3, 2 / 3])
    assert result.mean == pytest.approx(2 / 3)
    assert result.global_acc is None   # Gaia has no global model


def test_global_model_is_the_replica_mean():
    result = constant_trainer("fedavg").evaluate()
    # mean bias [0.5, 1.5, 0] says class 1 everywhere: 2 of 6
    assert result.global_acc == pytest.approx(2 / 6)


def test_run_bookkeeping_and_callbacks():
    train = toy_partitions()
    seen = []
    trainer = Trainer(mlp, create_algorithm("fedavg", iter_local=3), train, train[0],
                      config(iterations=7), callbacks=[lambda t: seen.append(t.iteration)])
    result = trainer.run()
    assert seen == list(range(1, 8))
    assert [it for it, _ in result.curve] == [3, 6, 7]
    assert result.iterations == 7
    p = trainer.num_parameters
    assert result.bsp_bytes_per_iteration == 4 * p
    # averaged at iterations 3 and 6, and at the last (7): FedAvg is scored averaged
    assert result.bytes_sent == [3 * 4.0 * p] * 2
    # bytes sent so far per partition at each evaluation (averaging counted at 3, 6 and 7)
    assert result.bytes_curve == [(3, 4.0 * p), (6, 8.0 * p), (7, 12.0 * p)]
    assert result.relative_communication == pytest.approx(3 / 7)


def test_config_validation_and_schedule():
    cfg = TrainConfig(iterations=100)
    assert [cfg.lr_factor(i) for i in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    trainer = Trainer(mlp, create_algorithm("bsp"), toy_partitions(k=2), toy_partitions(k=2)[0],
                      config(iterations=8, lr_milestones=(0.5, 0.75)))
    ahead = trainer.context()              # decays at iterations 4 and 6 of 8
    trainer.iteration = 6
    assert ahead.final_lr_factor == pytest.approx(0.01) and ahead.decay_ahead
    assert not trainer.context().decay_ahead
    with pytest.raises(ValueError, match="momentum"):
        TrainConfig(momentum=1.0)
    with pytest.raises(ValueError, match="lr_milestones"):
        TrainConfig(lr_milestones=(32_000,))
    train = toy_partitions(k=3)
    with pytest.raises(ValueError, match="batch_size 2 < 3 partitions"):
        Trainer(mlp, create_algorithm("bsp"), train, train[0], config(batch_size=2))


def test_label_skew_hurts_fedavg_not_bsp_on_digits():
    torch.set_num_threads(1)
    data = load_digits_dataset(image_size=8)
    labels = data.train.y.numpy()
    train = split_partitions(data.train, [np.flatnonzero(labels % 5 == i) for i in range(5)])

    def model():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    cfg = TrainConfig(iterations=300, batch_size=50, lr=0.05, eval_every=300, progress=False)
    bsp = Trainer(model, create_algorithm("bsp"), train, data.val, cfg).run()
    fedavg = Trainer(model, create_algorithm("fedavg", iter_local=100), train, data.val,
                     cfg).run()
    assert bsp.final.mean > 0.9
    assert bsp.final.mean - fedavg.final.mean > 0.1
    assert fedavg.relative_communication == pytest.approx(0.01)


def test_cpu_default_is_the_loop_and_vmap_is_opt_in():
    train = toy_partitions()
    assert Trainer(mlp, create_algorithm("bsp"), train, train[0], config()).stack.vectorize is False
    vmapped = Trainer(mlp, create_algorithm("bsp"), train, train[0], config(vectorize=True))
    assert vmapped.stack.vectorize is True


def digits_trainer(lr: float, **overrides) -> Trainer:
    data = load_digits_dataset(image_size=8)
    labels = data.train.y.numpy()
    train = split_partitions(data.train, [np.flatnonzero(labels % 2 == i) for i in range(2)])

    def model():
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    cfg = TrainConfig(**{**dict(iterations=30, batch_size=20, lr=lr, lr_milestones=(),
                                eval_every=1000, progress=False), **overrides})
    return Trainer(model, create_algorithm("bsp"), train, data.val, cfg)


def test_a_diverging_run_fails_naming_the_iteration_at_the_final_evaluation():
    trainer = digits_trainer(lr=1e6)            # only the final evaluation checks (30 < 1000)
    with pytest.raises(DivergedError, match=r"non-finite loss/gradient at iteration (\d+)") as err:
        trainer.run()
    first = int(err.value.args[0].split("iteration ")[1].split()[0])
    assert 0 <= first < 30 and isinstance(err.value, RuntimeError)
    # replayed step by step, the gradients first turn non-finite at that iteration
    replay = digits_trainer(lr=1e6)
    for _ in range(first):
        replay.step()
    assert torch.isfinite(replay.stack.params).all()
    replay.step()
    assert (replay._nonfinite_at == first).any()


def test_non_finite_parameters_fail_at_the_next_evaluation():
    trainer = digits_trainer(lr=0.01, eval_every=5)
    trainer.step()
    with torch.no_grad():
        trainer.stack.params[1, 0] = float("inf")
    with pytest.raises(DivergedError, match=r"non-finite parameters by iteration 1 in "
                                            r"partition\(s\) \[1\]"):
        trainer.check_finite()
    assert digits_trainer(lr=0.01).run().iterations == 30   # a sane lr runs to the end


def test_non_finite_rows_are_exact_where_a_float32_sum_overflows():
    grads = torch.zeros(4, 10)
    grads[0, :3] = 3e38                  # finite values whose float32 sum overflows
    grads[1, 2] = float("inf")
    grads[2, 5] = float("nan")
    grads[3, :2] = torch.tensor([float("inf"), float("-inf")])
    assert _nonfinite_rows(grads).tolist() == [False, True, True, True]
    assert _nonfinite_rows(torch.ones(3, 5)).tolist() == [False] * 3


def test_bf16_is_refused_off_cuda():
    with pytest.raises(ValueError, match="device='cuda' or bf16=False"):
        config(bf16=True)
