"""training.comm: LocalComm, and WeightedComm's participant average."""

import torch

from training.comm import GroupedComm, LocalComm, WeightedComm


def test_weighted_mean_uses_the_weights_and_sums_stay_plain():
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 0.0]])
    comm = WeightedComm(LocalComm(3), torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64), 3)
    assert comm.all_mean(x).tolist() == [[2.5, 2.5]] * 3   # 0.5*1 + 0.25*3 + 0.25*5
    assert torch.equal(comm.all_sum(x), LocalComm(3).all_sum(x))
    assert comm.num_partitions == 3


def test_zero_weight_rows_receive_the_others_mean():
    x = torch.tensor([[4.0], [8.0], [100.0]])
    comm = WeightedComm(LocalComm(3), torch.tensor([0.5, 0.5, 0.0]), 2)
    assert comm.all_mean(x).tolist() == [[6.0]] * 3
    assert comm.num_partitions == 2      # the participants


def test_no_weights_is_the_plain_mean_bit_for_bit():
    x = torch.randn(5, 7)
    assert torch.equal(WeightedComm(LocalComm(5), None, 5).all_mean(x), LocalComm(5).all_mean(x))


def test_grouped_sums_equal_each_run_summed_alone_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    for groups, parts, width in [(3, 5, 78_250), (2, 10, 1), (4, 2, 777), (1, 5, 33)]:
        # wide dynamic range: any change of summation order would show in the last bits
        x = torch.randn(groups * parts, width, generator=gen) * torch.exp(
            8 * torch.randn(groups * parts, width, generator=gen))
        grouped = GroupedComm(groups, parts).all_sum(x)
        for g in range(groups):
            block = x[g * parts:(g + 1) * parts]
            assert torch.equal(grouped[g * parts:(g + 1) * parts], LocalComm(parts).all_sum(block))


def test_sum_of_the_others_equals_the_sum_less_the_row():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(15, 1_001, generator=gen) * torch.exp(4 * torch.randn(15, 1_001, generator=gen))
    grouped, local = GroupedComm(3, 5), LocalComm(15)
    assert torch.equal(grouped.all_sum_others(x), grouped.all_sum(x) - x)
    assert torch.equal(local.all_sum_others(x), local.all_sum(x) - x)
