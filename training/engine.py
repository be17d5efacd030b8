"""The training engine: one algorithm over ``k`` local partitions (docs/reference.md §3-4).

In the one-device simulation ``k = N`` and ``comm`` is :class:`training.comm.LocalComm`; under
torch.distributed each process holds ``k = 1`` partition and a ``DistributedComm``: the same code.
Per iteration every local partition draws ``batch_size // N`` samples of its own data (in-memory
partitions are resident on the device and gathered there: :mod:`training.sampling`), the
gradients of all ``k`` replicas come from one ``vmap`` pass (``vectorize=True``) or a loop over
partitions, and the algorithm turns them into updates and traffic. The algorithm also decides
what becomes of the BatchNorm running statistics (``Algorithm.share_buffers``: averaged at each
sync by default, docs/reference.md §3; filtered by Gaia), and counts their bytes. With
``TrainConfig(norm_stats="fixbn")`` (FixBN, Zhong et al. 2023) the statistics are averaged over
partitions once at the switch iteration and frozen: from then on BatchNorm normalises with them
and no longer updates or sends them (:meth:`Trainer._freeze_batch_norm`).

Traffic counters are tensors on the parameters' device, read once per evaluation. A non-finite
gradient (so a non-finite loss) or parameter ends the run with :class:`DivergedError`: each step
records on the device the first iteration a partition's gradient was non-finite, and every
evaluation (the final one included) reads it, without a host sync per step.

A *seed group* (``seeds=[s0, s1, ...]``, docs/engine.md) trains ``S`` runs that differ only by
seed as one ``[S*N, P]`` stack: each run has its own initial model, partitions, sampling,
evaluation, byte counters and divergence check, and a :class:`training.comm.GroupedComm` keeps
the algorithms' collectives within each run. :meth:`Trainer.run_group` returns one result per
seed.

Under partial participation (``TrainConfig.participation``, :mod:`training.participation`) each
round a seeded sample of the partitions trains: the simulation's stack holds one row per
participant, and a sampled-out process under torch.distributed only joins the round's averaging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from training.algorithms.base import (
    MOMENTUM,
    WEIGHT_DECAY,
    Algorithm,
    Comm,
    StepContext,
    StepStats,
)
from training.algorithms.traffic import dense_bytes, dense_stats
from training.allocator import keep_freed_memory
from training.comm import GroupedComm, LocalComm, gather_partitions
from training.datasets import BatchSource, PartitionData
from training.evaluation import EvalResult, evaluate
from training.functional import StackedModel
from training.norm import NORM_STATS
from training.participation import (
    Rounds,
    check_participation,
    check_supported,
    participants_per_round,
    partition_size,
)
from training.protocol import Protocol
from training.sampling import stacked_batches

__all__ = ["BatchSource", "DivergedError", "EvalResult", "PartitionData", "RunResult",
           "TrainConfig", "Trainer"]

log = logging.getLogger(__name__)


def _nonfinite_rows(grads: torch.Tensor) -> torch.Tensor:
    """``[k]`` True where a row of ``grads`` holds a non-finite value.

    A row's minimum and maximum are finite iff every value in it is (NaN propagates through
    both, +-inf lands in one): one float32 pass with no copy of the stack and no overflow, and no
    branch on the result, so the step stays free of a host sync on every device.
    """
    low, high = torch.aminmax(grads, dim=1)
    return ~(torch.isfinite(low) & torch.isfinite(high))


class DivergedError(RuntimeError):
    """Training produced a non-finite loss or parameter: the run failed (its accuracy would
    mean nothing). The message names the iteration and the partitions."""


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 64_000
    batch_size: int = 100            # GLOBAL batch; each partition takes batch_size // N
    lr: float = 0.01
    momentum: float = MOMENTUM
    weight_decay: float = WEIGHT_DECAY
    lr_milestones: tuple[float, ...] = (0.5, 0.75)   # fractions of iterations (32K, 48K of 64K)
    lr_gamma: float = 0.1
    eval_every: int = 1000
    eval_batch_size: int = 500
    seed: int = 0
    device: str = "cpu"
    # True: all partitions' gradients in one vmap pass; False: a loop over partitions; None: vmap
    # on accelerators, the loop on CPU (where vmap's grouped convolutions measured slower for
    # 32x32 LeNet/ResNet-20; it pays for tiny models, e.g. digits: benchmarks/bench_simulation.py)
    vectorize: bool | None = None
    progress: bool = True            # tqdm bar in run()
    # CUDA speed options (benchmarks/bench_simulation.py): inputs in channels-last layout, and
    # forward/backward under bfloat16 autocast (parameters and updates stay float32)
    channels_last: bool = False
    bf16: bool = False
    # The authors' protocol (training.protocol; docs/training.md "Deviations from the authors"):
    # "caffe" per-layer lr/decay multipliers of their prototxts, and Caffe's BatchNorm moving
    # average (fraction bn_fraction) instead of PyTorch's momentum 0.1
    layer_multipliers: str = "none"
    bn_average: str = "pytorch"
    bn_fraction: float = 0.999
    # BatchNorm statistics in training (docs/training.md "BatchNorm under skew"): "batch" (each
    # minibatch's, throughout) or "fixbn" (FixBN: the global running statistics are frozen at
    # iteration round(fixbn_switch x iterations) and normalise from then on)
    norm_stats: str = "batch"
    fixbn_switch: float = 0.5
    # Partial participation (training.participation, docs/engine.md): each round a seeded
    # sample of the partitions trains; a float is a fraction in (0, 1], an int a count (1 is
    # one partition, 1.0 all of them); None: every partition, every iteration
    participation: float | int | None = None

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.bf16 and not self.device.startswith("cuda"):
            raise ValueError(f"bf16 autocast is a CUDA option; device is {self.device!r}: set "
                             "device='cuda' or bf16=False")
        Protocol(self.layer_multipliers, self.bn_average, self.bn_fraction)   # validates
        if self.norm_stats not in NORM_STATS:
            raise ValueError(f"norm_stats={self.norm_stats!r}; choose one of "
                             f"{', '.join(NORM_STATS)}")
        if not 0 < self.fixbn_switch < 1:
            raise ValueError(f"fixbn_switch={self.fixbn_switch} must be a fraction of the "
                             "iterations in (0, 1), e.g. 0.5 (FixBN's switch at half of training)")
        if self.participation is not None:
            check_participation(self.participation)
        if any(not 0 < m <= 1 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones are fractions of iterations in (0, 1], "
                             f"got {self.lr_milestones}")

    @property
    def protocol(self) -> Protocol:
        return Protocol(self.layer_multipliers, self.bn_average, self.bn_fraction)

    @property
    def fixbn_iteration(self) -> int | None:
        """The 0-based iteration from which FixBN's statistics are frozen (None: never)."""
        if self.norm_stats != "fixbn":
            return None
        return max(1, round(self.fixbn_switch * self.iterations))

    def lr_factor(self, iteration: int) -> float:
        """The step-decay factor at ``iteration`` (x ``lr_gamma`` at each milestone passed)."""
        passed = sum(iteration >= round(m * self.iterations) for m in self.lr_milestones)
        return self.lr_gamma ** passed

    def lr_phases(self) -> list[range]:
        """The stretches of iterations run at one learning rate, in order (what a schedule
        check measures an algorithm against: ``Algorithm.schedule_problems``)."""
        if self.lr_gamma == 1:
            return [range(self.iterations)]
        cuts = sorted({round(m * self.iterations) for m in self.lr_milestones}
                      & set(range(1, self.iterations)))
        edges = [0, *cuts, self.iterations]
        return [range(a, b) for a, b in zip(edges, edges[1:], strict=False)]


@dataclass
class RunResult:
    curve: list[tuple[int, float]]       # (iteration, mean accuracy over partitions)
    final: EvalResult
    bytes_sent: list[float]              # total per partition (all N)
    bytes_received: list[float]
    bytes_per_iteration: float           # mean over partitions of bytes sent per iteration
    bsp_bytes_per_iteration: float       # what BSP sends: 4 * (P + B) per partition per iteration
                                         # (B: BN running-statistic values)
    wall_time_s: float
    iterations: int
    global_curve: list[tuple[int, float]] = field(default_factory=list)
    # (iteration, bytes sent so far, averaged over partitions) at each evaluation
    bytes_curve: list[tuple[int, float]] = field(default_factory=list)
    # the wire figure (message x destinations, Algorithm docstring), per partition, and its mean
    # per partition per iteration
    wire_bytes_sent: list[float] = field(default_factory=list)
    wire_bytes_per_iteration: float = 0.0

    @property
    def relative_communication(self) -> float:
        """Bytes sent per iteration relative to BSP (BSP = 1)."""
        return self.bytes_per_iteration / self.bsp_bytes_per_iteration


class Trainer:
    """Runs one algorithm over k local partitions (k = N in simulation, 1 per process under
    torch.distributed), the same code for both engines.

    ``seeds`` (simulation only): train one run per seed at once, a seed group; ``train`` then
    holds the runs' partitions one run after another (``S * N`` in all) and ``config.seed`` is
    ignored. Every run's result equals that seed trained alone (docs/engine.md, seed groups).
    """

    def __init__(self, model_fn: Callable[[], nn.Module], algorithm: Algorithm,
                 train: Sequence[PartitionData | BatchSource], val: PartitionData,
                 config: TrainConfig, *, comm: Comm | None = None,
                 partition_ids: Sequence[int] | None = None,
                 callbacks: Sequence[Callable[[Trainer], None]] = (),
                 seeds: Sequence[int] | None = None) -> None:
        if not train:
            raise ValueError("train needs at least one partition")
        keep_freed_memory()   # a step's large temporaries reuse freed blocks (allocator.py)
        self.seeds = tuple(seeds) if seeds is not None else (config.seed,)
        runs = len(self.seeds)
        if runs < 1 or len(train) % runs:
            raise ValueError(f"{len(train)} partitions cannot be split evenly between "
                             f"{runs} seeds; give each seed's run the same number of partitions")
        if runs > 1 and (comm is not None or callbacks):
            raise ValueError("a seed group runs in the one-device simulation without callbacks; "
                             "train a run that needs a comm or callbacks (SkewScout) alone")
        local = len(train) // runs
        self.comm = comm if comm is not None else (
            LocalComm(local) if runs == 1 else GroupedComm(runs, local))
        self.num_partitions = self.comm.num_partitions
        self.partition_ids = list(range(local) if partition_ids is None else partition_ids)
        if len(self.partition_ids) != local:
            raise ValueError(f"{local} local partitions but {len(self.partition_ids)} ids")
        self.local_batch = config.batch_size // self.num_partitions
        if self.local_batch < 1:
            raise ValueError(f"batch_size {config.batch_size} < {self.num_partitions} partitions")
        if len(val) < self.num_partitions:   # each partition evaluates on a 1/N shard of val
            raise ValueError(f"the validation set has {len(val)} samples, fewer than the "
                             f"{self.num_partitions} partitions that each evaluate on a 1/N "
                             "shard of it; give it more samples")
        self.algorithm, self.train_data, self.val, self.config = algorithm, list(train), val, config
        self.callbacks = list(callbacks)
        torch.manual_seed(self.seeds[0])   # identical initial replicas in every process
        vectorize = (config.vectorize if config.vectorize is not None
                     else torch.device(config.device).type != "cpu")
        module, multipliers = config.protocol.prepare(model_fn())
        self.rounds = self._rounds(algorithm, config, runs, callbacks)
        rows = len(train) if self.rounds is None else self.rounds.rows
        self.stack = StackedModel(module, rows, config.device, vectorize,
                                  channels_last=config.channels_last, bf16=config.bf16)
        self.multipliers = None if multipliers is None else multipliers.to(config.device)
        for run, seed in enumerate(self.seeds[1:], start=1):   # each run's own initial model
            torch.manual_seed(seed)
            self.stack.set_replicas(run * local, (run + 1) * local,
                                   config.protocol.prepare(model_fn())[0])
        algorithm.bind_layers([shape.numel() for shape in self.stack.layout.shapes])
        self._bind_batch_norm(algorithm, config)
        self.state = algorithm.init(self.stack.params)
        # in-memory partitions live on the device and are gathered there (training.sampling)
        self._batches = stacked_batches(
            self.train_data, self.local_batch,
            [np.random.default_rng([seed, p]) for seed in self.seeds for p in self.partition_ids],
            config.device)
        counter = dict(dtype=torch.float64, device=self.stack.params.device)
        self.bytes_sent = torch.zeros(len(train), **counter)
        self.bytes_received = torch.zeros(len(train), **counter)
        self.wire_bytes_sent = torch.zeros(len(train), **counter)
        # first iteration each local partition's gradient was non-finite (-1: never)
        self._nonfinite_at = torch.full((len(train),), -1, dtype=torch.int64,
                                        device=self.stack.params.device)
        self._float_buffers = [b for b in self.stack.buffers.values() if b.is_floating_point()]
        self.iteration = 0
        if self.rounds is not None:
            self.rounds.store_global(self.stack)
            self.rounds.begin(self.state, self.stack.params.device)

    def _rounds(self, algorithm: Algorithm, config: TrainConfig, runs: int,
                callbacks: Sequence[Callable[[Trainer], None]]) -> Rounds | None:
        """The round bookkeeping of a partial-participation run; None when every partition
        trains every iteration (participation unset or covering all N: the ordinary run)."""
        if config.participation is None:
            return None
        check_supported(algorithm)
        count = participants_per_round(config.participation, self.num_partitions)
        if count == self.num_partitions:
            return None
        if config.norm_stats == "fixbn":
            raise ValueError("norm_stats='fixbn' freezes statistics every partition shares at "
                             "one iteration, and partial participation trains a sample per "
                             "round: use one of them")
        if runs > 1 or callbacks:
            raise ValueError("partial participation trains one run without callbacks "
                             "(SkewScout travels models between all partitions); train each "
                             "seed alone, without SkewScout")
        sizes = [partition_size(t) for t in self.train_data]
        if not isinstance(self.comm, LocalComm):   # one partition per process: gather them
            sizes = [int(s) for s in gather_partitions(
                [-1 if s is None else s for s in sizes], self.partition_ids, self.comm)]
        known = None if any(s is None or s < 0 for s in sizes) else sizes
        return Rounds(algorithm, config.seed, self.num_partitions, count, self.partition_ids,
                      known, self.comm)

    @property
    def num_parameters(self) -> int:
        return self.stack.num_parameters

    def context(self) -> StepContext:
        cfg, mult = self.config, self.multipliers
        factor = cfg.lr_factor(self.iteration)
        return StepContext(iteration=self.iteration, lr=cfg.lr * factor, lr_factor=factor,
                           num_partitions=self.num_partitions, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay,
                           final_lr_factor=cfg.lr_factor(max(cfg.iterations - 1, 0)),
                           lr_mult=None if mult is None else mult.lr,
                           decay_mult=None if mult is None else mult.decay,
                           final_iteration=cfg.iterations - 1)

    def step(self) -> StepStats:
        """One iteration of every local partition (under partial participation: of the
        round's participants, :meth:`_round_step`)."""
        if self.rounds is not None:
            return self._round_step(self.rounds)
        x, y = next(self._batches)
        ctx = self.context()
        frozen = self._freeze_batch_norm() if self.iteration == self._fixbn_at else None
        before = (self._buffers_flat() if self._float_buffers and not self.stack.norm_frozen
                  else None)
        grads = self.stack.gradients(x, y)
        bad = _nonfinite_rows(grads)
        self._nonfinite_at = torch.where((self._nonfinite_at < 0) & bad, self.iteration,
                                         self._nonfinite_at)
        stats = self.algorithm.apply(self.state, self.stack.params, grads, ctx, self.comm)
        if before is not None:
            kept, buffer_stats = self.algorithm.share_buffers(
                self.state, before, self._buffers_flat(), stats, ctx, self.comm)
            self._set_buffers(kept)
            stats = stats + buffer_stats
        if frozen is not None:
            stats = stats + frozen
        self.bytes_sent += stats.bytes_sent
        self.bytes_received += stats.bytes_received
        self.wire_bytes_sent += stats.wire_bytes_sent
        self.iteration += 1
        return stats

    def _bind_batch_norm(self, algorithm: Algorithm, config: TrainConfig) -> None:
        """Tell the algorithm which values are BatchNorm ones; check FixBN can run here."""
        params, buffers = self.stack.batch_norm_masks()
        algorithm.bind_batch_norm(params, buffers)
        self._fixbn_at = config.fixbn_iteration
        if self._fixbn_at is None:
            return
        if not buffers.any():
            raise ValueError("norm_stats='fixbn' freezes BatchNorm running statistics, and this "
                             "model has none (GroupNorm or no norm layers): use a BatchNorm "
                             "model or norm_stats='batch'")
        if not buffers.all():
            raise ValueError("norm_stats='fixbn' needs every floating buffer of the model to be "
                             "a BatchNorm running statistic; this model has others: use "
                             "norm_stats='batch'")
        if algorithm.local_batch_norm:
            raise ValueError(f"norm_stats='fixbn' freezes global BatchNorm statistics, and "
                             f"{algorithm.name} keeps each partition's own: pick one of them")

    def _freeze_batch_norm(self) -> StepStats:
        """FixBN's switch: every partition takes the mean over partitions of the running
        statistics (one dense message of them), and BatchNorm normalises with these from now on
        without updating them (training.functional.StackedModel.norm_frozen). Frozen, they are
        no longer the algorithm's to share, nor traffic."""
        flat = self._buffers_flat()
        self._set_buffers(self.comm.all_mean(flat))
        self.stack.norm_frozen = True
        return dense_stats(flat, self.comm, synced=False)
    def _round_step(self, rounds: Rounds) -> StepStats:
        """One iteration under partial participation: the round's participants train (rows
        ``0..a-1``, counters at their partitions); a process whose partition sits the round out
        (torch.distributed) computes nothing and only joins the round's collectives."""
        ctx, active = self.context(), len(rounds.active)
        if active == rounds.rows:
            x, y = self._batches.take(rounds.active)
            before = self._buffers_flat() if self._float_buffers else None
            grads = self.stack.gradients(x, y)
            bad = _nonfinite_rows(grads)
            at = self._nonfinite_at[rounds.active_index]
            self._nonfinite_at[rounds.active_index] = torch.where(
                (at < 0) & bad, self.iteration, at)
            stats = self.algorithm.apply(self.state, self.stack.params, grads, ctx, rounds.comm)
        elif active == 0:
            before = self._buffers_flat() if self._float_buffers else None
            stats = self.algorithm.sit_out(self.state, self.stack.params, ctx, rounds.comm)
        else:
            raise RuntimeError(f"{active} of {rounds.rows} rows train this round; a process "
                               "holds either every slot (simulation) or one partition")
        if before is not None:
            kept, buffer_stats = self.algorithm.share_buffers(
                self.state, before, self._buffers_flat(), stats, ctx, rounds.comm)
            self._set_buffers(kept)
            stats = stats + buffer_stats
        if active:
            self.bytes_sent.index_add_(0, rounds.active_index, stats.bytes_sent)
            self.bytes_received.index_add_(0, rounds.active_index, stats.bytes_received)
            self.wire_bytes_sent.index_add_(0, rounds.active_index, stats.wire_bytes_sent)
        self.iteration += 1
        if self.algorithm.round_ended(self.state):
            rounds.store_global(self.stack)
            rounds.begin(self.state, self.stack.params.device)
        return stats

    def _buffers_flat(self) -> torch.Tensor:
        """The floating buffers (BN running statistics) as one ``[k, B]`` copy."""
        return torch.cat([b.reshape(b.shape[0], -1) for b in self._float_buffers], dim=1)

    def _set_buffers(self, flat: torch.Tensor) -> None:
        sizes = [b[0].numel() for b in self._float_buffers]
        for buffer, values in zip(self._float_buffers, flat.split(sizes, dim=1), strict=True):
            buffer.copy_(values.view_as(buffer))

    def _run(self, run: int) -> tuple[StackedModel, Comm, slice]:
        """Run ``run`` of the group: its replicas, the comm over its partitions, its rows."""
        if len(self.seeds) == 1:
            return self.stack, self.comm, slice(None)
        k = len(self.partition_ids)
        rows = slice(run * k, (run + 1) * k)
        return self.stack.rows(rows.start, rows.stop), LocalComm(k), rows

    def check_finite(self, run: int = 0) -> None:
        """Raise :class:`DivergedError` if a partition's gradient was ever non-finite or its
        parameters are now (one host read; collective, so every process raises together);
        ``run``: which run of a seed group."""
        stack, comm, rows = self._run(run)
        first = gather_partitions(self._nonfinite_at[rows], self.partition_ids, comm)
        finite = (torch.isfinite(stack.params).all(dim=1) if self.rounds is None
                  else self.rounds.finite(stack))
        params_ok = gather_partitions(finite, self.partition_ids, comm)
        bad = [p for p, it in enumerate(first) if it >= 0]
        if bad:
            at = int(min(first[p] for p in bad))
            raise DivergedError(f"non-finite loss/gradient at iteration {at} (0-based) in "
                                f"partition(s) {[p for p in bad if first[p] == at]}; lower the lr")
        broken = [p for p, ok in enumerate(params_ok) if not ok]
        if broken:
            raise DivergedError(f"non-finite parameters by iteration {self.iteration} in "
                                f"partition(s) {broken}; lower the lr")

    def evaluate(self, run: int = 0) -> EvalResult:
        """Each partition's model on its round-robin 1/N shard of val, and the global model
        (``run``: which run of a seed group)."""
        stack, comm, _ = self._run(run)
        if self.rounds is not None:
            return self.rounds.evaluate(stack, self.val, self.config.eval_batch_size,
                                        self.algorithm.has_global_model)
        return evaluate(stack, self.val, self.partition_ids, comm,
                        self.config.eval_batch_size, self.algorithm.has_global_model)

    def run(self) -> RunResult:
        """Train to ``config.iterations``, evaluating every ``eval_every`` and at the end."""
        if len(self.seeds) > 1:
            raise ValueError(f"a seed group of {len(self.seeds)} runs has one result per "
                             "seed: call run_group()")
        (result,) = self.run_group()
        if isinstance(result, DivergedError):
            raise result
        return result

    def run_group(self) -> list[RunResult | DivergedError]:
        """Train every run of the group to ``config.iterations`` (evaluating every
        ``eval_every`` and at the end); one result per seed, or the :class:`DivergedError` that
        ended that run (the others train on). ``wall_time_s`` is the group's time / S."""
        cfg, runs = self.config, range(len(self.seeds))
        logs = [_RunLog() for _ in runs]
        start = time.perf_counter()
        bar = tqdm(total=cfg.iterations, initial=self.iteration, disable=not cfg.progress,
                   desc=self.algorithm.name, leave=False)
        while self.iteration < cfg.iterations and not all(log_.failed for log_ in logs):
            self.step()
            for callback in self.callbacks:
                callback(self)
            bar.update(1)
            if self.iteration % cfg.eval_every == 0 or self.iteration == cfg.iterations:
                for run in runs:
                    self._checkpoint(run, logs[run], record=True)
                final = next((log_.final for log_ in logs if log_.final is not None), None)
                if final is not None:
                    bar.set_postfix(acc=f"{final.mean:.3f}")
        bar.close()
        for run in runs:
            if logs[run].final is None:   # nothing left to train
                self._checkpoint(run, logs[run], record=False)
        wall = (time.perf_counter() - start) / len(self.seeds)
        return [log_.failed or self._result(run, log_, wall) for run, log_ in enumerate(logs)]

    def _checkpoint(self, run: int, log_: _RunLog, record: bool) -> None:
        """Check and evaluate one run (unless it already failed); ``record``: on its curves."""
        if log_.failed is not None:
            return
        try:
            self.check_finite(run)
        except DivergedError as error:
            log_.failed = error
            return
        log_.final = final = self.evaluate(run)
        if not record:
            return
        _, _, rows = self._run(run)
        log_.curve.append((self.iteration, final.mean))
        log_.sent_at.append(self.bytes_sent[rows].clone())
        if final.global_acc is not None:
            log_.global_curve.append((self.iteration, final.global_acc))
        log.info("%s iteration %d: mean accuracy %.4f", self.algorithm.name, self.iteration,
                 final.mean)

    def _result(self, run: int, log_: _RunLog, wall_time_s: float) -> RunResult:
        _, comm, rows = self._run(run)
        assert log_.final is not None
        curve, sent_at = log_.curve, log_.sent_at
        sent = gather_partitions(self.bytes_sent[rows], self.partition_ids, comm)
        # one collective for the whole curve: rows are local partitions, columns evaluations
        totals = comm.all_sum(torch.stack(sent_at, dim=1))[0] if sent_at else []
        received = gather_partitions(self.bytes_received[rows], self.partition_ids, comm)
        wire = gather_partitions(self.wire_bytes_sent[rows], self.partition_ids, comm)
        iterations = max(self.iteration, 1)
        return RunResult(
            curve=curve, final=log_.final, bytes_sent=sent, bytes_received=received,
            bytes_per_iteration=sum(sent) / len(sent) / iterations,
            # BSP's message: the parameters and the floating buffers (BN running statistics)
            bsp_bytes_per_iteration=dense_bytes(self.num_parameters + sum(
                b[0].numel() for b in self._float_buffers)),
            wall_time_s=wall_time_s, iterations=self.iteration, global_curve=log_.global_curve,
            bytes_curve=[(i, float(t) / self.num_partitions)
                         for (i, _), t in zip(curve, totals, strict=True)],
            wire_bytes_sent=wire, wire_bytes_per_iteration=sum(wire) / len(wire) / iterations)


@dataclass
class _RunLog:
    """What :meth:`Trainer.run_group` records of one run of the group."""

    curve: list[tuple[int, float]] = field(default_factory=list)
    global_curve: list[tuple[int, float]] = field(default_factory=list)
    sent_at: list[torch.Tensor] = field(default_factory=list)
    final: EvalResult | None = None
    failed: DivergedError | None = None
