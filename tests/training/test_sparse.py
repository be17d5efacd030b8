"""training.algorithms.sparse: the candidate top-k returns exactly the full topk's set."""

import pytest
import torch

from training.algorithms.sparse import _top_k_candidates, top_k_indices


def _full(values: torch.Tensor, count: int) -> torch.Tensor:
    return torch.topk(values.abs(), count, dim=1, sorted=False).indices


def _as_sets(index: torch.Tensor) -> torch.Tensor:
    return index.sort(dim=1).values


@pytest.mark.parametrize("kept", [0.0004, 0.01, 0.016, 0.0625])
def test_candidate_top_k_is_the_full_top_k_set(kept):
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(15, 78_250, generator=gen) * torch.rand(15, 78_250, generator=gen) ** 3
    values[:, :20_000] = 0.0          # sent values are zeroed in DGC's residual
    count = round(values.shape[1] * kept)
    # the fast path is taken (not the fallback) on a row like DGC's
    assert _top_k_candidates(values.abs(), count) is not None
    chosen = top_k_indices(values, count)
    assert chosen.shape == (15, count)
    assert torch.equal(_as_sets(chosen), _as_sets(_full(values, count)))


def test_a_tie_at_the_boundary_or_a_nan_falls_back_to_the_full_topk():
    gen = torch.Generator().manual_seed(4)
    tied = torch.randn(3, 40_000, generator=gen).round(decimals=1)   # many equal magnitudes
    assert _top_k_candidates(tied.abs(), 400) is None
    assert torch.equal(top_k_indices(tied, 400), _full(tied, 400))
    nan = torch.randn(3, 40_000, generator=gen)
    nan[1, 7] = float("nan")
    assert torch.equal(_as_sets(top_k_indices(nan, 400)), _as_sets(_full(nan, 400)))
    assert 7 in top_k_indices(nan, 400)[1].tolist()     # topk ranks NaN first


def test_short_rows_and_large_shares_use_the_full_topk():
    values = torch.randn(4, 1_000)
    assert _top_k_candidates(values.abs(), 10) is None
    big = torch.randn(2, 40_000)
    assert _top_k_candidates(big.abs(), 20_000) is None
    assert torch.equal(top_k_indices(values, 0), _full(values, 1))   # at least one value
