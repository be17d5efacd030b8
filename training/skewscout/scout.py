"""SkewScout (docs/reference.md §5, finding 4): model traveling + a communication controller.

**Model traveling.** Every ``travel_interval`` iterations each partition's model is sent to another
partition (``round_robin``: partition i to i + r mod N, the offset r cycling through 1..N-1 from
round to round; ``all_pairs``: to every other partition; ``single``: one model per round, the
source and offset cycling so that all ordered pairs take turns, N times cheaper than
``round_robin`` when runs are too short for the traveling cost to vanish). There it is evaluated
on a seeded sample of that partition's *training* data next to the local model; the
``local - traveled`` accuracy is the skew-induced accuracy loss of that pair, and the estimate is
the mean over pairs. The destination judges the model as its algorithm says
(``Algorithm.traveled_view``): as it traveled, except Gaia's while a learning-rate decay is
still ahead (below) and DGC's, which a host judges with its own unsent residual applied too
(:meth:`DGC.traveled_view`: the replicas once both partitions have sent what they hold). A
model travels in ``travel_dtype`` (float16 by default): the destination evaluates it as
received, rounded to that precision, and it costs that dtype's bytes per value of its floating
parameters and buffers (2 B in float16, 4 B in float32), counted with
``ScoutHost.add_bytes`` (sent by the source, received by the destination), so traveling is part of
SkewScout's communication totals. A traveled model is only evaluated, never trained on: in the
default study's runs, float16 changed a traveled model's accuracy on a 100-sample check by one
sample in 29 of 3,000 checks and never by more, at half the traveling bytes. Under
torch.distributed (one partition per process) a model travels point to point from its source's
process to its destination's (``DistributedComm.exchange``), the destination scores it, and a sum
over the processes gives every one of them the whole round, so they all take the same decision.

**When models travel.** With ``max_travel_interval`` set, the interval doubles after the second
"hold" in a row that leaves no loosen pending (up to that bound): a settled knob is checked less
often, which keeps traveling cheap next to the algorithm's traffic, and a costly tighten that
needs several rounds of evidence (rule 2 of the controller) needs it over a longer time. After a
tighten the next round comes after half a ``travel_interval``, so that a tighten whose loss
vanishes at once is undone quickly (rule 3). When the learning rate decays the controller starts
a new phase (rule 5) and the next round comes no sooner than a full interval later: right after
a decay the models stop drifting apart for a while and every knob looks free of skew.
Between rounds SkewScout measures the bytes per partition per iteration the current knob sent
(traveling excluded) and hands them to the controller (``record_cost``; rule 2 weighs by them).
Each travel time is offset by a seeded jitter of up to a quarter interval (``jitter=True``) so
that traveling does not lock onto FedAvg's averaging period, right after which all models agree;
a round that lands there all the same is taken an iteration later
(``Algorithm.views_just_agreed``): it could only measure 0, and on one seed of the default
setting such a 0 undid a needed tighten and the run missed its accuracy target.
A partition's model includes the updates it has computed but not sent (``ScoutHost.local_views``;
this matters for DGC, whose replicas are otherwise identical).

**How Gaia's visitors are judged.** Before the default study's first decay, Gaia's replicas at
T0 0.1-0.3 each know only their own two digits: a visitor as it traveled scores ~0 on its host's
data, an estimate of ~1, as for FedAvg at IterLocal 50, whose loss is real (it ends 29 points
below BSP). Gaia's is not: it drops no update and its threshold ``T0 x lr_factor`` falls tenfold
at each decay, delivering what the partitions held, and at T0 0.3 it ends within 2.2 points of
BSP. So while a decay is ahead a host judges a Gaia visitor with its own unsent updates added:
the model the two partitions share once both deliver (:meth:`Gaia.traveled_view`). At T0 0.3
that estimate reads 0.09-0.26 before the first decay (mean over all 20 pairs, seed 0) instead
of 1.0, and it tells the controller what it can act on: how the partitions' pending updates
combine. After the last decay no smaller threshold is coming, and a visitor is judged as it is.

**What an averaging costs** (FedAvg's ``visitor_view="average"``, :func:`averaging_round`).
Nothing travels: a round waits for the next averaging, and there each partition scores its own
model just before it and the new global model on the same ``sample_size`` samples of its
training data; the estimate is the mean over partitions of before minus after. The run's first
averaging is never scored (it reads how far models drift from their shared initialisation, high
at every skew), the knob starts at the grid's middle (a loosest knob that does not average
within the run could give no estimate), and the controller takes ``averaging_target`` and
``averaging_low_ratio`` in place of ``target`` and ``low_ratio`` (the two views' scales differ;
docs/skewscout.md measures both). With ``start="probe"`` the first round still travels one model
per pair (below): on disjoint labels the knob moves halfway from the middle to the tightest knob
(IterLocal 50 -> 10 on the studies' grid), what the first scored averaging would do some 75
iterations later; otherwise the probe's read is recorded and not counted (a traveled model's loss
is not an averaging's).

**The controller** (:mod:`training.skewscout.controller`; the rule is documented there) starts
at the grid's middle (``start="middle"``), its least communicative knob (``"loosest"``) or the
latter with a probe (``"probe"``, the SkewScout studies'): the first round, at ``first_travel``,
also scores its visitor as it traveled, and when the visitor gets at most ``probe_visitor_acc``
(0: none) of its host's sample right it knows nothing of its host's data (disjoint labels) and the
knob jumps halfway from where it started to the tightest knob (from the loosest, the middle). The
visitor's own accuracy is read, not the loss (host minus visitor): a host still learning its own
classes at the probe (0.5 on one seed at iteration 20) would make disjoint labels read as overlap.
With ``disjoint_ceiling = k`` a disjoint read also puts the grid's ``k`` loosest knobs off limits
for the rest of the run (``KnobController.ceiling``): at 100% non-IID Gaia's estimates read
0.00-0.09 at every knob after the jump and cannot see what its loosest knob costs.
Under partial label skew the host's view of Gaia's visitors reads like that of disjoint labels,
so only the as-traveled view can tell where starting loose is safe (docs/skewscout.md). It
turns each round's estimate into a grid index, and SkewScout sets the knob to that grid value with
``algorithm.set_knob``: the same interface for Gaia, FedAvg and DGC.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch

from training.algorithms.base import BYTES_PER_VALUE
from training.comm import gather_partitions
from training.engine import Trainer
from training.skewscout.controller import (  # noqa: F401  (re-exported)
    DEFAULT_GRIDS,
    KNOBS,
    LARGER_IS_LESS_COMMUNICATION,
    ControllerConfig,
    Decision,
    Knob,
    KnobController,
    ordered_grid,
)
from training.skewscout.host import ScoutHost, as_host

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------- model traveling

PAIRINGS = ("round_robin", "all_pairs", "single")


def travel_pairs(num_partitions: int, round_index: int, pairing: str) -> list[tuple[int, int]]:
    """(source, destination) partition pairs of one traveling round."""
    if pairing not in PAIRINGS:
        raise KeyError(f"unknown pairing {pairing!r}; known: {', '.join(PAIRINGS)}")
    n = num_partitions
    if n < 2:
        return []
    if pairing == "all_pairs":
        return [(i, j) for i in range(n) for j in range(n) if i != j]
    if pairing == "single":   # one model per round, walking through all N(N-1) ordered pairs
        src, off = round_index % n, 1 + (round_index // n) % (n - 1)
        return [(src, (src + off) % n)]
    offset = 1 + round_index % (n - 1)
    return [(i, (i + offset) % n) for i in range(n)]


TRAVEL_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16,
                                         "bfloat16": torch.bfloat16}
DEFAULT_TRAVEL_DTYPE = "float16"     # SkewScoutConfig's and travel()'s


def model_bytes(state: dict[str, torch.Tensor], bytes_per_value: int = BYTES_PER_VALUE) -> float:
    """Bytes of one traveling model: ``bytes_per_value`` per value of every floating parameter
    and buffer (integer counters stay home)."""
    return float(sum(t.numel() for t in state.values() if t.is_floating_point()) * bytes_per_value)


def travel_dtype_for(states: Sequence[dict[str, torch.Tensor]], dtype: torch.dtype) -> torch.dtype:
    """``dtype``, or float32 when a value of the traveling models would overflow it (a large BN
    running variance in float16): the round then travels at full precision and costs that."""
    if dtype == torch.float32:
        return dtype
    limit = torch.finfo(dtype).max
    for state in states:
        for t in state.values():
            if t.is_floating_point() and t.numel() and float(t.abs().max()) > limit:
                logger.warning("a traveling model has values beyond %s's range; this round "
                               "travels in float32", dtype)
                return torch.float32
    return dtype


@dataclass(frozen=True)
class TravelReport:
    """One traveling round: each pair's accuracies on the destination's training sample. A
    round that scored an averaging (:func:`averaging_round`) has the pair ``(k, k)`` per
    partition: its model before the averaging (``local_acc``) and the global model after
    (``traveled_acc``), and no bytes."""

    iteration: int
    pairs: tuple[tuple[int, int], ...]
    local_acc: tuple[float, ...]      # the destination's own model
    traveled_acc: tuple[float, ...]   # the source's model, traveled to the destination
    bytes_per_model: float
    as_traveled_acc: tuple[float, ...] = ()   # the same, as it traveled (``as_traveled=True``)

    @property
    def losses(self) -> tuple[float, ...]:
        return tuple(a - b for a, b in zip(self.local_acc, self.traveled_acc, strict=True))

    @property
    def estimate(self) -> float:
        """Mean skew-induced accuracy loss over the pairs (0 when nothing traveled)."""
        return float(sum(self.losses) / len(self.losses)) if self.pairs else 0.0

    @property
    def as_traveled_estimate(self) -> float:
        """Mean of local minus as-traveled accuracy (the visitor without
        ``Algorithm.traveled_view``), when the round measured it; else :attr:`estimate`."""
        if not self.as_traveled_acc:
            return self.estimate
        losses = [a - b for a, b in zip(self.local_acc, self.as_traveled_acc, strict=True)]
        return float(sum(losses) / len(losses))

    @property
    def as_traveled_visitor_acc(self) -> float:
        """Mean accuracy of the visitors as they traveled on their hosts' samples, when the
        round measured it; else that of the visitors as judged."""
        acc = self.as_traveled_acc or self.traveled_acc
        return float(sum(acc) / len(acc)) if acc else 0.0

    @property
    def bytes_total(self) -> float:
        return self.bytes_per_model * len(self.pairs)


def travel(engine: Trainer | ScoutHost, round_index: int, *, sample_size: int, pairing: str,
           seed: int, dtype: str = DEFAULT_TRAVEL_DTYPE, as_traveled: bool = False
           ) -> TravelReport:
    """Run one traveling round and count its bytes on the engine (a Trainer or a
    :class:`~training.skewscout.host.ScoutHost`).

    Either engine: in the simulation every model is at hand; under torch.distributed each
    traveling model goes point to point to its destination's process, which scores it, and every
    process gets the whole report. ``dtype`` (a key of :data:`TRAVEL_DTYPES`, by default
    :data:`DEFAULT_TRAVEL_DTYPE`) is the precision models travel in; a round that would overflow
    it goes in float32. ``as_traveled``: also score each visitor as it traveled (without its
    host's view; :attr:`TravelReport.as_traveled_acc`), at no extra bytes.
    """
    if dtype not in TRAVEL_DTYPES:
        raise ValueError(f"unknown travel dtype {dtype!r}; choose one of "
                         f"{', '.join(TRAVEL_DTYPES)}")
    host = as_host(engine)
    with host.local_views():
        return _travel(host, round_index, sample_size, pairing, seed, TRAVEL_DTYPES[dtype],
                       as_traveled)


def _travel(trainer: ScoutHost, round_index: int, sample_size: int, pairing: str,
            seed: int, dtype: torch.dtype, as_traveled: bool = False) -> TravelReport:
    pairs = travel_pairs(trainer.num_partitions, round_index, pairing)
    here = {pid: i for i, pid in enumerate(_partition_ids(trainer))}   # id -> local index
    dtype = _agreed_dtype(trainer, {here[s] for s, _ in pairs if s in here}, dtype)
    size = model_bytes(trainer.partition_state_dict(0), dtype.itemsize)
    arrived = _deliver(trainer, pairs, here, dtype)
    # Each pair is scored where its destination lives; the sum over partitions of this table
    # (one nonzero entry per pair) gives every process the whole round.
    table = torch.zeros(len(here), len(pairs), 3, dtype=torch.float64)
    samples: dict[int, tuple[Any, Any, float]] = {}   # one sample per destination
    for k, (src, dst) in enumerate(pairs):
        if src in here:
            trainer.add_bytes(here[src], sent=size, received=0.0)
        if dst not in here:
            continue
        d = here[dst]
        if dst not in samples:
            x, y = trainer.train_sample(d, sample_size, seed=seed + 7919 * round_index + dst)
            samples[dst] = (x, y, float(trainer.model_accuracy(d, x, y)))
        x, y, local_acc = samples[dst]
        table[d, k, 0] = local_acc
        visitor = trainer.judged_payload(d, arrived[src, dst])
        table[d, k, 1] = float(trainer.payload_accuracy(visitor, x, y))
        if as_traveled:
            table[d, k, 2] = (table[d, k, 1] if visitor is arrived[src, dst] else
                              float(trainer.payload_accuracy(arrived[src, dst], x, y)))
        trainer.add_bytes(d, sent=0.0, received=size)
    table = _sum_over_partitions(trainer, table)
    return TravelReport(int(trainer.iteration), tuple(pairs), tuple(table[:, 0].tolist()),
                        tuple(table[:, 1].tolist()), size,
                        tuple(table[:, 2].tolist()) if as_traveled else ())


def averaging_round(engine: Trainer | ScoutHost, round_index: int, *, sample_size: int,
                    seed: int) -> TravelReport | None:
    """What the averaging that ended this iteration cost each partition, or None when none
    did (an algorithm that scores its averagings: FedAvg's ``visitor_view="average"``).

    Each partition scores its own model just before the averaging and the new global model on
    the same ``sample_size`` samples of its training data (the sample a traveling round would
    draw there); the report's pair ``(k, k)`` holds partition k's two accuracies, so its
    ``estimate`` is the mean over partitions of before minus after. Nothing travels: the
    average was computed anyway, and the report costs no bytes.
    """
    host = as_host(engine)
    if not host.just_averaged():
        return None
    here = _partition_ids(host)
    # one row per local partition, one column per partition; the sum over every process's rows
    # gives each process the whole round (as a traveling round's table does)
    table = torch.zeros(len(here), host.num_partitions, 2, dtype=torch.float64)
    for d, pid in enumerate(here):
        x, y = host.train_sample(d, sample_size, seed=seed + 7919 * round_index + pid)
        before = host.before_average_accuracy(d, x, y)
        if before is None:
            return None
        table[d, pid, 0] = before
        table[d, pid, 1] = float(host.model_accuracy(d, x, y))
    table = _sum_over_partitions(host, table)
    pairs = tuple((k, k) for k in range(host.num_partitions))
    return TravelReport(int(host.iteration), pairs, tuple(table[:, 0].tolist()),
                        tuple(table[:, 1].tolist()), 0.0)


def _partition_ids(trainer: ScoutHost) -> list[int]:
    return list(trainer.partition_ids)


def _sum_over_partitions(trainer: ScoutHost, table: torch.Tensor) -> torch.Tensor:
    """The sum over all partitions (every process's rows) of a per-local-partition table."""
    comm = trainer.comm
    return table.sum(dim=0) if comm is None else comm.all_sum(table)[0]


def _agreed_dtype(trainer: ScoutHost, sources: set[int], dtype: torch.dtype) -> torch.dtype:
    """``dtype`` unless a traveling model anywhere would overflow it; every process agrees."""
    states = [trainer.partition_state_dict(i) for i in sorted(sources)]
    flags = torch.zeros(len(_partition_ids(trainer)), 1, dtype=torch.float64)
    flags[0, 0] = float(travel_dtype_for(states, dtype) != dtype)
    return dtype if float(_sum_over_partitions(trainer, flags)[0]) == 0 else torch.float32


def _deliver(trainer: ScoutHost, pairs: Sequence[tuple[int, int]], here: dict[int, int],
             dtype: torch.dtype) -> dict[tuple[int, int], torch.Tensor]:
    """The traveling models this process's destinations receive, by pair: read in place when the
    source lives here too (the simulation), else sent point to point (``comm.exchange``)."""
    payloads: dict[int, torch.Tensor] = {}

    def payload(pid: int) -> torch.Tensor:
        if pid not in payloads:
            payloads[pid] = trainer.model_payload(here[pid], dtype)
        return payloads[pid]

    arrived: dict[tuple[int, int], torch.Tensor] = {}
    outgoing: list[tuple[int, torch.Tensor]] = []
    incoming: list[tuple[int, torch.Tensor]] = []
    for src, dst in pairs:
        if src in here and dst in here:
            arrived[src, dst] = payload(src)
        elif src in here:
            outgoing.append((dst, payload(src)))
        elif dst in here:    # every replica has the same layout: size the buffer on our own
            arrived[src, dst] = torch.empty_like(payload(dst))
            incoming.append((src, arrived[src, dst]))
    if outgoing or incoming:
        trainer.comm.exchange(outgoing, incoming)
    return arrived


STARTS = ("middle", "loosest", "probe")


@dataclass(frozen=True)
class SkewScoutConfig:
    """How often models travel, on how much data, and the controller's parameters."""

    controller: ControllerConfig = field(default_factory=ControllerConfig)
    travel_interval: int = 100
    first_travel: int | None = None          # iteration of the first round (None: travel_interval)
    max_travel_interval: int | None = None   # None: fixed interval; else back off up to it
    sample_size: int = 200
    pairing: str = "round_robin"
    travel_dtype: str = DEFAULT_TRAVEL_DTYPE  # precision a model travels in (TRAVEL_DTYPES)
    initial_index: int = -1                  # -1: where ``start`` says
    start: str = "middle"                    # first knob: "middle", "loosest" or "probe"
    probe_visitor_acc: float = 0.0           # "probe": a visitor scoring <= this reads disjoint
    disjoint_ceiling: int = 0                # "probe": the loosest knobs off limits on disjoint
    # the controller's target and low_ratio when averagings are scored (None: target, low_ratio);
    # the values chosen on seeds 0-3 (docs/skewscout.md)
    averaging_target: float | None = 0.15
    averaging_low_ratio: float | None = 0.3
    jitter: bool = True                      # seeded +-interval/4 offset on each travel time
    seed: int = 0

    def __post_init__(self) -> None:
        if self.travel_interval < 1:
            raise ValueError(f"travel_interval={self.travel_interval}: must be >= 1 iteration")
        if self.first_travel is not None and self.first_travel < 1:
            raise ValueError(f"first_travel={self.first_travel}: give the first round's iteration "
                             "(>= 1) or None (after one travel_interval)")
        if self.max_travel_interval is not None and self.max_travel_interval < self.travel_interval:
            raise ValueError(
                f"max_travel_interval={self.max_travel_interval} is below travel_interval="
                f"{self.travel_interval}; raise it or set None for a fixed interval"
            )
        if self.sample_size < 1:
            raise ValueError(f"sample_size={self.sample_size}: must be >= 1 sample")
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing={self.pairing!r}: choose one of {', '.join(PAIRINGS)}")
        if self.start not in STARTS:
            raise ValueError(f"start={self.start!r}: choose one of {', '.join(STARTS)}")
        if not 0 <= self.probe_visitor_acc < 1:
            raise ValueError(f"probe_visitor_acc={self.probe_visitor_acc}: give the visitor's "
                             "accuracy on its host's sample in [0, 1) at or under which labels "
                             "read as disjoint (0: it gets none right)")
        if self.disjoint_ceiling < 0:
            raise ValueError(f"disjoint_ceiling={self.disjoint_ceiling}: give how many of the "
                             "loosest knobs a disjoint probe puts off limits (>= 0; 0: none)")
        if self.averaging_target is not None and not 0 < self.averaging_target < 1:
            raise ValueError(f"averaging_target={self.averaging_target}: give the loss an "
                             "averaging may cost as a fraction in (0, 1), or None (target)")
        if self.averaging_low_ratio is not None and not 0 <= self.averaging_low_ratio < 1:
            raise ValueError(f"averaging_low_ratio={self.averaging_low_ratio}: must be in [0, 1) "
                             "to leave a band, or None (low_ratio)")
        if self.travel_dtype not in TRAVEL_DTYPES:
            raise ValueError(f"travel_dtype={self.travel_dtype!r}: choose one of "
                             f"{', '.join(TRAVEL_DTYPES)}")


def scout_config(options: Mapping[str, Any], seed: int = 0) -> SkewScoutConfig:
    """A study's ``[skewscout]`` table (SkewScoutConfig and ControllerConfig fields, flat) as a
    validated config; unknown keys raise, listing the known ones."""
    opts = dict(options)
    ctl_keys = {f.name for f in fields(ControllerConfig)}
    scout_keys = {f.name for f in fields(SkewScoutConfig)} - {"controller", "seed"}
    unknown = set(opts) - ctl_keys - scout_keys
    if unknown:
        raise ValueError(f"unknown [skewscout] keys {sorted(unknown)}; known: "
                         f"{sorted(ctl_keys | scout_keys)}")
    ctl = ControllerConfig(**{k: opts.pop(k) for k in list(opts) if k in ctl_keys})
    return SkewScoutConfig(controller=ctl, seed=seed, **opts)


class SkewScout:
    """A Trainer callback: travels models, asks the controller, sets the algorithm's knob. It
    works through a :class:`~training.skewscout.host.ScoutHost` (a Trainer is wrapped in a
    ``TrainerHost``).

    ``grid`` must already be ordered from most to least communication (:func:`ordered_grid`).
    Build the algorithm with :attr:`initial_knob`; the first call sets it anyway.
    """

    def __init__(self, grid: Sequence[float], config: SkewScoutConfig | None = None) -> None:
        self.config = config or SkewScoutConfig()
        index = self.config.initial_index
        if index == -1 and self.config.start in ("loosest", "probe"):
            index = len(grid) - 1
        self.controller = KnobController(tuple(grid), self.config.controller, index=index)
        self.travels: list[TravelReport] = []
        self.knob_trace: list[tuple[int, float]] = []
        self._rng = np.random.default_rng(self.config.seed)
        first = self.config.first_travel or self.config.travel_interval
        self._interval = first          # the first round's jitter scales with its own gap
        self._next = first + self._jitter()
        self._interval = self.config.travel_interval
        self._lr_factor: float | None = None
        self._holds_since_move = 0
        self._mark: tuple[int, float] | None = None     # (iteration, bytes sent) at the last round
        self._averaging = False     # the host scores averagings instead of traveling models
        self._averagings = 0        # averagings seen so far

    @property
    def initial_knob(self) -> float:
        return self.controller.knob

    @property
    def decisions(self) -> list[Decision]:
        return self.controller.history

    @property
    def travel_bytes(self) -> float:
        return float(sum(r.bytes_total for r in self.travels))

    def __call__(self, engine: Trainer | ScoutHost) -> None:
        trainer = as_host(engine)
        if not self.knob_trace:
            self._start(trainer)
        self._watch_learning_rate(trainer)
        averaged = self._averaging and trainer.just_averaged()
        self._averagings += int(averaged)
        if trainer.iteration < self._next:
            return
        # The start probe travels a model in either view. A traveling round right after an
        # averaging could only measure 0: it waits a step; a round that scores the averaging
        # waits for one, and never scores the run's first (it reads how far models drift from
        # their shared initialisation, high at every skew).
        probe = self.config.start == "probe" and not self.travels
        scores_averaging = self._averaging and not probe
        if scores_averaging:
            if not averaged or self._averagings < 2:
                return
        elif trainer.views_just_agreed():
            return
        self._measure_cost(trainer)
        if scores_averaging:
            report = averaging_round(trainer, len(self.travels),
                                     sample_size=self.config.sample_size, seed=self.config.seed)
            if report is None:
                return
        else:
            report = travel(trainer, len(self.travels), sample_size=self.config.sample_size,
                            pairing=self.config.pairing, seed=self.config.seed,
                            dtype=self.config.travel_dtype, as_traveled=probe)
        self.travels.append(report)
        it = int(trainer.iteration)
        if probe and report.as_traveled_visitor_acc <= self.config.probe_visitor_acc:
            # disjoint labels: halfway from the start to the tightest knob (the loosest start
            # -> the middle; the averaging view's middle start -> halfway down from there)
            decision = self.controller.jump(self.controller.index // 2,
                                            report.as_traveled_estimate, it)
            if self.config.disjoint_ceiling:
                last = len(self.controller.grid) - 1
                self.controller.ceiling = max(self.controller.index,
                                              last - self.config.disjoint_ceiling)
        elif probe and self._averaging:    # a traveled model's loss is not an averaging's
            decision = self.controller.note(report.as_traveled_estimate, it)
        else:
            decision = self.controller.update(report.estimate, it)
        logger.debug("skewscout it=%d estimate=%.4f %s -> knob %s", decision.iteration,
                     decision.estimate, decision.action, decision.knob)
        if decision.action != "hold":
            self._set_knob(trainer, it)
        self._interval = self._next_interval(decision.action)
        gap = self._soon() if decision.action == "tighten" else self._interval
        self._next = it + gap + self._jitter()
        self._mark = (it, self._bytes_sent(trainer))

    @staticmethod
    def _bytes_sent(trainer: ScoutHost) -> float:
        """Bytes sent so far by all partitions (gathered from every process)."""
        sent = trainer.bytes_sent
        if trainer.comm is None:
            return float(sum(sent))
        return float(sum(gather_partitions(sent, _partition_ids(trainer), trainer.comm)))

    def _measure_cost(self, trainer: ScoutHost) -> None:
        """The current knob's bytes per partition per iteration since the last round (not before
        the first: DGC's sparsity warm-up would make the starting knob look expensive)."""
        if self._mark is None or trainer.iteration <= self._mark[0]:
            return
        its = int(trainer.iteration) - self._mark[0]
        nbytes = (self._bytes_sent(trainer) - self._mark[1]) / trainer.num_partitions
        self.controller.record_cost(self.controller.index, nbytes / its)

    def _start(self, trainer: ScoutHost) -> None:
        """The first call: which estimate the run takes, and the first knob. An algorithm that
        scores its averagings starts at the grid's middle whatever ``start`` says: the loosest
        knob may not average before the run ends (FedAvg's 600 of 600 iterations), and a knob
        that does not average can give no estimate (``"probe"`` still probes, from there)."""
        self._averaging = bool(trainer.scores_averaging())
        if self._averaging and self.config.initial_index == -1:
            self.controller.index = (len(self.controller.grid) - 1) // 2
        if self._averaging:
            cfg = self.controller.config
            self.controller.config = replace(
                cfg, target=self.config.averaging_target or cfg.target,
                low_ratio=(cfg.low_ratio if self.config.averaging_low_ratio is None
                           else self.config.averaging_low_ratio))
        self._set_knob(trainer, 0)

    def _soon(self) -> int:
        return max(1, self.config.travel_interval // 2)

    def _watch_learning_rate(self, trainer: ScoutHost) -> None:
        """At a learning-rate decay: a new controller phase, no round for a full interval."""
        factor = float(trainer.config.lr_factor(int(trainer.iteration)))
        if self._lr_factor is not None and factor != self._lr_factor:
            self.controller.new_phase()
            self._interval = self.config.travel_interval
            self._next = max(self._next, int(trainer.iteration) + self.config.travel_interval)
        self._lr_factor = factor

    def _jitter(self) -> int:
        """A seeded offset of up to +-interval/4, so travels don't lock onto a sync period
        (FedAvg's models are identical right after averaging; traveling then sees no skew)."""
        span = self._interval // 4
        return int(self._rng.integers(-span, span + 1)) if self.config.jitter and span else 0

    def _next_interval(self, action: str) -> int:
        cap = self.config.max_travel_interval
        self._holds_since_move = self._holds_since_move + 1 if action == "hold" else 0
        if cap is None or self._holds_since_move < 2 or self.controller.loosen_pending:
            return self.config.travel_interval
        return min(cap, 2 * self._interval)

    def _set_knob(self, trainer: ScoutHost, iteration: int) -> None:
        trainer.algorithm.set_knob(self.controller.knob)
        self.knob_trace.append((iteration, float(self.controller.knob)))

    def summary(self) -> dict[str, Any]:
        """Plain data for the results store."""
        return {
            "travel_rounds": len(self.travels),
            "travel_bytes": self.travel_bytes,
            "knob_trace": [list(t) for t in self.knob_trace],
            "estimates": [[r.iteration, round(r.estimate, 5)] for r in self.travels],
            "final_knob": float(self.controller.knob),
        }
