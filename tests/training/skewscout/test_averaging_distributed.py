"""SkewScout scoring FedAvg's averagings (``visitor_view="average"``) under torch.distributed:
3 gloo processes on 127.0.0.1 take the same rounds, estimates and knobs as the simulation."""

from functools import partial

import pytest
import torch

from tests.training.distributed_helpers import launch_and_gather, mlp_bn, save_rank, skewed_data
from training.algorithms import create_algorithm
from training.distributed import distributed_trainer
from training.engine import TrainConfig, Trainer
from training.skewscout.scout import ControllerConfig, SkewScout, SkewScoutConfig

GRID = (1, 2, 4, 8, 16)     # IterLocal, most -> least traffic; the middle averages at 4, 8, 12
CONFIG = TrainConfig(iterations=12, batch_size=18, lr=0.1, eval_every=6, eval_batch_size=32,
                     seed=5, progress=False)


# the start probe, forced either way: visitors scoring 0.5 at iteration 3 read as disjoint under
# 0.99 (a jump) and as overlapping under 0 (a note)
STARTS = {"middle": {}, "probe-jump": {"start": "probe", "probe_visitor_acc": 0.99},
          "probe-note": {"start": "probe", "probe_visitor_acc": 0.0}}


def _run(trainer_of, start: str) -> dict:
    scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(target=0.05, patience=1),
                                            travel_interval=2, sample_size=8, seed=0,
                                            first_travel=3, **STARTS[start]))
    algorithm = create_algorithm("fedavg", iter_local=scout.initial_knob, visitor_view="average")
    trainer = trainer_of(algorithm, [scout])
    result = trainer.run()
    return {"trace": scout.knob_trace, "params": trainer.stack.params.clone(),
            "travels": [(r.iteration, r.pairs, r.local_acc, r.traveled_acc, r.bytes_total)
                        for r in scout.travels],
            "bytes_sent": result.bytes_sent}


def _worker(rank: int, out_dir: str, start: str) -> None:
    parts, val = skewed_data(k=3, train=90, seed=1)
    save_rank(_run(lambda a, cb: distributed_trainer(mlp_bn, a, parts, val, CONFIG,
                                                     callbacks=cb), start), out_dir, rank)


@pytest.mark.parametrize("start", list(STARTS))
def test_averaging_rounds_under_torch_distributed_match_the_simulation(tmp_path, start):
    ranks = launch_and_gather(partial(_worker, start=start), 3, tmp_path)
    parts, val = skewed_data(k=3, train=90, seed=1)
    want = _run(lambda a, cb: Trainer(mlp_bn, a, parts, val, CONFIG, callbacks=cb), start)
    rounds = want["travels"]
    if start != "middle":    # the probe travels models (round-robin pairs) at iteration 3
        probe, *rounds = rounds
        assert probe[0] == 3 and probe[1] == ((0, 1), (1, 2), (2, 0)) and probe[4] > 0
        if start == "probe-jump":                   # the middle (4), then halfway down: 2
            assert want["trace"][:2] == [(0, 4.0), (3, 2.0)]
        else:                                       # a note: no move at the probe
            assert want["trace"][0] == (0, 4.0) and all(i > 3 for i, _ in want["trace"][1:])
    assert len(rounds) >= 2
    assert all(t[1] == ((0, 0), (1, 1), (2, 2)) and t[4] == 0.0 for t in rounds)
    for rank, got in enumerate(ranks):
        assert got["travels"] == want["travels"] and got["trace"] == want["trace"]
        assert got["bytes_sent"] == want["bytes_sent"]
        torch.testing.assert_close(got["params"][0], want["params"][rank], rtol=1e-9,
                                   atol=1e-12)
