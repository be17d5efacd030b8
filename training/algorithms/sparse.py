"""Sparse selection shared by the sparsifying algorithms (DGC's top-k): which values of each
partition's row go into its message. Their byte counts live in ``traffic``.

On the CPU a full-row ``topk`` of a small share is slow (a heap over every value), so a long row
first narrows to candidates: a threshold taken from a strided sample keeps about twice the wanted
count, and the exact ``topk`` runs over those alone. Without a tie at the k-th value the top-k set
is unique, so it is the set the full ``topk`` returns; a row with too few candidates, a tie at the
boundary or a non-finite value among the chosen falls back to the full ``topk``. The indices come
in another order than the full ``topk``'s (``sorted=False`` promises none): callers use them as a
set (gather / scatter).
"""

from __future__ import annotations

import torch

CANDIDATE_MIN_VALUES = 16_384   # rows shorter than this: the full topk is already cheap
SAMPLE_STRIDE = 16              # every 16th value of a row estimates its threshold
SAMPLE_MARGIN = 2.0             # the sample's threshold keeps ~2x the wanted count


def top_k_indices(values: torch.Tensor, count: int) -> torch.Tensor:
    """``[k, count]`` column indices of the ``count`` largest ``|values|`` in each row."""
    count = min(max(count, 1), values.shape[1])
    magnitudes = values.abs()
    chosen = _top_k_candidates(magnitudes, count)
    if chosen is not None:
        return chosen
    return torch.topk(magnitudes, count, dim=1, sorted=False).indices


def _top_k_candidates(magnitudes: torch.Tensor, count: int) -> torch.Tensor | None:
    """The exact top-k set of each row via a sampled threshold, or None where it cannot be
    proven equal to the full ``topk``'s (the caller then runs that)."""
    rows, width = magnitudes.shape
    sample = magnitudes[:, ::SAMPLE_STRIDE]
    wanted = int(SAMPLE_MARGIN * -(-count // SAMPLE_STRIDE)) + 16
    if magnitudes.device.type != "cpu" or width < CANDIDATE_MIN_VALUES or \
            wanted >= sample.shape[1] // 2:
        return None
    threshold = torch.topk(sample, wanted, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    # not (m < t) rather than m >= t: a NaN (which topk ranks first) stays a candidate
    candidates = torch.lt(magnitudes, threshold).logical_not_()
    if (candidates.view(torch.uint8).sum(dim=1, dtype=torch.int32) < count).any():
        return None
    chosen = []
    for row in range(rows):
        columns = candidates[row].nonzero().squeeze(1)
        pool = magnitudes[row].index_select(0, columns)
        top = torch.topk(pool, count, sorted=False)
        kth = top.values.min()
        # a tie at the k-th value (or a NaN chosen) leaves the set to topk's internals
        if not torch.isfinite(kth) or (pool == kth).sum() != (top.values == kth).sum():
            return None
        chosen.append(columns.index_select(0, top.indices))
    return torch.stack(chosen)
