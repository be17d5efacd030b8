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
