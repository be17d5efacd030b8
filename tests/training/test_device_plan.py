"""How torch.distributed ranks map onto GPUs (training.distributed.plan_device): pure, no GPU."""

import pytest

from training.distributed import DevicePlan, plan_device


def test_no_gpu_runs_gloo_on_the_cpu():
    assert plan_device(3, 5, cuda_count=0) == DevicePlan("gloo", "cpu")


def test_one_gpu_per_rank_runs_nccl():
    assert [plan_device(r, 4, cuda_count=8) for r in range(4)] == [
        DevicePlan("nccl", f"cuda:{r}") for r in range(4)]


def test_five_ranks_on_one_gpu_share_it_through_gloo():
    plans = [plan_device(r, 5, cuda_count=1) for r in range(5)]
    assert plans == [DevicePlan("gloo", "cuda:0")] * 5


def test_more_ranks_than_gpus_go_round_robin():
    devices = [plan_device(r, 5, cuda_count=2).device for r in range(5)]
    assert devices == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]


def test_explicit_gloo_keeps_every_rank_on_the_cpu():
    assert plan_device(1, 2, cuda_count=2, backend="gloo") == DevicePlan("gloo", "cpu")


def test_explicit_nccl_refuses_shared_gpus():
    with pytest.raises(ValueError, match="one GPU per rank"):
        plan_device(0, 5, cuda_count=1, backend="nccl")


def test_bad_rank_or_backend_is_refused():
    with pytest.raises(ValueError, match="local rank"):
        plan_device(5, 5, cuda_count=1)
    with pytest.raises(ValueError, match="backend"):
        plan_device(0, 1, cuda_count=1, backend="mpi")
