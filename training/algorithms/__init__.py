"""Decentralized learning algorithms behind one interface (docs/reference.md §4).

Importing the package registers BSP, Gaia, FedAvg and DGC: ``create_algorithm("gaia", t0=0.2)``.
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
from training.algorithms.fedavg import FedAvg
from training.algorithms.fedbn import FedBN  # noqa: F401  (registers "fedbn")
from training.algorithms.gaia import Gaia

__all__ = [
    "BSP", "DGC", "Algorithm", "Comm", "FedAvg", "Gaia", "StepContext", "StepStats",
    "create_algorithm", "list_algorithms", "register_algorithm",
]
