"""FedAvg is scored on an averaged model: its run's last iteration always averages, whatever
IterLocal is (docs/training.md, Scoring)."""

import torch
from torch import nn

from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm
from training.datasets import PartitionData
from training.engine import TrainConfig, Trainer


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))


def toy_partitions(k: int = 3, n: int = 12) -> list[PartitionData]:
    gen = torch.Generator().manual_seed(0)
    return [PartitionData(torch.randn(n, 4, generator=gen),
                          torch.randint(0, 3, (n,), generator=gen)) for _ in range(k)]


def test_the_final_iteration_averages_even_mid_cycle():
    fedavg = create_algorithm("fedavg", iter_local=5)
    params = torch.zeros(2, 1)
    state = fedavg.init(params)
    grads = torch.tensor([[1.0], [0.0]])
    synced = []
    for it in range(3):       # a 3-iteration run: IterLocal 5 would never average
        ctx = StepContext(iteration=it, lr=1.0, lr_factor=1.0, num_partitions=2, momentum=0.0,
                          weight_decay=0.0, final_iteration=2)
        synced.append(bool(fedavg.apply(state, params, grads, ctx, LocalComm(2)).synced))
    assert synced == [False, False, True]
    assert params.tolist() == [[-0.75], [-0.75]]     # the mean of -1.5 and 0
    assert state.steps_since_sync == 0


def test_a_run_whose_iter_local_does_not_divide_its_iterations_is_scored_averaged():
    train = toy_partitions()
    cfg = TrainConfig(iterations=7, batch_size=9, lr=0.3, lr_milestones=(0.5,), eval_every=7,
                      eval_batch_size=5, progress=False)
    trainer = Trainer(mlp, create_algorithm("fedavg", iter_local=3), train, train[0], cfg)
    result = trainer.run()
    params = trainer.stack.params
    # averaged after iterations 3, 6 and the last (7): every replica is the same model, so
    # each partition's score is that model's on its shard of the validation set
    assert torch.equal(params, params[:1].expand_as(params))
    assert result.final.global_acc is not None
    # 3 averagings of the dense model: the bytes of exactly 3 messages per partition
    per_message = 4 * trainer.num_parameters
    assert result.bytes_sent == [3.0 * per_message] * 3
