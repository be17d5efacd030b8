"""FixBN in the engine (TrainConfig(norm_stats="fixbn")): ordinary BatchNorm until the switch,
then the running statistics averaged over partitions once, frozen, and used to normalise."""

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from tests.training.algorithm_helpers import (
    assert_matches_copies,
    hand_copies,
    local_sgd_step,
    shifted_partitions,
    tiny_bn,
    tiny_gn,
)
from training.algorithms import create_algorithm, list_algorithms
from training.algorithms.base import algorithm_class
from training.datasets import PartitionData
from training.engine import TrainConfig, Trainer
from training.models import create_model

K = 3
LOCAL = 4
P, B = 123, 4     # the tiny model's parameters; BN running mean and var (2 channels each)


def partitions(seed: int = 0) -> list[PartitionData]:
    return shifted_partitions(seed, k=K, local=LOCAL)


def config(**overrides) -> TrainConfig:
    base = dict(iterations=4, batch_size=K * LOCAL, lr=0.1, lr_gamma=1.0, eval_every=4,
                progress=False, norm_stats="fixbn", fixbn_switch=0.5)
    return TrainConfig(**{**base, **overrides})


def statistics(trainer: Trainer) -> torch.Tensor:
    return trainer._buffers_flat().clone()


@pytest.mark.parametrize("change, message", [
    ({"norm_stats": "frozen"}, "norm_stats='frozen'; choose one of batch, fixbn"),
    ({"fixbn_switch": 0.0}, r"fixbn_switch=0.0 must be a fraction of the iterations in \(0, 1\)"),
    ({"fixbn_switch": 1.0}, "fixbn_switch=1.0 must be"),
    ({"fixbn_switch": 1.5}, "fixbn_switch=1.5 must be"),
])
def test_bad_settings_are_one_line_errors(change, message):
    with pytest.raises(ValueError, match=message) as info:
        config(**change)
    assert "\n" not in str(info.value)


def test_the_switch_iteration():
    assert config(iterations=10).fixbn_iteration == 5
    assert config(iterations=10, fixbn_switch=0.01).fixbn_iteration == 1   # one BN step first
    assert config(norm_stats="batch").fixbn_iteration is None


def bn_and_a_float_buffer() -> nn.Module:
    model = tiny_bn()
    model.register_buffer("scale", torch.ones(1))
    return model


@pytest.mark.parametrize("model, algorithm, message", [
    (tiny_gn, "bsp", "this model has none"),
    (tiny_bn, "fedbn", "fedbn keeps each partition's own: pick one"),
    (bn_and_a_float_buffer, "bsp", "every floating buffer of the model to be a BatchNorm"),
])
def test_fixbn_is_refused_where_it_cannot_mean_anything(model, algorithm, message):
    train = partitions()
    with pytest.raises(ValueError, match=message):
        Trainer(model, create_algorithm(algorithm), train, train[0], config())


def test_fedavg_with_fixbn_by_hand():
    """K copies of local SGD (FedAvg, IterLocal 4: the partitions' statistics drift apart); at
    iteration 2 every copy takes the mean statistics and normalises with them (BatchNorm in
    eval mode) while training on; the final iteration averages the parameters."""
    train, cfg = partitions(), config()
    trainer = Trainer(tiny_bn, create_algorithm("fedavg", iter_local=4), train, train[0], cfg)
    copies, velocity = hand_copies(tiny_bn, K, cfg.seed)
    bns = [c[1] for c in copies]
    for it in range(cfg.iterations):
        if it == 2:
            at_switch = statistics(trainer)
            assert not torch.allclose(at_switch[0], at_switch[1])   # drifted apart
            for name in ("running_mean", "running_var"):
                mean = torch.stack([getattr(bn, name) for bn in bns]).mean(0)
                for bn in bns:
                    getattr(bn, name).copy_(mean)
        stats = trainer.step()
        # from the switch on, normalise with the frozen statistics
        local_sgd_step(copies, velocity, train, lr=cfg.lr, momentum=cfg.momentum,
                       weight_decay=cfg.weight_decay, frozen_bn=it >= 2)
        if it == 2:
            assert stats.bytes_sent.tolist() == [4.0 * B] * K   # the statistics, once
    with torch.no_grad():
        for ps in zip(*(c.parameters() for c in copies), strict=True):
            mean = torch.stack(ps).mean(0)
            for p in ps:
                p.copy_(mean)
    assert_matches_copies(trainer, copies)
    frozen = statistics(trainer)
    assert torch.allclose(frozen, at_switch.mean(0, keepdim=True).expand_as(frozen))
    assert trainer.stack.buffers["1.num_batches_tracked"].tolist() == [2] * K


def test_statistics_stay_frozen_and_bsp_stops_sending_them():
    train = partitions()
    trainer = Trainer(tiny_bn, create_algorithm("bsp"), train, train[0], config(iterations=6))
    sent = [trainer.step().bytes_sent[0].item() for _ in range(4)]     # the switch: iteration 3
    frozen = statistics(trainer)
    sent += [trainer.step().bytes_sent[0].item() for _ in range(2)]
    assert torch.equal(statistics(trainer), frozen)
    # BSP sends model and statistics each iteration; at the switch the model and the statistics
    # once (their mean); after it the model alone
    assert sent == [4.0 * (P + B)] * 4 + [4.0 * P] * 2


def test_the_forward_after_the_switch_uses_the_frozen_statistics():
    train = partitions()
    trainer = Trainer(tiny_bn, create_algorithm("bsp"), train, train[0], config())
    for _ in range(3):      # the switch is at iteration 2
        trainer.step()
    model = tiny_bn()
    model.load_state_dict(trainer.stack.state_dict(0))
    trainer.stack.module.train()   # what gradients() sets: BatchNorm stays in eval mode
    trainer.stack._train_mode()
    assert trainer.stack.module.training
    assert not any(m.training for m in trainer.stack.module.modules() if isinstance(m, _BatchNorm))
    x = train[0].x
    conv = model[0](x)
    bn = model[1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    want = ((conv - bn.running_mean[:, None, None]) * scale[:, None, None]
            + bn.bias[:, None, None]).detach()
    params, buffers = trainer.stack.replica(0)
    got = torch.func.functional_call(trainer.stack.module[:2], (
        {n: v for n, v in params.items() if n.startswith(("0.", "1."))},
        {n: v for n, v in buffers.items() if n.startswith("1.")}), (x,))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_loop_and_vmap_paths_agree():
    train = partitions(seed=1)
    runs = []
    for vectorize in (False, True):
        trainer = Trainer(tiny_bn, create_algorithm("fedavg", iter_local=2), train, train[0],
                          config(iterations=6, vectorize=vectorize))
        result = trainer.run()
        runs.append((trainer.stack.params, statistics(trainer), result.bytes_sent))
    torch.testing.assert_close(runs[0][0], runs[1][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(runs[0][1], runs[1][1], atol=1e-5, rtol=1e-5)
    assert runs[0][2] == runs[1][2]


def test_caffe_moving_average_freezes_too():
    """bn-lenet with Caffe's BatchNorm (bn_average="caffe"): its statistics stop at the switch."""
    gen = torch.Generator().manual_seed(0)
    train = [PartitionData(torch.randn(LOCAL, 1, 8, 8, generator=gen) + k,
                           torch.randint(0, 10, (LOCAL,), generator=gen)) for k in range(K)]

    def bn_lenet() -> nn.Module:
        return create_model("bn-lenet", num_classes=10, in_channels=1, image_size=8)

    trainer = Trainer(bn_lenet, create_algorithm("fedavg", iter_local=2), train, train[0],
                      config(bn_average="caffe"))
    trainer.step()
    before = statistics(trainer)
    trainer.step()
    assert not torch.equal(statistics(trainer), before)      # still learning them
    trainer.step()
    frozen = statistics(trainer)
    trainer.step()
    assert torch.equal(statistics(trainer), frozen)


def test_batch_is_the_default_and_never_freezes():
    train = partitions()
    assert TrainConfig().norm_stats == "batch"
    trainer = Trainer(tiny_bn, create_algorithm("bsp"), train, train[0],
                      config(norm_stats="batch"))
    seen = []
    for _ in range(4):
        trainer.step()
        seen.append(statistics(trainer))
    assert not trainer.stack.norm_frozen
    assert not torch.equal(seen[2], seen[3])


@pytest.mark.parametrize("algorithm, norm_stats", [("fedavg", "fixbn"), ("fedbn", "batch")])
def test_a_seed_group_equals_its_runs_alone(algorithm, norm_stats):
    """Each run of a seed group freezes (FixBN) or keeps (FedBN) its own statistics."""
    seeds = (0, 1)
    cfg = config(iterations=4, norm_stats=norm_stats)
    data = {seed: partitions(seed=10 + seed) for seed in seeds}
    group = Trainer(tiny_bn, create_algorithm(algorithm, iter_local=2),
                    [p for seed in seeds for p in data[seed]], data[0][0], cfg, seeds=seeds)
    results = group.run_group()
    for run, seed in enumerate(seeds):
        alone = Trainer(tiny_bn, create_algorithm(algorithm, iter_local=2), data[seed],
                        data[0][0], replace(cfg, seed=seed))
        result = alone.run()
        rows = slice(run * K, (run + 1) * K)
        assert torch.equal(group.stack.params[rows], alone.stack.params)
        assert torch.equal(statistics(group)[rows], statistics(alone))
        assert results[run].bytes_sent == result.bytes_sent
        assert results[run].final == result.final


@pytest.mark.parametrize("name", [n for n in list_algorithms()
                                  if not algorithm_class(n).local_batch_norm])
def test_every_algorithm_that_shares_statistics_runs_fixbn(name):
    """Across the switch every partition holds the mean of the statistics, and keeps it."""
    train = partitions(seed=3)
    trainer = Trainer(tiny_bn, create_algorithm(name), train, train[0], config(iterations=6))
    for _ in range(3):
        trainer.step()
    before = statistics(trainer)
    trainer.step()                                  # the switch: iteration 3
    frozen = statistics(trainer)
    torch.testing.assert_close(frozen, before.mean(0, keepdim=True).expand_as(frozen))
    result = trainer.run()
    assert torch.equal(statistics(trainer), frozen)
    assert result.iterations == 6 and all(b > 0 for b in result.bytes_sent)
