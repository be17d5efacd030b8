"""BatchNorm running statistics in the engine on BN-LeNet: BSP is K copies normalising their own
batches with averaged gradients and averaged running statistics (docs/reference.md §3); the
statistics
are traffic for every algorithm; Gaia filters them like parameters, so Gaia T0=0 equals BSP."""

import pytest
import torch
from torch import nn

from training.algorithms import create_algorithm
from training.datasets import PartitionData
from training.engine import TrainConfig, Trainer
from training.models import create_model
from training.skewscout.host import TrainerHost

K = 3            # partitions
LOCAL = 4        # samples per partition = the local batch: every batch is the whole partition


def bn_lenet() -> nn.Module:
    return create_model("bn-lenet", num_classes=10, in_channels=1, image_size=8)


def partitions(seed: int = 0) -> list[PartitionData]:
    gen = torch.Generator().manual_seed(seed)
    return [PartitionData(torch.randn(LOCAL, 1, 8, 8, generator=gen) * (k + 1) + k,
                          torch.randint(0, 10, (LOCAL,), generator=gen)) for k in range(K)]


def config(**overrides) -> TrainConfig:
    base = dict(iterations=100, batch_size=K * LOCAL, lr=0.05, eval_every=100, progress=False)
    return TrainConfig(**{**base, **overrides})


def float_buffers(module_or_trainer) -> list[torch.Tensor]:
    if isinstance(module_or_trainer, Trainer):
        return [b for b in module_or_trainer.stack.buffers.values() if b.is_floating_point()]
    return [b for b in module_or_trainer.buffers() if b.is_floating_point()]


def test_bsp_is_k_copies_with_averaged_gradients_and_averaged_running_statistics():
    train, cfg = partitions(), config()
    trainer = Trainer(bn_lenet, create_algorithm("bsp"), train, train[0], cfg)
    torch.manual_seed(cfg.seed)
    copies = [bn_lenet() for _ in range(K)]
    for c in copies[1:]:
        c.load_state_dict(copies[0].state_dict())
    params = [list(c.parameters()) for c in copies]
    velocity = [torch.zeros_like(p) for p in params[0]]
    for _ in range(3):
        trainer.step()
        grads = []
        for c, part in zip(copies, train, strict=True):   # each normalises its own batch
            c.train()
            c.zero_grad()
            nn.functional.cross_entropy(c(part.x), part.y).backward()
            grads.append([p.grad for p in c.parameters()])
        with torch.no_grad():
            for j, w in enumerate(params[0]):
                g = torch.stack([gk[j] for gk in grads]).mean(0) + cfg.weight_decay * w
                velocity[j].mul_(cfg.momentum).add_(g)
                for p in params:
                    p[j].sub_(velocity[j], alpha=cfg.lr)
            for stats in zip(*(float_buffers(c) for c in copies), strict=True):
                mean = torch.stack(stats).mean(0)
                for s in stats:
                    s.copy_(mean)
    expected = torch.cat([p.detach().flatten() for p in params[0]])
    for k in range(K):
        assert torch.allclose(trainer.stack.params[k], expected, atol=1e-5)
        for got, want in zip(float_buffers(trainer), float_buffers(copies[0]), strict=True):
            assert torch.allclose(got[k], want, atol=1e-5)


def test_gaia_with_t0_zero_equals_bsp_running_statistics_included():
    train = partitions(seed=1)
    gaia = Trainer(bn_lenet, create_algorithm("gaia", t0=0.0), train, train[0], config())
    bsp = Trainer(bn_lenet, create_algorithm("bsp"), train, train[0], config())
    for _ in range(4):
        gaia.step()
        bsp.step()
    assert torch.allclose(gaia.stack.params, bsp.stack.params, atol=1e-5)
    for got, want in zip(float_buffers(gaia), float_buffers(bsp), strict=True):
        assert torch.allclose(got, want, atol=1e-5)
    assert gaia.bytes_sent.tolist() == pytest.approx(bsp.bytes_sent.tolist())


def num_buffer_values(trainer: Trainer) -> int:
    return sum(b[0].numel() for b in float_buffers(trainer))


@pytest.mark.parametrize(("name", "params", "statistics_sent"), [
    ("bsp", {}, True), ("fedavg", {"iter_local": 1}, True), ("fedavg", {"iter_local": 2}, False),
    ("dgc", {"sparsity": 0.999, "warmup_epoch_iterations": 0}, True),
    ("gaia", {"t0": 0.0}, True), ("gaia", {"t0": 0.0, "share_buffers": False}, False),
])
def test_running_statistics_are_counted_as_traffic(name, params, statistics_sent):
    train = partitions()
    trainer = Trainer(bn_lenet, create_algorithm(name, **params), train, train[0], config())
    p, b = trainer.num_parameters, num_buffer_values(trainer)
    assert b == 2 * (32 + 32 + 64)        # running mean and variance of BN-LeNet's three BNs
    stats = trainer.step()
    model_bytes = {"bsp": 4 * p, "fedavg": 4 * p if params.get("iter_local") == 1 else 0,
                   "gaia": 4 * p,                                 # T0=0: all, capped at dense
                   "dgc": 8 * round(p * 0.001)}[name]             # value + index each
    expected = model_bytes + (4 * b if statistics_sent else 0)
    assert stats.bytes_sent.tolist() == [expected] * K
    assert stats.wire_bytes_sent.tolist() == [expected * (K - 1)] * K   # to K - 1 others
    assert trainer.bytes_sent.tolist() == [expected] * K


def test_run_reports_the_message_and_the_wire_figure():
    train = partitions()
    trainer = Trainer(bn_lenet, create_algorithm("bsp"), train, train[0], config(iterations=2))
    result = trainer.run()
    per_message = 4 * (trainer.num_parameters + num_buffer_values(trainer))
    assert result.bytes_sent == [2 * per_message] * K
    assert result.wire_bytes_sent == [2 * per_message * (K - 1)] * K
    assert result.wire_bytes_per_iteration == pytest.approx(per_message * (K - 1))
    assert result.bsp_bytes_per_iteration == per_message and result.relative_communication == 1
    TrainerHost(trainer).add_bytes(0, sent=10.0, received=0.0)   # traveling: one destination
    assert trainer.wire_bytes_sent[0] - trainer.wire_bytes_sent[1] == 10.0
