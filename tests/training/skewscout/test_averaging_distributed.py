"""SkewScout scoring FedAvg's averagings (``visitor_view="average"``) under torch.distributed:
3 gloo processes on 127.0.0.1 take the same rounds, estimates and knobs as the simulation."""

import torch

from tests.training.distributed_helpers import launch_and_gather, mlp_bn, save_rank, skewed_data
from training.algorithms import create_algorithm
from training.distributed import distributed_trainer
from training.engine import TrainConfig, Trainer
from training.skewscout.scout import ControllerConfig, SkewScout, SkewScoutConfig

GRID = (1, 2, 4)     # IterLocal, most -> least traffic
CONFIG = TrainConfig(iterations=12, batch_size=18, lr=0.1, eval_every=6, eval_batch_size=32,
                     seed=5, progress=False)


def _run(trainer_of) -> dict:
    scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(target=0.05, patience=1),
                                            travel_interval=2, sample_size=8, seed=0))
    algorithm = create_algorithm("fedavg", iter_local=scout.initial_knob, visitor_view="average")
    trainer = trainer_of(algorithm, [scout])
    result = trainer.run()
    return {"trace": scout.knob_trace, "params": trainer.stack.params.clone(),
            "travels": [(r.iteration, r.pairs, r.local_acc, r.traveled_acc, r.bytes_total)
                        for r in scout.travels],
            "bytes_sent": result.bytes_sent}


def _worker(rank: int, out_dir: str) -> None:
    parts, val = skewed_data(k=3, train=90, seed=1)
    save_rank(_run(lambda a, cb: distributed_trainer(mlp_bn, a, parts, val, CONFIG,
                                                     callbacks=cb)), out_dir, rank)


def test_averaging_rounds_under_torch_distributed_match_the_simulation(tmp_path):
    ranks = launch_and_gather(_worker, 3, tmp_path)
    parts, val = skewed_data(k=3, train=90, seed=1)
    want = _run(lambda a, cb: Trainer(mlp_bn, a, parts, val, CONFIG, callbacks=cb))
    assert len(want["travels"]) >= 2
    assert all(t[1] == ((0, 0), (1, 1), (2, 2)) and t[4] == 0.0 for t in want["travels"])
    for rank, got in enumerate(ranks):
        assert got["travels"] == want["travels"] and got["trace"] == want["trace"]
        assert got["bytes_sent"] == want["bytes_sent"]
        torch.testing.assert_close(got["params"][0], want["params"][rank], rtol=1e-9,
                                   atol=1e-12)
