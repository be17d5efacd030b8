"""TrainerHost: what SkewScout reads from and adds to a Trainer (training/skewscout/host.py)."""

import pytest
import torch

from tests.training.test_engine import ConstantClass, constant_trainer
from training.skewscout.host import ScoutHost, TrainerHost, as_host


def test_model_accuracy_sample_state_dict_and_extra_bytes():
    trainer = constant_trainer("bsp")
    host = TrainerHost(trainer)
    x, y = torch.zeros(4, 1), torch.tensor([1, 1, 1, 0])
    assert host.model_accuracy(1, x, y) == pytest.approx(0.75)
    assert host.model_accuracy(0, x, y) == pytest.approx(0.25)
    xa, _ = host.train_sample(0, 3, seed=5)
    xb, _ = host.train_sample(0, 3, seed=5)
    assert xa.shape == (3, 1) and torch.equal(xa, xb)
    model = ConstantClass()
    model.load_state_dict(host.partition_state_dict(1))
    assert model.head.bias.tolist() == [0.0, 3.0, 0.0]
    host.add_bytes(1, sent=10.0, received=4.0)
    assert trainer.bytes_sent.tolist() == [0.0, 10.0]
    assert trainer.bytes_received.tolist() == [0.0, 4.0]


def test_a_payload_round_trips_and_a_trainer_is_wrapped_once():
    trainer = constant_trainer("gaia")
    host: ScoutHost = as_host(trainer)
    assert isinstance(host, TrainerHost) and as_host(host) is host
    x, y = torch.zeros(4, 1), torch.tensor([1, 1, 1, 0])
    sent = host.model_payload(1)
    assert host.payload_accuracy(sent, x, y) == host.model_accuracy(1, x, y) == 0.75
    assert torch.equal(host.judged_payload(0, sent), sent)   # nothing pending: as it came
    assert host.partition_ids == [0, 1] and host.num_partitions == 2 and host.iteration == 0
    with host.local_views():                                  # Gaia: the models are the views
        assert not host.views_just_agreed()
