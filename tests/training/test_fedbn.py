"""FedBN: FedAvg whose BatchNorm parameters and running statistics stay with each partition;
its bytes leave them out; each partition is scored with its own BatchNorm."""

import pytest
import torch

from tests.training.algorithm_helpers import (
    assert_matches_copies,
    hand_copies,
    local_sgd_step,
    shifted_partitions,
    tiny_bn,
    tiny_gn,
)
from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm
from training.datasets import PartitionData
from training.engine import TrainConfig, Trainer
from training.evaluation import round_robin_shard

K = 3
LOCAL = 4
# the tiny model's values: conv 2x1x3x3 + 2 = 20, BN affine 2 + 2 = 4 (offsets 20..23),
# linear 3x32 + 3 = 99; BN running mean and var 2 + 2
P, P_BN, B = 123, 4, 4


def partitions(seed: int = 0) -> list[PartitionData]:
    return shifted_partitions(seed, k=K, local=LOCAL)


def config(**overrides) -> TrainConfig:
    base = dict(iterations=4, batch_size=K * LOCAL, lr=0.1, lr_gamma=1.0, eval_every=4,
                progress=False)
    return TrainConfig(**{**base, **overrides})


def is_bn(name: str) -> bool:
    return name.startswith("1.")          # the Sequential's BatchNorm2d


def test_the_engine_tells_which_values_are_batchnorm_ones():
    train = partitions()
    trainer = Trainer(tiny_bn, create_algorithm("fedbn"), train, train[0], config())
    params, buffers = trainer.stack.batch_norm_masks()
    assert params.tolist() == [False] * 20 + [True] * P_BN + [False] * 99
    assert buffers.tolist() == [True] * B          # running mean, var (num_batches_tracked: int)
    assert trainer.algorithm._bn_params.tolist() == params.tolist()


def test_fedbn_is_fedavg_that_keeps_batchnorm_values_local_by_hand():
    """K copies: local momentum SGD at lr/K; every 2 steps the non-BN parameters are averaged;
    BN affine parameters and running statistics are never averaged."""
    train, cfg = partitions(), config()
    trainer = Trainer(tiny_bn, create_algorithm("fedbn", iter_local=2), train, train[0], cfg)
    copies, velocity = hand_copies(tiny_bn, K, cfg.seed)
    for it in range(cfg.iterations):
        trainer.step()
        local_sgd_step(copies, velocity, train, lr=cfg.lr, momentum=cfg.momentum,
                       weight_decay=cfg.weight_decay)
        if it % 2 == 1:
            with torch.no_grad():
                named = [dict(c.named_parameters()) for c in copies]
                for name in named[0]:
                    if not is_bn(name):
                        mean = torch.stack([n[name] for n in named]).mean(0)
                        for n in named:
                            n[name].copy_(mean)
    assert_matches_copies(trainer, copies)
    bn = trainer.stack.params[:, 20:24]
    assert not torch.allclose(bn[0], bn[1])             # each partition's own BN affine
    assert torch.equal(trainer.stack.params[0, :20], trainer.stack.params[1, :20])
    means = trainer.stack.buffers["1.running_mean"]
    assert not torch.allclose(means[0], means[1])       # and its own statistics


def test_bytes_leave_batchnorm_out():
    train = partitions()
    fedbn = Trainer(tiny_bn, create_algorithm("fedbn", iter_local=2), train, train[0], config())
    fedavg = Trainer(tiny_bn, create_algorithm("fedavg", iter_local=2), train, train[0], config())
    sent = []
    for _ in range(2):
        stats, reference = fedbn.step(), fedavg.step()
        sent.append(stats.bytes_sent.tolist())
    assert sent == [[0.0] * K, [4.0 * (P - P_BN)] * K]              # 476 B: no BN value
    assert stats.bytes_received.tolist() == [4.0 * (P - P_BN)] * K
    assert stats.wire_bytes_sent.tolist() == [4.0 * (P - P_BN) * (K - 1)] * K
    assert reference.bytes_sent.tolist() == [4.0 * (P + B)] * K     # FedAvg: 508 B
    result = fedbn.run()       # two more iterations: one more averaging
    assert result.bytes_sent == [2 * 4.0 * (P - P_BN)] * K


def test_each_partition_is_scored_with_its_own_batchnorm():
    train = partitions()
    val = PartitionData(torch.randn(30, 1, 6, 6), torch.randint(0, 3, (30,)))
    trainer = Trainer(tiny_bn, create_algorithm("fedbn", iter_local=2), train, val, config())
    result = trainer.run()
    assert result.final.global_acc is None and result.global_curve == []
    model = tiny_bn()
    for k in range(K):
        model.load_state_dict(trainer.stack.state_dict(k))
        model.eval()
        shard = round_robin_shard(val, k, K)
        acc = float((model(shard.x).argmax(1) == shard.y).float().mean())
        assert result.final.per_partition[k] == pytest.approx(acc)
    assert result.final.mean == pytest.approx(sum(result.final.per_partition) / K)


def test_without_batchnorm_fedbn_equals_fedavg():
    train = partitions(seed=2)
    fedbn = Trainer(tiny_gn, create_algorithm("fedbn", iter_local=2), train, train[0], config())
    fedavg = Trainer(tiny_gn, create_algorithm("fedavg", iter_local=2), train, train[0], config())
    for _ in range(4):
        fedbn.step()
        fedavg.step()
    assert torch.equal(fedbn.stack.params, fedavg.stack.params)
    assert torch.equal(fedbn.bytes_sent, fedavg.bytes_sent)


def test_the_averaging_skips_the_masked_values_by_hand():
    """Two partitions of 3 values, the middle one BatchNorm: after one averaging step (lr 1,
    local lr 1/2, no momentum) values 0 and 2 are averaged, value 1 is each partition's."""
    fedbn = create_algorithm("fedbn", iter_local=1)
    fedbn.bind_batch_norm(torch.tensor([False, True, False]), torch.zeros(0, dtype=torch.bool))
    params = torch.zeros(2, 3)
    state = fedbn.init(params)
    grads = torch.tensor([[2.0, 2.0, 0.0], [0.0, 4.0, 4.0]])
    ctx = StepContext(iteration=0, lr=1.0, lr_factor=1.0, num_partitions=2, momentum=0.0,
                      weight_decay=0.0)
    stats = fedbn.apply(state, params, grads, ctx, LocalComm(2))
    assert params.tolist() == [[-0.5, -1.0, -1.0], [-0.5, -2.0, -1.0]]
    assert stats.synced and stats.bytes_sent.tolist() == [8.0, 8.0]   # 2 values, 4 B each


def test_a_mask_of_another_model_is_refused():
    fedbn = create_algorithm("fedbn")
    fedbn.bind_batch_norm(torch.tensor([True, False]), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask has 2 values for 3 model values"):
        fedbn.init(torch.zeros(2, 3))


def test_bad_iter_local_is_refused():
    with pytest.raises(ValueError, match="iter_local must be >= 1"):
        create_algorithm("fedbn", iter_local=0)
