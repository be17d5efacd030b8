"""Shared by the algorithm tests: run an algorithm beside BSP on the same random gradients."""

import torch

from training.algorithms import Algorithm, StepContext, StepStats, create_algorithm
from training.comm import LocalComm


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
