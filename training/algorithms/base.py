"""The interface every decentralized algorithm implements (docs/reference.md §4), and its registry.

An algorithm sees each partition's parameters and gradients as rows of a ``[k, P]`` tensor
(``k`` = partitions held by this process: all ``N`` in the one-device simulation, 1 under
torch.distributed) and talks to the other partitions only through a :class:`Comm`. That is what
lets the same algorithm code run on both engines.

Learning-rate convention (documented once, used by every algorithm): ``lr`` is the step of the
*global* model on the global batch. BSP applies ``lr * mean_k(g_k)``, i.e. single-model SGD on the
combined batch. Algorithms whose partitions add their updates into one model (Gaia, DGC) scale
each partition's own update by ``1/N`` so that, with nothing held back (Gaia T0=0), they equal BSP.
FedAvg trains each partition locally with ``lr / N`` by default (the authors' per-worker solver
lr) and averages models; with ``local_lr="global"`` it uses ``lr`` and IterLocal=1 equals BSP.
Per-layer multipliers (``StepContext.lr_mult`` / ``decay_mult``, training.protocol) reach every
algorithm the same way: the L2 term through :func:`decayed`, the step through
:func:`per_value_lr` on whatever the algorithm scales by ``lr``.

Bytes (two figures, both per partition): the *message* figure (``bytes_sent``) is what a partition
puts into one message, counted once however many partitions receive it (dense: 4 B per value;
sparse: 4 B value + 4 B index, capped at dense). The *wire* figure (``wire_bytes_sent``) is what
it puts on a naive point-to-point network: the message once per destination, i.e. ``N - 1`` times
for every exchange here (BSP/FedAvg all-reduce, Gaia's and DGC's broadcasts) and once for a
SkewScout traveling model. All counters are tensors on the parameters' device (no host sync).
BatchNorm running statistics are part of the traffic: :meth:`Algorithm.share_buffers`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from training.algorithms.traffic import (  # noqa: F401  (re-exported: the API names)
    BYTES_PER_INDEX,
    BYTES_PER_VALUE,
    Comm,
    StepStats,
    dense_stats,
    silent_stats,
)

# The SGD defaults of every run (the paper's; TrainConfig takes them from here).
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


@dataclass(frozen=True)
class StepContext:
    """What an algorithm needs to know about the current iteration."""

    iteration: int        # 0-based global iteration
    lr: float             # learning rate now (after decay)
    lr_factor: float      # lr / base lr: Gaia scales its threshold by it (T = T0 * factor)
    num_partitions: int   # global N
    momentum: float = MOMENTUM          # SGD momentum; where the velocity lives is the algorithm's
    weight_decay: float = WEIGHT_DECAY  # L2 coefficient, added to each partition's gradient
    final_lr_factor: float = 1.0  # lr_factor at the run's last iteration
    # Per-value multipliers ([P], training.protocol): the step of value j is lr * lr_mult[j] and
    # its L2 term weight_decay * decay_mult[j]; None means 1 everywhere.
    lr_mult: torch.Tensor | None = None
    decay_mult: torch.Tensor | None = None
    final_iteration: int | None = None   # 0-based index of the run's last iteration (None: open)

    @property
    def is_final(self) -> bool:
        """Whether this is the run's last iteration: the model is scored right after it."""
        return self.iteration == self.final_iteration

    @property
    def decay_ahead(self) -> bool:
        """Whether the learning rate will still decay before the run ends."""
        return self.final_lr_factor < self.lr_factor


def decayed(grads: torch.Tensor, params: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """``grads + weight_decay * decay_mult * params`` as a new tensor: the L2-regularised gradient
    every algorithm starts from (one home, so the four algorithms stay bit-for-bit alike)."""
    if ctx.decay_mult is None:
        return grads.add(params, alpha=ctx.weight_decay)
    return grads.addcmul(params, ctx.decay_mult, value=ctx.weight_decay)


def per_value_lr(update: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """``update * lr_mult`` (``update`` itself when there are no multipliers): every algorithm
    passes what it will scale by ``lr`` through here, so per-layer learning rates reach all."""
    return update if ctx.lr_mult is None else update * ctx.lr_mult


@dataclass(frozen=True)
class KnobSpec:
    """An algorithm's communication knob, declared once on its class (``Algorithm.KNOB``):
    the constructor parameter / attribute SkewScout turns, whether a larger value means less
    communication, and the Oracle's default grid (any order; SkewScout sorts it)."""

    name: str
    larger_is_less_communication: bool
    default_grid: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"knob name {self.name!r} must be the algorithm's parameter name")
        if not self.default_grid or len(set(self.default_grid)) != len(self.default_grid):
            raise ValueError(f"knob {self.name!r}: default_grid {list(self.default_grid)} must "
                             "list at least one value, each once")


class Algorithm(ABC):
    """A decentralized algorithm: ``init`` builds explicit state, ``apply`` runs one iteration.

    ``apply`` updates ``params`` ([k, P], in place: the engines hold views into it) and ``state``
    and returns the iteration's communication. Momentum and weight decay (from ``ctx``) are the
    algorithm's job: where momentum lives differs (local in FedAvg, corrected in DGC).
    """

    name: ClassVar[str]
    KNOB: ClassVar[KnobSpec | None] = None   # the communication knob SkewScout turns (None: none)
    # Whether the mean of the replicas is a meaningful global model to evaluate (BSP/DGC: replicas
    # are identical; FedAvg: the model its next averaging would produce; Gaia: none).
    has_global_model: ClassVar[bool] = False
    # Whether each partition keeps BatchNorm values of its own for good (FedBN): there are then
    # no global statistics for FixBN to freeze (the engine refuses the pair).
    local_batch_norm: ClassVar[bool] = False
    # Partial participation (TrainConfig.participation, docs/engine.md): whether the algorithm
    # runs with a sampled subset of partitions per round; those that do implement the three
    # round hooks below.
    supports_participation: ClassVar[bool] = False

    def bind_layers(self, sizes: Sequence[int]) -> None:
        """Told by the engine, before :meth:`init`, how many values each of the model's
        parameter tensors holds (in flat order); algorithms that work per layer keep it."""
        return None

    def bind_batch_norm(self, params: torch.Tensor, buffers: torch.Tensor) -> None:
        """Told by the engine, before :meth:`init`, which values belong to BatchNorm layers:
        ``params`` a ``[P]`` bool mask over the flat parameters (affine weight and bias),
        ``buffers`` a ``[B]`` bool mask over the floating buffers :meth:`share_buffers` sees
        (running mean and variance); both on the CPU. Algorithms that treat them apart (FedBN
        keeps them local) keep it; not told, an algorithm sees no BatchNorm values."""
        return None

    @abstractmethod
    def init(self, params: torch.Tensor) -> Any: ...

    @abstractmethod
    def apply(self, state: Any, params: torch.Tensor, grads: torch.Tensor,
              ctx: StepContext, comm: Comm) -> StepStats: ...

    def share_buffers(self, state: Any, before: torch.Tensor, after: torch.Tensor,
                      step: StepStats, ctx: StepContext, comm: Comm) -> tuple[torch.Tensor,
                                                                              StepStats]:
        """The floating buffers (BatchNorm running statistics, ``[k, B]``) every partition keeps
        after this iteration, and their traffic. ``before``/``after``: the buffers before and
        after this iteration's forward pass. Default: averaged over partitions when the step
        synced the models (docs/reference.md §3), sent dense like the parameters (4 B per value)."""
        if not step.synced:
            return after, silent_stats(after)
        return comm.all_mean(after), dense_stats(after, comm, synced=True)

    # Partial participation: the engine's side of the contract is in docs/engine.md.
    def round_ended(self, state: Any) -> bool:
        """True when the last step closed a round (every row now holds the new global model)
        or none has run yet: the engine samples the next round's participants then."""
        raise NotImplementedError(f"{self.name} does not support partial participation")

    def begin_round(self, state: Any, participants: Sequence[int]) -> None:
        """Rows of ``params`` and of ``state`` now belong to partitions ``participants`` (row
        ``j`` to ``participants[j]``; none of them ran since their last round)."""
        raise NotImplementedError(f"{self.name} does not support partial participation")

    def sit_out(self, state: Any, params: torch.Tensor, ctx: StepContext,
                comm: Comm) -> StepStats:
        """One iteration of rows whose partitions do not take part in this round (torch.distributed:
        a sampled-out rank): no gradient, but the collectives ``apply`` makes at this iteration,
        with zero weight (``comm.all_mean`` leaves them out), and the new global model adopted."""
        raise NotImplementedError(f"{self.name} does not support partial participation")

    # SkewScout changes the knob while a run goes on.
    @property
    def knob_name(self) -> str | None:
        return None if self.KNOB is None else self.KNOB.name

    @property
    def knob(self) -> float | None:
        return None if self.knob_name is None else float(getattr(self, self.knob_name))

    def set_knob(self, value: float) -> None:
        if self.knob_name is None:
            raise ValueError(f"{self.name} has no communication knob to set")
        setattr(self, self.knob_name, type(getattr(self, self.knob_name))(value))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError, saying how to fix it, when a hyperparameter is out of range."""
        return None

    def schedule_problems(self, iterations: int, lr_phases: Sequence[range]) -> list[str]:
        """Why a run of ``iterations`` iterations in these learning-rate phases
        (``TrainConfig.lr_phases()``) cannot mean what this algorithm, as configured, claims:
        one sentence per problem, each ending with the fix; empty when the schedule gives the
        algorithm what it needs. A study checks every run with it when it loads."""
        return []

    # SkewScout's model traveling (training.skewscout) asks every algorithm these three things.
    def local_view(self, state: Any, params: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Each partition's model as it would be had it sent everything it holds ([k, P]).

        Partitions that apply their own updates at once (Gaia, FedAvg) already are: ``params``.
        """
        return params

    def views_just_agreed(self, state: Any) -> bool:
        """True right after a synchronisation made every local view the same model while the
        knob lets them drift apart again (FedAvg just averaged): a traveling round there could
        only measure 0 skew, so SkewScout takes it an iteration later."""
        return False

    def traveled_view(self, state: Any, local_index: int, visitor: torch.Tensor,
                      ctx: StepContext) -> torch.Tensor:
        """The model local partition ``local_index`` judges when ``visitor`` (another partition's
        local view, [P]) travels to it: the visitor as it is, unless the algorithm knows better
        what it will make of the two models by the end of the run (Gaia)."""
        return visitor

    # SkewScout's estimate from averaging instead of traveling (FedAvg's visitor_view="average").
    def scores_averaging(self) -> bool:
        """True when SkewScout should score what each averaging cost instead of traveling."""
        return False

    def before_average(self, state: Any) -> torch.Tensor | None:
        """The models just before an averaging that ended this iteration ([k, P]), else None."""
        return None


_REGISTRY: dict[str, type[Algorithm]] = {}


def register_algorithm(cls: type[Algorithm]) -> type[Algorithm]:
    """Class decorator: make ``cls`` buildable by ``create_algorithm(cls.name)``. Its ``KNOB``
    (if any) then appears in every knob table (SkewScout's, the study's)."""
    key = cls.name.lower()
    if key in _REGISTRY:
        raise ValueError(f"an algorithm named {key!r} is already registered "
                         f"({_REGISTRY[key].__qualname__}); pick another name")
    if cls.KNOB is not None and not isinstance(cls.KNOB, KnobSpec):
        raise ValueError(f"{cls.__qualname__}.KNOB must be a KnobSpec or None")
    for other in _REGISTRY.values():    # SkewScout orders grids by the knob's name
        if (cls.KNOB is not None and other.KNOB is not None and other.KNOB.name == cls.KNOB.name
                and other.KNOB.larger_is_less_communication
                != cls.KNOB.larger_is_less_communication):
            raise ValueError(f"{cls.__qualname__}.KNOB {cls.KNOB.name!r} disagrees with "
                             f"{other.name}'s knob of that name on its direction; rename it")
    _REGISTRY[key] = cls
    return cls


def algorithm_class(name: str) -> type[Algorithm]:
    """The registered class; unknown names raise ValueError listing the known ones."""
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(list_algorithms())}")
    return _REGISTRY[key]


def create_algorithm(name: str, **params: Any) -> Algorithm:
    """Build an algorithm by registry name; unknown names list the known ones."""
    return algorithm_class(name)(**params)


def list_algorithms() -> list[str]:
    return sorted(_REGISTRY)


class KnobTable(Mapping[str, Any]):
    """A read-only live view of the registered algorithms' knobs: ``key`` and ``value`` map an
    algorithm (with a knob) to the table's entry, always read from the registry, so an
    algorithm registered later appears in every table (no hand-kept copies)."""

    def __init__(self, key: Any, value: Any) -> None:
        self._key, self._value = key, value

    def _table(self) -> dict[str, Any]:
        return {self._key(name, cls.KNOB): self._value(name, cls.KNOB)
                for name, cls in _REGISTRY.items() if cls.KNOB is not None}

    def __getitem__(self, key: str) -> Any:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f"KnobTable({self._table()!r})"


# algorithm -> KnobSpec, for the registered algorithms that have a knob
KNOBS: Mapping[str, KnobSpec] = KnobTable(lambda name, _: name, lambda _, knob: knob)
