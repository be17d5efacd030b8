"""Partial participation (training/participation.py): the seeded sample, the engine's rounds
(only participants compute; their models averaged by sample counts), config errors, and
hundreds of partitions from the skewtools partitioners."""

import numpy as np
import pytest
import torch
from torch import nn

from skewtools import partition
from training.algorithms import create_algorithm, list_algorithms
from training.algorithms.base import algorithm_class
from training.datasets import PartitionData, index_batches, load_digits_dataset, split_partitions
from training.engine import TrainConfig, Trainer
from training.models import create_model
from training.participation import (
    check_supported,
    participants_per_round,
    sample_participants,
    supporting_algorithms,
)


def test_sample_is_a_function_of_seed_and_round_only():
    first = [sample_participants(7, r, 50, 5) for r in range(20)]
    assert first == [sample_participants(7, r, 50, 5) for r in range(20)]
    for chosen in first:
        assert chosen == sorted(set(chosen)) and len(chosen) == 5
        assert all(0 <= p < 50 for p in chosen)
    assert len({tuple(c) for c in first}) > 15                  # rounds differ
    assert first != [sample_participants(8, r, 50, 5) for r in range(20)]   # seeds differ
    # every partition gets its turn over many rounds
    seen = {p for r in range(200) for p in sample_participants(0, r, 50, 5)}
    assert seen == set(range(50))


def test_participants_per_round_fraction_or_count():
    assert participants_per_round(0.1, 500) == 50
    assert participants_per_round(0.1, 5) == 1        # nearest count, at least one
    assert participants_per_round(0.3, 5) == 2        # 1.5 rounds up
    assert participants_per_round(1.0, 7) == 7
    assert participants_per_round(3, 7) == 3          # an int is a count
    assert participants_per_round(1, 7) == 1
    with pytest.raises(ValueError, match="there are 7"):
        participants_per_round(8, 7)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, 2.0, -3, True, "0.1"])
def test_train_config_refuses_bad_participation_in_one_line(bad):
    with pytest.raises(ValueError, match=r"participation must be a fraction in \(0, 1\]") as err:
        TrainConfig(participation=bad)
    assert "\n" not in str(err.value)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()


def toy_partitions(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    parts = []
    for n in sizes:
        x = torch.randn(n, 4, generator=g, dtype=torch.float64)
        parts.append(PartitionData(x, x[:, :3].argmax(dim=1)))
    x = torch.randn(60, 4, generator=g, dtype=torch.float64)
    return parts, PartitionData(x, x[:, :3].argmax(dim=1))


def config(**overrides) -> TrainConfig:
    base = dict(iterations=8, batch_size=12, lr=0.5, eval_every=4, seed=3, progress=False)
    return TrainConfig(**{**base, **overrides})


@pytest.mark.parametrize("name", ["bsp", "gaia", "dgc"])
def test_algorithms_without_support_are_refused_naming_those_with(name):
    parts, val = toy_partitions([10] * 4)
    with pytest.raises(ValueError, match=f"{name} does not support partial participation.*fedavg"):
        Trainer(mlp, create_algorithm(name), parts, val, config(participation=0.5))
    with pytest.raises(ValueError, match="does not support"):
        check_supported(name)
    assert "fedavg" in supporting_algorithms() and name not in supporting_algorithms()


def test_a_count_above_the_partitions_and_seed_groups_are_refused():
    parts, val = toy_partitions([10] * 4)
    with pytest.raises(ValueError, match="participation=5 partitions per round, but there are 4"):
        Trainer(mlp, create_algorithm("fedavg"), parts, val, config(participation=5))
    with pytest.raises(ValueError, match="train each seed alone"):
        Trainer(mlp, create_algorithm("fedavg"), parts + parts, val, config(participation=0.5),
                seeds=[0, 1])


def _outcome(trainer: Trainer) -> tuple:
    result = trainer.run()
    return (trainer.stack.params.clone(), result.curve, result.global_curve, result.bytes_sent,
            result.wire_bytes_sent, result.final.per_partition)


@pytest.mark.parametrize("everyone", [1.0, 4])
def test_full_participation_is_todays_fedavg_bit_for_bit(everyone):
    parts, val = toy_partitions([10] * 4)
    today = _outcome(Trainer(mlp, create_algorithm("fedavg", iter_local=3), parts, val,
                             config()))
    full = _outcome(Trainer(mlp, create_algorithm("fedavg", iter_local=3), parts, val,
                            config(participation=everyone)))
    assert torch.equal(today[0], full[0])
    assert today[1:] == full[1:]


class Tagged(torch.autograd.Function):
    """Identity on a layer's output that logs, in forward and backward, which partition it
    serves (every sample of partition p carries p in its last input feature)."""

    log: list[tuple[str, int]] = []

    @staticmethod
    def forward(ctx, h, x):
        ctx.tag = int(x[0, -1])
        Tagged.log.append(("forward", ctx.tag))
        return h.clone()

    @staticmethod
    def backward(ctx, grad):
        Tagged.log.append(("backward", ctx.tag))
        return grad, None


class TaggedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 3).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Tagged.apply(self.fc(x), x)


def test_sampled_out_partitions_do_no_forward_or_backward():
    parts = []
    for p in range(10):
        x = torch.randn(8, 5, dtype=torch.float64)
        x[:, -1] = p
        parts.append(PartitionData(x, torch.arange(8) % 3))
    val = PartitionData(torch.zeros(20, 5, dtype=torch.float64), torch.zeros(20, dtype=torch.long))
    trainer = Trainer(TaggedNet, create_algorithm("fedavg", iter_local=2), parts, val,
                      config(iterations=6, batch_size=20, eval_every=100, participation=0.3,
                             vectorize=False))
    assert trainer.stack.params.shape[0] == 3         # rows only for the round's participants
    for r in range(3):
        Tagged.log.clear()
        for _ in range(2):
            trainer.step()
        chosen = sample_participants(3, r, 10, 3)
        forward = [tag for kind, tag in Tagged.log if kind == "forward"]
        backward = [tag for kind, tag in Tagged.log if kind == "backward"]
        assert forward == chosen * 2 and sorted(backward) == sorted(chosen * 2)


def test_participants_are_averaged_by_sample_count_by_hand():
    sizes = [6, 12, 9, 18, 6]
    parts, val = toy_partitions(sizes)
    cfg = config(iterations=3, batch_size=15, lr=0.3, momentum=0.0, weight_decay=0.0, lr_gamma=1,
                 participation=2, eval_every=100)
    trainer = Trainer(mlp, create_algorithm("fedavg", iter_local=1), parts, val, cfg)
    torch.manual_seed(cfg.seed)
    model = mlp()
    streams = [index_batches(n, 3, np.random.default_rng([cfg.seed, p]))
               for p, n in enumerate(sizes)]
    for r in range(3):
        chosen = sample_participants(cfg.seed, r, 5, 2)
        local = []
        for p in chosen:      # one local SGD step at lr / N from the global model
            index = torch.from_numpy(next(streams[p]))
            copy = mlp()
            copy.load_state_dict(model.state_dict())
            loss = nn.functional.cross_entropy(copy(parts[p].x[index]), parts[p].y[index])
            loss.backward()
            local.append([w.detach() - cfg.lr / 5 * w.grad for w in copy.parameters()])
        total = sum(sizes[p] for p in chosen)
        with torch.no_grad():
            for w, *mine in zip(model.parameters(), *local, strict=True):
                w.copy_(sum(sizes[p] / total * m for p, m in zip(chosen, mine, strict=True)))
        trainer.step()
    expected = torch.cat([w.detach().flatten() for w in model.parameters()])
    assert torch.allclose(trainer.stack.params[0], expected, atol=1e-12)
    assert torch.allclose(trainer.stack.params[1], expected, atol=1e-12)
    assert torch.equal(trainer.rounds.global_params, trainer.stack.params[0])


def test_bytes_and_evaluation_count_participants_only():
    parts, val = toy_partitions([10] * 6)
    trainer = Trainer(mlp, create_algorithm("fedavg", iter_local=2), parts, val,
                      config(iterations=4, participation=0.5))
    result = trainer.run()
    # memory: the participants' rows (parameters, momentum) and one global model
    assert trainer.stack.params.shape[0] == trainer.state.momentum.shape[0] == 3
    assert trainer.rounds.global_params.shape == (trainer.num_parameters,)
    message = 4.0 * trainer.num_parameters
    rounds = [sample_participants(3, r, 6, 3) for r in range(2)]
    expected = [message * sum(p in chosen for chosen in rounds) for p in range(6)]
    assert result.bytes_sent == expected
    assert result.wire_bytes_sent == [b * 2 for b in expected]    # to the other 2 participants
    # after the final averaging every partition holds the global model
    trainer_acc = result.final.per_partition
    assert len(trainer_acc) == 6 and result.final.global_acc is not None


def test_vmap_runs_on_the_participants_and_equals_the_loop():
    parts, val = toy_partitions([10] * 6)
    runs = [Trainer(mlp, create_algorithm("fedavg", iter_local=2), parts, val,
                    config(participation=0.5, vectorize=v)) for v in (False, True)]
    loop, vmapped = (_outcome(t) for t in runs)
    assert runs[1].stack.vectorize and runs[1].stack.params.shape[0] == 3
    assert torch.allclose(loop[0], vmapped[0], atol=1e-10)
    assert loop[3] == vmapped[3]


def test_a_diverging_participant_is_named():
    parts, val = toy_partitions([10] * 4)
    trainer = Trainer(mlp, create_algorithm("fedavg", iter_local=2), parts, val,
                      config(iterations=4, lr=1e308, participation=2))
    with pytest.raises(RuntimeError, match="non-finite"):
        trainer.run()


@pytest.mark.parametrize("scheme,params", [
    ("dirichlet", {"alpha": 0.5, "min_partition_size": 4}),
    ("label_skew", {"noniid_fraction": 0.8}),
])
def test_a_hundred_partitions_of_digits_train_under_participation(scheme, params):
    data = load_digits_dataset(image_size=8)
    split = partition(scheme, data.train.y.numpy(), num_partitions=100, seed=0, **params)
    parts = split_partitions(data.train, split.indices)
    assert len(parts) == 100
    cfg = TrainConfig(iterations=4, batch_size=200, lr=0.05, eval_every=4, seed=0,
                      progress=False, participation=0.1)
    trainer = Trainer(lambda: create_model("lenet", num_classes=10, in_channels=1,
                                           image_size=8),
                      create_algorithm("fedavg", iter_local=2, local_lr="global"), parts,
                      data.val, cfg)
    result = trainer.run()
    assert trainer.stack.params.shape[0] == 10
    assert sum(b > 0 for b in result.bytes_sent) <= 20         # two rounds of 10
    assert 0 <= result.final.mean <= 1 and len(result.final.per_partition) == 100


def test_partitions_by_country_train_under_participation():
    rng = np.random.default_rng(0)
    countries = [f"c{i:03d}" for i in range(120)]
    manifest_country = np.repeat(countries, 6)
    labels = rng.integers(0, 3, size=len(manifest_country))
    import pandas as pd
    manifest = pd.DataFrame({"key": [f"k{i}" for i in range(len(labels))],
                             "country_code": manifest_country, "label": labels})
    split = partition("by_attribute", manifest, attribute="country_code")
    assert len(split.indices) == 120
    x = torch.from_numpy(rng.normal(size=(len(labels), 4)))
    data = PartitionData(x, torch.from_numpy(labels))
    parts = split_partitions(data, split.indices)
    val = PartitionData(x[:240], data.y[:240])
    trainer = Trainer(mlp, create_algorithm("fedavg", iter_local=2), parts, val,
                      config(iterations=4, batch_size=240, participation=12))
    result = trainer.run()
    assert trainer.stack.params.shape[0] == 12 and len(result.final.per_partition) == 120


@pytest.mark.parametrize("value, message", [
    (0.0, r"participation must be a fraction in \(0, 1\]"),
    (1.5, r"participation must be a fraction in \(0, 1\]"),
    (0.5, "bsp does not support partial participation; drop participation or use one of: "
          "fedavg"),
])
def test_a_bad_participation_in_a_study_stops_at_load_in_one_line(value, message):
    from training.study.config import study_from_dict
    doc = study_doc(participation=value, algorithms=["fedavg", "bsp"])
    with pytest.raises(ValueError, match=message) as info:
        study_from_dict(doc)
    assert "\n" not in str(info.value)


def study_doc(participation, algorithms=("fedavg",), num_partitions=2, **top) -> dict:
    return {"name": "tiny", "num_partitions": num_partitions,
            "dataset": {"name": "digits", "image_size": 8}, "seeds": [0, 1],
            "train": {"iterations": 2, "participation": participation, "batch_size": 200},
            "experiments": [{"name": "n", "kind": "noniid", "models": ["gn-lenet"],
                             "algorithms": list(algorithms), "noniid_fractions": [1.0]}], **top}


def test_a_study_of_a_hundred_dirichlet_partitions_under_participation_runs():
    from training.study.config import study_from_dict
    from training.study.groups import units
    from training.study.run import execute_run

    study = study_from_dict(study_doc(0.1, num_partitions=100, partitioner="dirichlet",
                                      partitioner_params={"alpha": 1.0,
                                                          "min_partition_size": 2}))
    specs = study.all_runs()
    assert [len(unit) for unit in units(specs)] == [1, 1]      # each seed trains alone
    row = execute_run(specs[0])
    assert row["iterations"] == 2 and 0.0 <= row["final_acc"] <= 1.0


@pytest.mark.parametrize("name", list_algorithms())
def test_every_registered_algorithm_runs_under_participation_or_refuses(name):
    parts, val = toy_partitions([10, 14, 10, 12])
    cfg = config(iterations=4, participation=0.5)
    if not algorithm_class(name).supports_participation:
        with pytest.raises(ValueError, match="does not support partial participation"):
            Trainer(mlp, create_algorithm(name), parts, val, cfg)
        return
    trainer = Trainer(mlp, create_algorithm(name), parts, val, cfg)
    result = trainer.run()
    assert trainer.stack.params.shape[0] == 2
    assert sum(result.bytes_sent) > 0 and np.isfinite(result.final.mean)
    # every partition ends holding the one global model
    assert torch.equal(trainer.stack.params[0], trainer.stack.params[1])


def test_partial_participation_refuses_fixbn_and_fedbn():
    """FixBN's one-time freeze and FedBN's per-partition BatchNorm need every partition in
    every round: both combinations are one-line errors, not silently wrong runs."""
    from training.participation import check_supported

    with pytest.raises(ValueError, match="fedbn does not support partial participation"):
        check_supported("fedbn")
    parts, val = toy_partitions([10] * 4)
    with pytest.raises(ValueError, match="norm_stats='fixbn' .* partial participation"):
        Trainer(mlp, create_algorithm("fedavg"), parts, val,
                config(participation=0.5, norm_stats="fixbn"))
