"""SkewScout: the controller's rule on scripted loss sequences, and model-traveling accounting."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from training.engine import TrainConfig
from training.skewscout.host import TrainerHost
from training.skewscout.scout import (
    ControllerConfig,
    KnobController,
    SkewScout,
    SkewScoutConfig,
    model_bytes,
    ordered_grid,
    travel,
    travel_dtype_for,
    travel_pairs,
)

GRID = (5.0, 10.0, 50.0, 200.0, 1000.0)   # FedAvg IterLocal, most -> least communication


def run_script(estimates, **cfg):
    ctl = KnobController(GRID, ControllerConfig(target=0.1, **cfg), index=2)
    return [ctl.update(e, i).action for i, e in enumerate(estimates)], ctl


def test_ordered_grid_runs_from_most_to_least_communication():
    assert ordered_grid("iter_local", [200, 5, 50]) == (5, 50, 200)
    assert ordered_grid("sparsity", [0.999, 0.9]) == (0.9, 0.999)
    with pytest.raises(KeyError, match="known: iter_local, sparsity, t0"):
        ordered_grid("lr", [1.0])
    with pytest.raises(ValueError, match="repeats"):
        ordered_grid("t0", [0.1, 0.1])


def test_tighten_at_once_two_steps_when_far_over_target():
    actions, ctl = run_script([0.15])
    assert actions == ["tighten"] and ctl.index == 1
    actions, ctl = run_script([0.25])          # > 2 x target: two steps
    assert actions == ["tighten"] and ctl.index == 0
    actions, ctl = run_script([0.25, 0.5])     # bounded at the most-communication end
    assert actions == ["tighten", "hold"] and ctl.index == 0


def test_loosen_needs_patience_and_band_resets_streak():
    actions, ctl = run_script([0.01, 0.01, 0.01, 0.07, 0.01, 0.01], patience=2)
    # two lows -> loosen to 3; one low, then the band (0.07 in [0.05, 0.1]) resets; two lows -> 4
    assert actions == ["hold", "loosen", "hold", "hold", "hold", "loosen"]
    assert ctl.index == 4 and ctl.knob == 1000.0
    actions, ctl = run_script([0.0, 0.0, 0.0], patience=2)   # bounded at the cheapest end
    assert ctl.index == 3 and run_script([0.0] * 6, patience=2)[1].index == 4


def test_a_tighten_whose_loss_vanishes_at_the_first_check_is_undone_at_once():
    actions, ctl = run_script([0.15, 0.0], patience=3)
    assert actions == ["tighten", "loosen"] and ctl.index == 2
    # once the tightened knob has held a round, the full patience applies again
    actions, _ = run_script([0.15, 0.07, 0.0, 0.0, 0.0], patience=3)
    assert actions == ["tighten", "hold", "hold", "hold", "loosen"]


def cost_controller(costs, index=2, **cfg):
    ctl = KnobController(GRID, ControllerConfig(target=0.1, **cfg), index=index)
    for i, c in costs.items():
        ctl.record_cost(i, c)
    return ctl


def test_an_expensive_tighten_needs_the_loss_to_persist():
    # index 1 measured at 4.3x the bytes of index 2 (DGC 0.9 vs 0.99): 1 + floor(log2 4.3) = 3
    ctl = cost_controller({1: 430.0, 2: 100.0})
    assert ctl.cost_ratio(1) == pytest.approx(4.3) and ctl.rounds_to_tighten_into(1) == 3
    assert [ctl.update(0.2).action for _ in range(3)] == ["hold", "hold", "tighten"]
    # a cheap step (+30%) or one never visited needs one round
    assert cost_controller({1: 130.0, 2: 100.0}).rounds_to_tighten_into(1) == 1
    assert cost_controller({2: 100.0}).rounds_to_tighten_into(1) == 1
    # a knob that sends nothing: the cap
    assert cost_controller({1: 5.0, 2: 0.0}, max_tighten_rounds=4).rounds_to_tighten_into(1) == 4
    # a round in the band breaks the streak
    ctl = cost_controller({1: 430.0, 2: 100.0})
    assert [ctl.update(e).action for e in (0.2, 0.2, 0.07, 0.2)] == ["hold"] * 4


def test_a_two_step_tighten_is_weighed_by_the_cost_of_both_steps():
    # index 2 -> 0 at 16x the bytes needs 5 rounds (capped at 4); one step (2x) would need 2
    ctl = cost_controller({0: 1600.0, 1: 200.0, 2: 100.0}, double_step_ratio=2.0)
    assert [ctl.update(0.5).action for _ in range(4)] == ["hold", "hold", "hold", "tighten"]
    assert ctl.index == 0
    ctl = cost_controller({0: 1600.0, 1: 200.0, 2: 100.0}, double_step_ratio=2.0)
    assert [ctl.update(0.15).action for _ in range(2)] == ["hold", "tighten"]   # one step
    assert ctl.index == 1


def test_zero_bytes_per_iteration_and_a_grid_of_one_value():
    # nothing sent at either index (or only at the current one): no reason to wait
    assert cost_controller({1: 0.0, 2: 0.0}).rounds_to_tighten_into(1) == 1
    assert cost_controller({1: 0.0, 2: 100.0}).rounds_to_tighten_into(1) == 1
    # one value: nowhere to move, whatever the evidence, and never a loosen pending
    ctl = KnobController((0.99,), ControllerConfig(target=0.1, patience=1))
    assert [ctl.update(e).action for e in (0.9, 0.9, 0.0, 0.0, 0.07)] == ["hold"] * 5
    assert ctl.index == 0 and ctl.knob == 0.99 and not ctl.loosen_pending


def test_evidence_restarts_after_a_move():
    # window 3: without the restart, the median of [0.9, 0.0] would stay over the target after
    # the tighten; with it, the first estimate at the new knob decides alone.
    actions, ctl = run_script([0.9, 0.0], window=3)
    assert actions == ["tighten", "loosen"]
    assert ctl.history[1].estimate == 0.0


def test_new_phase_clears_evidence_and_streaks_but_keeps_costs():
    ctl = cost_controller({1: 430.0, 2: 100.0}, window=3, patience=2)
    ctl.update(0.0)                      # one low counted towards a loosen
    assert ctl.loosen_pending
    ctl.new_phase()
    assert not ctl.loosen_pending and ctl.rounds_to_tighten_into(1) == 3
    assert ctl.update(0.0).action == "hold"      # the streak starts again from zero
    other = KnobController(GRID, ControllerConfig(target=0.1, window=3, patience=2), index=2)
    other.update(0.0)
    other.new_phase()
    assert other.update(0.08).estimate == 0.08   # evidence restarted: the 0.0 is gone


def test_a_decay_right_after_a_tighten_does_not_undo_it_on_one_quiet_round():
    # without a decay, one quiet round right after a tighten undoes it (rule 3); after a decay
    # the quiet is the new learning rate's, so the knob must hold for `patience` rounds
    actions, _ = run_script([0.9, 0.0], patience=2)
    assert actions == ["tighten", "loosen"]
    ctl = KnobController(GRID, ControllerConfig(target=0.1, patience=2), index=2)
    assert ctl.update(0.9).action == "tighten"
    ctl.new_phase()
    assert [ctl.update(0.0).action for _ in range(2)] == ["hold", "loosen"]


def test_controller_config_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="fraction"):
        ControllerConfig(target=5)
    with pytest.raises(ValueError, match="patience"):
        ControllerConfig(patience=0)
    with pytest.raises(ValueError, match="max_tighten_rounds"):
        ControllerConfig(max_tighten_rounds=0)
    with pytest.raises(ValueError, match="max_travel_interval"):
        SkewScoutConfig(travel_interval=100, max_travel_interval=50)


def test_travel_pairs_round_robin_cycles_offsets_and_all_pairs():
    assert travel_pairs(3, 0, "round_robin") == [(0, 1), (1, 2), (2, 0)]
    assert travel_pairs(3, 1, "round_robin") == [(0, 2), (1, 0), (2, 1)]
    assert travel_pairs(3, 2, "round_robin") == travel_pairs(3, 0, "round_robin")
    assert sorted(travel_pairs(3, 0, "all_pairs")) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0),
                                                       (2, 1)]
    assert travel_pairs(1, 0, "round_robin") == []


class FakeAlgorithm:
    knob_name = "iter_local"

    def __init__(self):
        self.iter_local = 50

    def set_knob(self, v):
        self.iter_local = int(v)


class FakeTrainer:
    """Partition i's model has accuracy acc[i][j] on partition j's data; 10 params + 2 buffers."""

    def __init__(self, acc):
        self.acc = acc
        self.num_partitions = len(acc)
        self.partition_ids = list(range(self.num_partitions))
        self.comm = None                                  # every partition lives here
        self.config = TrainConfig(lr_milestones=())       # no learning-rate decay
        self.iteration = 0
        self.algorithm = FakeAlgorithm()
        self.sent = [0.0] * self.num_partitions
        self.received = [0.0] * self.num_partitions
        self.bytes_sent = [0.0] * self.num_partitions     # the algorithm's (it sends nothing)

    def local_views(self):
        return nullcontext()                              # the models are the views

    def views_just_agreed(self):
        return False

    def scores_averaging(self):
        return False

    def partition_state_dict(self, i):
        return {"w": torch.zeros(2, 5), "running_mean": torch.zeros(2),
                "num_batches_tracked": torch.tensor(3)}

    def train_sample(self, i, n, seed):
        return torch.zeros(n, 1), torch.full((n,), i)

    def model_accuracy(self, i, x, y):
        return self.acc[i][int(y[0])]

    def model_payload(self, i, dtype=torch.float32):
        return torch.tensor([float(i)], dtype=dtype)    # stands for model i

    def payload_accuracy(self, payload, x, y):
        return self.acc[int(payload[0])][int(y[0])]

    def judged_payload(self, i, payload):
        return payload

    def add_bytes(self, i, sent, received):
        self.sent[i] += sent
        self.received[i] += received


def test_travel_measures_local_minus_traveled_and_counts_bytes():
    acc = [[1.0, 0.2, 0.4], [0.5, 0.9, 0.1], [0.3, 0.3, 0.8]]
    tr = FakeTrainer(acc)
    rep = travel(tr, 0, sample_size=4, pairing="round_robin", seed=0, dtype="float32")
    # pairs (0,1) (1,2) (2,0): local acc on dst minus traveled
    assert rep.losses == pytest.approx((0.9 - 0.2, 0.8 - 0.1, 1.0 - 0.3))
    assert rep.estimate == pytest.approx((0.7 + 0.7 + 0.7) / 3)
    assert model_bytes(tr.partition_state_dict(0)) == 48.0   # 12 floats, the int counter skipped
    assert tr.sent == [48.0, 48.0, 48.0] and tr.received == [48.0, 48.0, 48.0]
    assert rep.bytes_total == 144.0


class RemoteComm:
    """Process 0 of 2 seen from inside: partition 1 lives in another process, whose rows arrive
    in the sums (its overflow flag in the first one, the dtype vote) and whose model comes by
    ``exchange``."""

    num_partitions = 2

    def __init__(self, other_overflows):
        self.flag, self.sums, self.exchanged = float(other_overflows), 0, []

    def all_sum(self, x):
        self.sums += 1
        return x + (self.flag if self.sums == 1 else 0.0)

    def exchange(self, outgoing, incoming):
        self.exchanged.append(([(p, t.dtype) for p, t in outgoing],
                               [(p, t.dtype) for p, t in incoming]))
        for p, into in incoming:
            into.fill_(p)                 # partition p's model stands for itself


@pytest.mark.parametrize("other_overflows, dtype", [(False, torch.float16),
                                                    (True, torch.float32)])
def test_under_torch_distributed_a_model_arrives_from_its_process_in_the_agreed_dtype(
        other_overflows, dtype):
    tr = FakeTrainer([[0.9, 0.2], [0.3, 0.8]])
    tr.partition_ids, tr.comm = [0], RemoteComm(other_overflows)
    # round 1 of "single": partition 1's model travels to partition 0 (this process)
    rep = travel(tr, 1, sample_size=4, pairing="single", seed=0, dtype="float16")
    assert rep.pairs == ((1, 0),) and rep.losses == pytest.approx((0.9 - 0.3,))
    assert tr.comm.exchanged == [([], [(1, dtype)])]
    assert rep.bytes_per_model == 12 * dtype.itemsize      # both processes count the same size
    assert tr.received == [rep.bytes_per_model, 0.0] and tr.sent == [0.0, 0.0]


def test_skewscout_callback_travels_on_schedule_and_turns_the_knob():
    identical = [[0.9] * 3 for _ in range(3)]   # no skew: loss 0 -> loosen after patience
    tr = FakeTrainer(identical)
    cfg = SkewScoutConfig(ControllerConfig(target=0.1, patience=2), travel_interval=10,
                          jitter=False)
    scout = SkewScout(GRID, cfg)
    for it in range(1, 31):
        tr.iteration = it
        scout(tr)
    assert [r.iteration for r in scout.travels] == [10, 20, 30]
    assert [d.action for d in scout.decisions] == ["hold", "loosen", "hold"]
    assert tr.algorithm.iter_local == 200
    assert scout.knob_trace == [(0, 50.0), (20, 200.0)]
    # 3 rounds x 3 models x 12 floats, at 2 B each in the default float16
    assert scout.travel_bytes == 3 * 3 * 24.0 and sum(tr.sent) == scout.travel_bytes


def test_backoff_doubles_interval_while_holding():
    tr = FakeTrainer([[0.9, 0.83], [0.83, 0.9]])       # loss 0.07: inside the band -> hold
    cfg = SkewScoutConfig(ControllerConfig(target=0.1), travel_interval=10,
                          max_travel_interval=40, jitter=False)
    scout = SkewScout(GRID, cfg)
    for it in range(1, 151):
        tr.iteration = it
        scout(tr)
    # the first hold after the start keeps the interval; from the second on it doubles
    assert [r.iteration for r in scout.travels] == [10, 20, 40, 80, 120]


class DecayConfig:
    """The learning-rate schedule of a Trainer's config: x0.1 from iteration 5 on."""

    @staticmethod
    def lr_factor(iteration):
        return 0.1 if iteration >= 5 else 1.0


def test_learning_rate_decay_starts_a_new_phase_and_waits_a_full_interval():
    def travel_times(decay):
        tr = FakeTrainer([[0.9, 0.83], [0.83, 0.9]])       # loss 0.07: hold
        if decay:
            tr.config = DecayConfig()
        scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(target=0.1),
                                                travel_interval=40, jitter=False))
        phases = []
        scout.controller.new_phase = lambda: phases.append(tr.iteration)
        for it in range(1, 61):
            tr.iteration = it
            scout(tr)
        return [r.iteration for r in scout.travels], phases

    assert travel_times(decay=False) == ([40], [])
    # the decay at 5 starts a new phase; the next round waits until 5 + 40
    assert travel_times(decay=True) == ([45], [5])


class MeteredTrainer(FakeTrainer):
    """A FakeTrainer whose algorithm sends ``rate(knob)`` bytes per partition per iteration."""

    def __init__(self, acc, rate):
        super().__init__(acc)
        self.rate, self.bytes_sent = rate, [0.0] * self.num_partitions

    def advance(self):
        self.iteration += 1
        for i in range(self.num_partitions):
            self.bytes_sent[i] += self.rate(self.algorithm.iter_local)

    def add_bytes(self, i, sent, received):   # traveling: must not count as the knob's cost
        super().add_bytes(i, sent, received)
        self.bytes_sent[i] += sent


def test_skewscout_measures_each_knobs_bytes_and_rechecks_a_tighten_soon():
    skewed = [[0.9, 0.75], [0.75, 0.9]]              # loss 0.15: over the target -> tighten
    tr = MeteredTrainer(skewed, rate=lambda knob: 1000.0 / knob)
    scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(target=0.1), travel_interval=10,
                                            jitter=False))
    for _ in range(25):
        tr.advance()
        scout(tr)
    # tighten at 10 (50 -> 10), the check after half an interval (15) tightens again (10 -> 5),
    # checked again at 20; holding at the end of the grid, the next round is a full interval on
    assert [r.iteration for r in scout.travels] == [10, 15, 20]
    assert scout.knob_trace[:3] == [(0, 50.0), (10, 10.0), (15, 5.0)]
    # measured from the first round on (travel bytes left out); the starting knob is not
    # measured before it, where e.g. DGC's sparsity warm-up would inflate its cost
    assert scout.controller.cost_ratio(1) == pytest.approx(0.5)     # at 5 now: 10 sends half
    scout.controller.index = 1
    assert scout.controller.cost_ratio(0) == pytest.approx(2.0)
    assert scout.controller.cost_ratio(2) == 1.0                    # 50: never measured


def test_single_pairing_visits_every_ordered_pair_once_per_cycle():
    pairs = [travel_pairs(3, r, "single")[0] for r in range(6)]
    assert sorted(pairs) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]


def test_jitter_is_seeded_and_bounded():
    def times(seed):
        tr = FakeTrainer([[0.9, 0.83], [0.83, 0.9]])
        scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(target=0.1), travel_interval=20,
                                                seed=seed))
        for it in range(1, 201):
            tr.iteration = it
            scout(tr)
        return [r.iteration for r in scout.travels]

    a = times(0)
    assert a == times(0) and a != times(1)
    gaps = [y - x for x, y in zip([0, *a], a, strict=False)]
    assert all(15 <= g <= 25 for g in gaps)


def test_first_travel_brings_the_first_round_forward_then_the_interval_runs():
    def times(**cfg):
        tr = FakeTrainer([[0.9, 0.83], [0.83, 0.9]])       # loss 0.07: hold
        scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(target=0.1), travel_interval=20,
                                                **cfg))
        for it in range(1, 61):
            tr.iteration = it
            scout(tr)
        return [r.iteration for r in scout.travels]

    assert times(jitter=False) == [20, 40, 60]
    assert times(jitter=False, first_travel=5) == [5, 25, 45]
    # the first round's jitter is bounded by its own gap (+-1 at 5), the later ones by 20's
    for seed in range(8):
        first, *rest = times(first_travel=5, seed=seed)
        assert 4 <= first <= 6
        assert all(15 <= b - a <= 25 for a, b in zip([first, *rest], rest, strict=False))
    with pytest.raises(ValueError, match="first_travel"):
        SkewScoutConfig(first_travel=0)


class ViewTrainer(FakeTrainer):
    """A FakeTrainer whose hosts judge a visitor by another model: model i as judged is model
    i + 10, with accuracy ``judged[i][j]`` (Gaia's or DGC's view) on partition j's data."""

    def __init__(self, acc, judged):
        super().__init__(acc)
        self.acc = [*acc, *([None] * (10 - len(acc))), *judged]

    def judged_payload(self, i, payload):
        return payload + 10


def test_travel_scores_the_visitor_as_it_traveled_too_when_asked():
    tr = ViewTrainer([[0.9, 0.0], [0.0, 0.9]], judged=[[0.9, 0.85], [0.85, 0.9]])
    rep = travel(tr, 0, sample_size=4, pairing="round_robin", seed=0, dtype="float32",
                 as_traveled=True)
    assert rep.estimate == pytest.approx(0.05)                 # as judged (the host's view)
    assert rep.as_traveled_estimate == pytest.approx(0.9)      # as it traveled
    plain = travel(tr, 0, sample_size=4, pairing="round_robin", seed=0, dtype="float32")
    assert plain.as_traveled_acc == () and plain.as_traveled_estimate == pytest.approx(0.05)


def probe_run(acc, judged, start="probe", iterations=25, **cfg):
    tr = ViewTrainer(acc, judged)
    scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(target=0.1, patience=2),
                                            travel_interval=10, first_travel=5, jitter=False,
                                            start=start, **cfg))
    for it in range(1, iterations + 1):
        tr.iteration = it
        scout(tr)
    return scout


def test_the_start_probe_moves_to_the_middle_only_when_visitors_know_nothing_of_their_hosts():
    quiet = [[0.9, 0.88], [0.88, 0.9]]                 # as judged: loss 0.02 at every round
    disjoint = probe_run([[0.9, 0.0], [0.0, 0.9]], quiet)      # as traveled: loss 0.9
    assert [d.action for d in disjoint.decisions] == ["jump", "hold", "loosen"]
    # loosest until the probe, the middle from it on; a new start: two quiet rounds to loosen
    assert disjoint.knob_trace == [(0, 1000.0), (5, 50.0), (25, 200.0)]
    overlap = probe_run([[0.9, 0.4], [0.4, 0.9]], quiet)       # as traveled: loss 0.5
    assert [d.action for d in overlap.decisions] == ["hold"] * 3
    assert overlap.knob_trace == [(0, 1000.0)]
    assert probe_run([[0.9, 0.0], [0.0, 0.9]], quiet, start="loosest").knob_trace == [
        (0, 1000.0)]
    with pytest.raises(ValueError, match="probe_visitor_acc"):
        SkewScoutConfig(start="probe", probe_visitor_acc=1.0)


def test_a_ceiling_stops_the_loosen_and_the_undo_at_it():
    free = KnobController(GRID, ControllerConfig(target=0.1, patience=1), index=3)
    assert [free.update(e).knob for e in (0.0, 0.0)] == [1000.0, 1000.0]
    ctl = KnobController(GRID, ControllerConfig(target=0.1, patience=1), index=3, ceiling=3)
    assert [ctl.update(e).knob for e in (0.0, 0.0)] == [200.0, 200.0]
    assert not ctl.loosen_pending
    # a tighten from the ceiling is undone back to it (rule 3), and no further
    assert [ctl.update(e).action for e in (0.15, 0.0, 0.0)] == ["tighten", "loosen", "hold"]
    assert ctl.knob == 200.0


def test_on_disjoint_labels_the_loosest_knob_can_be_put_off_limits():
    quiet = [[0.9, 0.88], [0.88, 0.9]]                 # every round quiet: loosen when allowed
    disjoint = [[0.9, 0.0], [0.0, 0.9]]
    free = probe_run(disjoint, quiet, iterations=65)
    assert free.knob_trace == [(0, 1000.0), (5, 50.0), (25, 200.0), (45, 1000.0)]
    capped = probe_run(disjoint, quiet, iterations=65, disjoint_ceiling=1)
    assert capped.knob_trace == [(0, 1000.0), (5, 50.0), (25, 200.0)]
    assert capped.controller.ceiling == 3 and not capped.controller.loosen_pending
    # overlapping labels put nothing off limits: the loosest start stays
    overlap = probe_run([[0.9, 0.4], [0.4, 0.9]], quiet, iterations=65, disjoint_ceiling=1)
    assert overlap.controller.ceiling is None and overlap.knob_trace == [(0, 1000.0)]
    with pytest.raises(ValueError, match="disjoint_ceiling"):
        SkewScoutConfig(disjoint_ceiling=-1)


def test_the_probe_reads_the_visitors_accuracy_not_the_loss_so_a_slow_host_still_reads_disjoint():
    quiet = [[0.5, 0.48], [0.48, 0.5]]
    # hosts at 0.5 on their own data, visitors at 0: a loss of 0.5 (a seed still learning at the
    # probe, 0.5 at iteration 20 on seed 11), yet the visitors know nothing of their hosts' data
    slow = probe_run([[0.5, 0.0], [0.0, 0.5]], quiet)
    assert slow.travels[0].as_traveled_estimate == pytest.approx(0.5)
    assert slow.travels[0].as_traveled_visitor_acc == 0.0
    assert slow.decisions[0].action == "jump" and slow.knob_trace[1] == (5, 50.0)
    # one sample in a hundred right (the least seen at 80% non-IID: 1 of 200) reads as overlap
    near = probe_run([[0.9, 0.01], [0.01, 0.9]], [[0.9, 0.88], [0.88, 0.9]])
    assert [d.action for d in near.decisions] == ["hold"] * 3
    assert near.knob_trace == [(0, 1000.0)]


def test_median_window_ignores_a_single_spike():
    actions, ctl = run_script([0.07, 0.9, 0.07], window=3)
    assert actions == ["hold", "tighten", "hold"]   # median of 2 = mean 0.485: still over
    assert ctl.history[2].estimate == pytest.approx(0.07)   # then restarted after the move
    actions, ctl = run_script([0.07, 0.07, 0.9, 0.07], window=3)
    assert actions == ["hold", "hold", "hold", "hold"] and ctl.index == 2
    assert ctl.history[2].estimate == pytest.approx(0.07)


def real_trainer(algorithm, callbacks=()):
    import skewtools
    from training.datasets import load_digits_dataset, split_partitions
    from training.engine import TrainConfig, Trainer
    from training.models import create_model

    ds = load_digits_dataset(image_size=8)
    parts = skewtools.partition("label_skew", ds.train.y.numpy(), num_partitions=2,
                                noniid_fraction=1.0, seed=0)
    return Trainer(lambda: create_model("gn-lenet", num_classes=10, in_channels=1, image_size=8),
                   algorithm, split_partitions(ds.train, parts.indices), ds.val,
                   TrainConfig(iterations=10, batch_size=20, eval_every=10, progress=False),
                   callbacks=list(callbacks))


def test_dgc_travels_local_views_and_restores_the_shared_replicas():
    from training.algorithms import create_algorithm

    torch.set_num_threads(1)
    tr = real_trainer(create_algorithm("dgc", sparsity=0.999, warmup_epoch_iterations=0))
    for _ in range(5):
        tr.step()
    before = tr.stack.params.detach().clone()
    sent_before = tr.bytes_sent.clone()
    assert torch.equal(before[0], before[1])          # DGC replicas are identical...
    rep = travel(tr, 0, sample_size=64, pairing="round_robin", seed=0, dtype="float32")
    assert torch.equal(tr.stack.params, before)       # ...and stay exactly as they were
    # ...but each partition's unsent residual makes its local view differ from the other's
    assert rep.local_acc != rep.traveled_acc
    size = model_bytes(TrainerHost(tr).partition_state_dict(0))
    assert size >= 4 * tr.num_parameters
    assert (tr.bytes_sent - sent_before).tolist() == [size, size]
    assert rep.bytes_total == 2 * size


def test_dgc_judges_a_traveled_model_with_the_hosts_unsent_residual_applied():
    from training.algorithms import create_algorithm

    torch.set_num_threads(1)
    tr = real_trainer(create_algorithm("dgc", sparsity=0.99, warmup_epoch_iterations=0))
    for _ in range(5):
        tr.step()
    n, host = tr.num_parameters, TrainerHost(tr)
    with host.local_views():
        arrived = host.model_payload(0)                  # w - v_0 / N
    held = tr.state.accumulated[1] / tr.num_partitions   # the host's unsent residual, v_1 / N
    assert held.abs().sum() > 0
    judged = host.judged_payload(1, arrived)
    own = tr.state.accumulated[0] / tr.num_partitions
    assert torch.allclose(judged[:n], tr.stack.params[0] - own - held)   # w - (v_0 + v_1) / N
    assert torch.equal(judged[n:], arrived[n:])
    tr.algorithm.visitor_view = "as_traveled"
    assert host.judged_payload(1, arrived) is arrived


def test_gaia_judges_a_traveled_model_with_the_hosts_pending_updates_until_the_last_decay():
    from training.algorithms import create_algorithm

    torch.set_num_threads(1)
    tr = real_trainer(create_algorithm("gaia", t0=10.0))   # holds everything: replicas drift
    for _ in range(3):                                     # decays at 5 and 8 of 10 iterations
        tr.step()
    n, host = tr.num_parameters, TrainerHost(tr)
    pending = tr.state.accumulated[1].clone()
    assert pending.abs().sum() > 0
    arrived = host.model_payload(0)
    merged = host.judged_payload(1, arrived)
    assert torch.equal(merged[:n], arrived[:n] + pending) and torch.equal(merged[n:],
                                                                          arrived[n:])
    rep = travel(tr, 0, sample_size=64, pairing="round_robin", seed=0, dtype="float32")
    x, y = host.train_sample(1, 64, seed=1)                  # round 0's sample of partition 1
    assert rep.pairs[0] == (0, 1)
    assert rep.traveled_acc[0] == host.payload_accuracy(merged, x, y)
    while tr.iteration < 8:                                # the last phase: judged as it is
        tr.step()
    assert torch.equal(host.judged_payload(1, host.model_payload(0)), host.model_payload(0))
    rep = travel(tr, 0, sample_size=64, pairing="round_robin", seed=0, dtype="float32")
    assert rep.traveled_acc[0] == host.payload_accuracy(host.model_payload(0), x, y)


def test_a_round_that_lands_right_after_fedavgs_averaging_is_taken_an_iteration_later():
    from dataclasses import replace

    from training.algorithms import create_algorithm

    torch.set_num_threads(1)
    scout = SkewScout((2.0, 4.0), SkewScoutConfig(
        ControllerConfig(target=0.5), travel_interval=4, sample_size=16, jitter=False,
        initial_index=0))
    tr = real_trainer(create_algorithm("fedavg", iter_local=2), [scout])
    tr.config = replace(tr.config, lr_milestones=(1.0,))    # no decay before the end
    tr.run()
    # rounds are due at 4 and 8, where IterLocal 2 has just averaged: each goes one later
    assert [r.iteration for r in scout.travels] == [5, 9]
    assert all(r.estimate > 0 for r in scout.travels)


def test_float16_travel_costs_half_and_evaluates_the_model_as_received(monkeypatch):
    from training.algorithms import create_algorithm

    torch.set_num_threads(1)
    tr = real_trainer(create_algorithm("fedavg", iter_local=1000))
    for _ in range(5):
        tr.step()
    host = TrainerHost(tr)
    floats = sum(t.numel() for t in host.partition_state_dict(0).values() if t.is_floating_point())
    full = travel(tr, 0, sample_size=64, pairing="round_robin", seed=0, dtype="float32")
    half = travel(tr, 0, sample_size=64, pairing="round_robin", seed=0, dtype="float16")
    assert full.bytes_per_model == 4 * floats and half.bytes_per_model == 2 * floats
    assert half.local_acc == full.local_acc            # the destination's own model is not sent
    # the traveled model is evaluated as it arrives: every float rounded through float16
    import training.skewscout.host as engine

    seen = []
    real_accuracy = engine.accuracy
    monkeypatch.setattr(engine, "accuracy", lambda stack, p, b, *a: seen.append((p, b)) or
                        real_accuracy(stack, p, b, *a))
    x, y = host.train_sample(1, 64, seed=3)
    sent = host.model_payload(0, torch.float16)
    assert sent.dtype == torch.float16 and sent.numel() == floats
    assert host.payload_accuracy(host.model_payload(0), x, y) == host.model_accuracy(0, x, y)
    host.payload_accuracy(sent, x, y)
    exact, received = seen[1], seen[2]

    def flat(views):
        return torch.cat([t.reshape(-1) for t in {**views[0], **views[1]}.values()
                          if t.is_floating_point()])

    assert torch.equal(flat(received), flat(exact).half().float())
    assert not torch.equal(flat(received), flat(exact))
    assert torch.equal(tr.stack.params[0], torch.cat([t.reshape(-1) for t in exact[0].values()]))
    with pytest.raises(ValueError, match="a payload of 3 values"):
        host.payload_accuracy(torch.zeros(3), x, y)


def test_a_model_beyond_float16s_range_travels_in_float32():
    small = {"w": torch.ones(3), "n": torch.tensor(10**9)}      # the int counter does not count
    big = {"w": torch.tensor([1.0, 7.0e4]), "n": torch.tensor(1)}
    assert travel_dtype_for([small], torch.float16) == torch.float16
    assert travel_dtype_for([small, big], torch.float16) == torch.float32
    assert travel_dtype_for([big], torch.bfloat16) == torch.bfloat16  # bfloat16 has the range
    with pytest.raises(ValueError, match="travel_dtype='int8': choose one of float32"):
        SkewScoutConfig(travel_dtype="int8")
    with pytest.raises(ValueError, match="unknown travel dtype 'int8'; choose one of float32"):
        travel(None, 0, sample_size=1, pairing="single", seed=0, dtype="int8")


def test_skewscout_on_the_real_trainer_counts_travel_in_the_run_totals():
    from training.algorithms import create_algorithm

    torch.set_num_threads(1)
    scout = SkewScout((2.0, 4.0, 1000.0), SkewScoutConfig(travel_interval=3, sample_size=32,
                                                          jitter=False))
    tr = real_trainer(create_algorithm("fedavg", iter_local=int(scout.initial_knob)), [scout])
    result = tr.run()
    # the first round at 3; after each LR decay (at 5 and 8) no round for a full interval
    times = [r.iteration for r in scout.travels]
    assert times[0] == 3 and all(t < 5 or t >= 8 for t in times)
    fedavg_only = result.bytes_sent[0] - scout.travel_bytes / 2
    assert fedavg_only >= 0 and sum(result.bytes_sent) >= scout.travel_bytes
    assert tr.algorithm.iter_local == scout.controller.knob


def test_travel_and_skewscout_config_share_one_default_dtype():
    import inspect

    from training.skewscout.scout import DEFAULT_TRAVEL_DTYPE, scout_config

    assert inspect.signature(travel).parameters["dtype"].default == DEFAULT_TRAVEL_DTYPE
    assert SkewScoutConfig().travel_dtype == scout_config({}).travel_dtype == DEFAULT_TRAVEL_DTYPE
    acc = [[1.0, 0.2], [0.5, 0.9]]
    default = travel(FakeTrainer(acc), 0, sample_size=4, pairing="round_robin", seed=0)
    told = travel(FakeTrainer(acc), 0, sample_size=4, pairing="round_robin", seed=0,
                  dtype=DEFAULT_TRAVEL_DTYPE)
    assert default.bytes_per_model == told.bytes_per_model


def fedavg_trainer(iter_local, visitor_view="average", callbacks=(), iterations=10):
    import skewtools
    from training.algorithms import create_algorithm
    from training.datasets import load_digits_dataset, split_partitions
    from training.engine import Trainer
    from training.models import create_model

    torch.set_num_threads(1)
    ds = load_digits_dataset(image_size=8)
    parts = skewtools.partition("label_skew", ds.train.y.numpy(), num_partitions=2,
                                noniid_fraction=1.0, seed=0)
    algorithm = create_algorithm("fedavg", iter_local=iter_local, visitor_view=visitor_view)
    return Trainer(lambda: create_model("gn-lenet", num_classes=10, in_channels=1, image_size=8),
                   algorithm, split_partitions(ds.train, parts.indices), ds.val,
                   TrainConfig(iterations=iterations, batch_size=20, eval_every=iterations,
                               lr=0.1, lr_milestones=(), progress=False),
                   callbacks=list(callbacks))


def test_an_averaging_round_scores_each_partitions_model_before_and_after_the_averaging():
    from training.datasets import PartitionData
    from training.evaluation import accuracy
    from training.skewscout.scout import averaging_round

    drifted = fedavg_trainer(iter_local=5, visitor_view="as_traveled")   # no averaging by 3
    averaged = fedavg_trainer(iter_local=3)
    for _ in range(2):
        averaged.step()
        drifted.step()
        assert averaging_round(averaged, 0, sample_size=64, seed=0) is None
    averaged.step()
    drifted.step()
    sent = averaged.bytes_sent.clone()
    rep = averaging_round(averaged, 4, sample_size=64, seed=3)
    # by hand: the local models are the twin's (local steps do not depend on IterLocal), the
    # global model their mean, each scored on its own partition's sample of round 4
    stack, host = drifted.stack, TrainerHost(drifted)
    mean = drifted.stack.params.mean(dim=0)
    assert torch.allclose(averaged.stack.params[0], mean, atol=1e-6)
    before, after = [], []
    for k in range(2):
        x, y = host.train_sample(k, 64, seed=3 + 7919 * 4 + k)
        before.append(host.model_accuracy(k, x, y))
        _, buffers = stack.replica(k)
        after.append(accuracy(stack, stack.layout.views(mean), buffers, PartitionData(x, y),
                              drifted.config.eval_batch_size))
    assert rep.pairs == ((0, 0), (1, 1)) and rep.iteration == 3
    assert rep.local_acc == pytest.approx(tuple(before))
    assert rep.traveled_acc == pytest.approx(tuple(after))
    assert rep.estimate == pytest.approx(sum(before) / 2 - sum(after) / 2)
    assert rep.local_acc != rep.traveled_acc     # the averaging changed what each one gets
    assert rep.bytes_total == 0.0 and torch.equal(averaged.bytes_sent, sent)   # nothing travels


def test_skewscout_scores_averagings_from_the_middle_and_never_the_first_one():
    grid = (2.0, 4.0, 8.0)
    scout = SkewScout(grid, SkewScoutConfig(ControllerConfig(target=0.1, patience=5),
                                            travel_interval=2,
                                            first_travel=1, jitter=False, start="loosest",
                                            averaging_target=0.9))
    tr = fedavg_trainer(iter_local=8, callbacks=[scout], iterations=14)
    sent = []
    while tr.iteration < 14:
        tr.step()
        for callback in tr.callbacks:
            callback(tr)
        sent.append(float(tr.bytes_sent.sum()))
    # the middle (4) from the first call, whatever ``start`` says: the loosest (8) would not
    # average before the end
    assert scout.knob_trace[0] == (0, 4.0)
    # averagings at 4, 8, 12 and the final 14: the first is never scored, every round sits on
    # one, and the estimates go to the controller against averaging_target (0.9: they hold)
    assert [r.iteration for r in scout.travels] == [8, 12, 14]
    assert scout.controller.config.target == 0.9
    assert [d.action for d in scout.decisions] == ["hold"] * 3
    assert scout.travel_bytes == 0.0
    model = 4.0 * tr.num_parameters
    assert sent[-1] == pytest.approx(4 * 2 * model)      # the four averagings alone
    with pytest.raises(ValueError, match="averaging_target"):
        SkewScoutConfig(averaging_target=1.5)
    with pytest.raises(ValueError, match="averaging_low_ratio"):
        SkewScoutConfig(averaging_low_ratio=1.0)


class AveragingHost(FakeTrainer):
    """Partition i's model before the averaging gets acc[i][i], the average avg[i]."""

    def __init__(self, acc, avg):
        super().__init__(acc)
        self.avg = avg
        self.averaged_at = set()

    def scores_averaging(self):
        return True

    def just_averaged(self):
        return self.iteration in self.averaged_at

    def views_just_agreed(self):
        return self.just_averaged()

    def before_average_accuracy(self, i, x, y):
        return self.acc[i][i] if self.just_averaged() else None

    def model_accuracy(self, i, x, y):
        return self.avg[i]


def run_averaging_host(host, start):
    """40 iterations of SkewScout on ``host``, which averages every 10."""
    host.averaged_at = {10, 20, 30, 40}
    scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(target=0.01, low_ratio=0.5),
                                            travel_interval=5, first_travel=5, jitter=False,
                                            start=start))
    for it in range(1, 41):
        host.iteration = it
        scout(host)
    return scout


def test_the_averaging_view_takes_its_own_target_and_low_ratio_and_travels_never():
    host = AveragingHost([[0.9, 0.0], [0.0, 0.8]], avg=[0.85, 0.8])   # loss (0.05 + 0) / 2
    scout = run_averaging_host(host, "loosest")
    # the middle knob from the start; rounds on the averagings after the first only
    assert scout.knob_trace[0] == (0, 50.0) and scout.travel_bytes == 0.0
    assert [r.iteration for r in scout.travels] == [20, 30, 40]
    assert [r.estimate for r in scout.travels] == pytest.approx([0.025] * 3)
    # 0.025 against the view's own 0.15 and 0.3 (0.045 below: two quiet rounds loosen), where
    # the traveled view's target 0.01 would have tightened at once
    assert [d.action for d in scout.decisions] == ["hold", "loosen", "hold"]
    assert scout.controller.config.target == 0.15 and scout.controller.config.low_ratio == 0.3
    assert host.sent == [0.0, 0.0]


class ProbedAveragingHost(AveragingHost):
    """Between averagings partition i's model is its own (acc[i][j] on j's data); right after
    one, the global model (avg[i])."""

    def model_accuracy(self, i, x, y):
        return self.avg[i] if self.just_averaged() else self.acc[i][int(y[0])]


def averaging_probe_run(acc, avg=(0.85, 0.85)):
    host = ProbedAveragingHost(acc, avg=list(avg))
    return run_averaging_host(host, "probe"), host


def test_the_start_probe_moves_the_averaging_view_one_step_tighter_on_disjoint_labels():
    # as traveled at iteration 5: loss 0.9, disjoint labels; each averaging then costs 0.05
    scout, host = averaging_probe_run([[0.9, 0.0], [0.0, 0.9]])
    # halfway from the middle start to the tightest knob: 50 -> 10 (the traveled view's probe
    # goes from the loosest to the middle, the same rule)
    assert scout.knob_trace == [(0, 50.0), (5, 10.0)]
    assert [r.iteration for r in scout.travels] == [5, 20, 30, 40]
    assert [d.action for d in scout.decisions] == ["jump", "hold", "hold", "hold"]
    # the probe is one traveling round (two models in float16: 12 values x 2 B each); the
    # averaging rounds travel nothing
    assert scout.travel_bytes == 48.0 and host.sent == [24.0, 24.0]
    assert [r.estimate for r in scout.travels[1:]] == pytest.approx([0.05] * 3)


def test_on_overlapping_labels_the_averaging_views_probe_holds_and_is_no_evidence():
    scout, _ = averaging_probe_run([[0.9, 0.5], [0.5, 0.9]])      # as traveled: loss 0.4
    assert scout.knob_trace == [(0, 50.0)]
    # the probe's 0.4 is a traveled model's loss, not an averaging's: recorded, not counted (in
    # the median of 3 it would read 0.225 > 0.15 and tighten)
    assert [d.action for d in scout.decisions] == ["hold"] * 4
    assert scout.decisions[0].estimate == pytest.approx(0.4)
    assert [d.estimate for d in scout.decisions[1:]] == pytest.approx([0.05] * 3)
