"""Decentralized learning algorithms behind one interface (docs/reference.md §4).

Importing the package registers BSP, Gaia, FedAvg, DGC, FedProx, FedOpt, SCAFFOLD and EF-top-k:
``create_algorithm("gaia", t0=0.2)``.
"""

from training.algorithms.base import (
    Algorithm,
    Comm,
    StepContext,
    StepStats,
    create_algorithm,
    list_algorithms,
    register_algorithm,
)
from training.algorithms.bsp import BSP
from training.algorithms.dgc import DGC
from training.algorithms.ef_topk import EFTopK
from training.algorithms.fedavg import FedAvg
from training.algorithms.fedbn import FedBN  # noqa: F401  (registers "fedbn")
from training.algorithms.fedopt import FedOpt
from training.algorithms.fedprox import FedProx
from training.algorithms.gaia import Gaia
from training.algorithms.scaffold import Scaffold

__all__ = [
    "BSP", "DGC", "Algorithm", "Comm", "EFTopK", "FedAvg", "FedOpt", "FedProx", "Gaia",
    "Scaffold", "StepContext", "StepStats",
    "create_algorithm", "list_algorithms", "register_algorithm",
]
