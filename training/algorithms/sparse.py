"""Sparse selection shared by the sparsifying algorithms (DGC's top-k): which values of each
partition's row go into its message. Their byte counts live in ``traffic``."""

from __future__ import annotations

import torch


def top_k_indices(values: torch.Tensor, count: int) -> torch.Tensor:
    """``[k, count]`` column indices of the ``count`` largest ``|values|`` in each row."""
    count = min(max(count, 1), values.shape[1])
    return torch.topk(values.abs(), count, dim=1, sorted=False).indices
