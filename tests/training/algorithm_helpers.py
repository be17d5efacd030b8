"""Shared by the algorithm tests: run an algorithm beside BSP on the same random gradients; tiny
BatchNorm models, partitions and the by-hand copies the engine is checked against."""

from collections.abc import Callable

import torch
from torch import nn

from training.algorithms import Algorithm, StepContext, StepStats, create_algorithm
from training.comm import LocalComm
from training.datasets import PartitionData
from training.engine import Trainer


def run_beside_bsp(algorithm: Algorithm, *, seed: int, n: int, size: int, steps: int, lr: float,
                   weight_decay: float) -> tuple[torch.Tensor, torch.Tensor, StepStats]:
    """Parameters of ``algorithm`` and of BSP after ``steps`` momentum-0.9 iterations from one
    random start, and the algorithm's last stats."""
    torch.manual_seed(seed)
    comm = LocalComm(n)
    bsp = create_algorithm("bsp")
    p_alg = torch.randn(1, size).repeat(n, 1)
    p_bsp = p_alg.clone()
    s_alg, s_bsp = algorithm.init(p_alg), bsp.init(p_bsp)
    for it in range(steps):
        grads = torch.randn(n, size)
        step = StepContext(iteration=it, lr=lr, lr_factor=1.0, num_partitions=n, momentum=0.9,
                           weight_decay=weight_decay)
        stats = algorithm.apply(s_alg, p_alg, grads, step, comm)
        bsp.apply(s_bsp, p_bsp, grads, step, comm)
    return p_alg, p_bsp, stats



def replicas_after(algorithm: Algorithm, steps: int, *, n: int = 5, size: int = 50,
                   seed: int = 3) -> torch.Tensor:
    """The ``[n, size]`` parameters after ``steps`` iterations (lr 0.1, momentum 0.5, no weight
    decay) from one random start on random gradients: synchronous algorithms keep them equal."""
    torch.manual_seed(seed)
    params = torch.randn(1, size).repeat(n, 1)
    state = algorithm.init(params)
    for it in range(steps):
        step = StepContext(iteration=it, lr=0.1, lr_factor=1.0, num_partitions=n, momentum=0.5,
                           weight_decay=0.0)
        algorithm.apply(state, params, torch.randn(n, size), step, LocalComm(n))
    return params

def trained_params(algorithm: Algorithm, *, iterations: int = 7, seed: int = 0) -> torch.Tensor:
    """The ``[3, P]`` parameters after ``iterations`` steps of ``algorithm`` in the simulation
    Trainer: a tiny float64 MLP with BatchNorm on 3 label-skewed partitions, lr decayed at 50%
    and 75% (so a decay falls inside an averaging cycle)."""
    from torch import nn

    from training.engine import PartitionData, TrainConfig, Trainer

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(90, 6, generator=gen, dtype=torch.float64)
    y = x[:, :3].argmax(dim=1)
    parts = [PartitionData(x[y != p], y[y != p]) for p in range(3)]
    trainer = Trainer(
        lambda: nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(),
                              nn.Linear(8, 3)).double(),
        algorithm, parts, PartitionData(x, y),
        TrainConfig(iterations=iterations, batch_size=12, lr=0.1, eval_every=iterations,
                    seed=seed, progress=False))
    trainer.run()
    return trainer.stack.params.clone()


def tiny_bn() -> nn.Module:
    """A conv net with one BatchNorm2d (module ``1``) on 1x6x6 inputs, 3 classes: 123 parameters
    (BN affine at offsets 20..23), running mean and var of 2 channels each."""
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 3))


def tiny_gn() -> nn.Module:
    """:func:`tiny_bn` with GroupNorm in place of BatchNorm (no running statistics)."""
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.GroupNorm(1, 2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 3))


def shifted_partitions(seed: int = 0, *, k: int = 3, local: int = 4) -> list[PartitionData]:
    """``k`` partitions of ``local`` 1x6x6 inputs; partition i's are scaled by i + 1 and shifted
    by i, so each BatchNorm sees different statistics."""
    gen = torch.Generator().manual_seed(seed)
    return [PartitionData(torch.randn(local, 1, 6, 6, generator=gen) * (i + 1) + i,
                          torch.randint(0, 3, (local,), generator=gen)) for i in range(k)]


def hand_copies(make: Callable[[], nn.Module], k: int,
                seed: int) -> tuple[list[nn.Module], list[list[torch.Tensor]]]:
    """``k`` equal copies of ``make()`` drawn as the Trainer draws its start (after
    ``torch.manual_seed(seed)``), and a zero momentum buffer per parameter of each."""
    torch.manual_seed(seed)
    copies = [make() for _ in range(k)]
    for c in copies[1:]:
        c.load_state_dict(copies[0].state_dict())
    velocity = [[torch.zeros_like(p) for p in c.parameters()] for c in copies]
    return copies, velocity


def local_sgd_step(copies: list[nn.Module], velocity: list[list[torch.Tensor]],
                   train: list[PartitionData], *, lr: float, momentum: float,
                   weight_decay: float, frozen_bn: bool = False) -> None:
    """One full-batch momentum SGD step of each copy on its partition at ``lr / len(copies)``
    (the Trainer's per-partition rate); ``frozen_bn`` keeps module ``1`` in eval mode."""
    for c, v, part in zip(copies, velocity, train, strict=True):
        c.train()
        if frozen_bn:
            c[1].eval()
        c.zero_grad()
        nn.functional.cross_entropy(c(part.x), part.y).backward()
        with torch.no_grad():
            for p, vj in zip(c.parameters(), v, strict=True):
                vj.mul_(momentum).add_(p.grad + weight_decay * p)
                p.sub_(vj, alpha=lr / len(copies))


def assert_matches_copies(trainer: Trainer, copies: list[nn.Module]) -> None:
    """Each replica's parameters and BatchNorm running statistics equal its copy's."""
    for k, c in enumerate(copies):
        want = torch.cat([p.detach().flatten() for p in c.parameters()])
        torch.testing.assert_close(trainer.stack.params[k], want, atol=1e-5, rtol=1e-5)
        for name in ("1.running_mean", "1.running_var"):
            torch.testing.assert_close(trainer.stack.buffers[name][k], c.state_dict()[name])
