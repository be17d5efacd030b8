"""Study configs (TOML or YAML) and their expansion into runs (docs/reference.md §3, §5).

A study names a dataset, a partitioner, training settings, the algorithms' default knobs and
grids, SkewScout's settings, and a list of experiments. Each experiment has a ``kind`` that says
which finding it tests (``noniid``: finding 1, ``norm``: 2, ``skew_degree`` and ``partitions``:
3, ``skewscout``: 4) and expands to runs: one per model x algorithm x non-IID fraction x seed
(x number of partitions, when the experiment lists ``num_partitions``, several only for a
``partitions`` experiment; else the study's), plus for ``skewscout`` the BSP baseline, every
grid value (the Oracle's search) and one SkewScout run per algorithm.
Runs are identified by a hash of what they compute (not of the experiment that asked for them),
so experiments that need the same run share it and a re-run skips it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from training.algorithms import create_algorithm, list_algorithms
from training.algorithms.base import KnobTable, algorithm_class
from training.engine import TrainConfig
from training.models import check_model_name, has_batch_norm
from training.participation import check_supported
from training.skewscout.scout import DEFAULT_GRIDS, ordered_grid, scout_config
from training.study.data_specs import DatasetSpec, dataset_spec
from training.study.schema import (
    Key,
    check_key,
    example,
    is_type,
    key_table,
    parse_experiment,
    parse_top_level,
)

EXPERIMENT_KINDS = ("noniid", "norm", "skew_degree", "partitions", "skewscout", "baselines")
ENGINES = ("simulation", "distributed")
# algorithm -> its knob's name, read live from the algorithm registry (Algorithm.KNOB)
KNOB_OF: Mapping[str, str] = KnobTable(lambda name, _: name, lambda _, knob: knob.name)
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "pipelines" / "configs" / "default.toml"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Experiment:
    """One ``[[experiments]]`` table (its keys are these fields: schema.key_table)."""

    name: str = example('name = "noniid"')
    kind: str = example('kind = "noniid"')
    models: tuple[str, ...] = example('models = ["gn-lenet"]')
    algorithms: tuple[str, ...] = example('algorithms = ["bsp", "fedavg"]')
    noniid_fractions: tuple[float, ...] = example("noniid_fractions = [0.0, 1.0]")
    # empty: the study's num_partitions
    num_partitions: tuple[int, ...] = example("num_partitions = [5]", default=())
    # Per-experiment overrides (None / empty: the study's), so that one study holds label-skew
    # and Dirichlet experiments, FixBN next to plain BatchNorm, and knob sweeps.
    # None: the study's partitioner
    partitioner: str | None = example('partitioner = "dirichlet"', default=None)
    # None: the study's when the partitioner is the study's, else {}
    partitioner_params: dict[str, Any] | None = example("partitioner_params = {alpha = 0.1}",
                                                        default=None)
    # merged over the study's [train]
    train: dict[str, Any] = example('train = {norm_stats = "fixbn"}', default_factory=dict)
    # algorithm -> knob values: one fixed-knob run per value, instead of the study's knob
    sweep: dict[str, tuple[float, ...]] = example("sweep = {fedavg = [5, 50, 600]}",
                                                  default_factory=dict)

    def __post_init__(self) -> None:
        if "lr_milestones" in self.train:      # a list in the file, a tuple in TrainConfig
            object.__setattr__(self, "train", {**self.train,
                                               "lr_milestones": tuple(self.train["lr_milestones"])})
        if self.kind not in EXPERIMENT_KINDS:
            raise ValueError(f"experiment {self.name!r}: kind={self.kind!r}; choose one of "
                             f"{', '.join(EXPERIMENT_KINDS)}")
        if not self.models or not self.algorithms or not self.noniid_fractions:
            raise ValueError(f"experiment {self.name!r}: list at least one model, algorithm "
                             "and noniid_fraction")
        bad = [f for f in self.noniid_fractions if not 0.0 <= f <= 1.0]
        if bad:
            raise ValueError(f"experiment {self.name!r}: noniid_fractions {bad} must be in [0, 1]")
        if any(n < 2 for n in self.num_partitions):
            raise ValueError(f"experiment {self.name!r}: num_partitions {list(self.num_partitions)}"
                             " must all be >= 2")
        if self.kind == "partitions" and (len(set(self.num_partitions)) < 2
                                          or 0.0 not in self.noniid_fractions
                                          or max(self.noniid_fractions) == 0.0):
            raise ValueError(f"experiment {self.name!r}: a partitions experiment compares at least "
                             "2 num_partitions, each against its IID run (list 0.0 and a skewed "
                             "fraction in noniid_fractions)")
        if self.kind != "partitions" and len(set(self.num_partitions)) > 1:
            # its tables and figures group by model, algorithm and fraction only
            raise ValueError(f"experiment {self.name!r}: only a partitions experiment compares "
                             f"several num_partitions; give {self.kind!r} at most one")
        self._check_sweep()
        knobless = [a for a in self.algorithms if a in list_algorithms() and a not in KNOB_OF]
        if self.kind == "skewscout" and knobless:
            raise ValueError(f"experiment {self.name!r}: SkewScout needs algorithms with a knob "
                             f"({', '.join(sorted(KNOB_OF))}); {', '.join(knobless)} has none "
                             "(BSP is added as the baseline automatically)")

    def _check_sweep(self) -> None:
        for algorithm, values in self.sweep.items():
            where = f"experiment {self.name!r}: sweep {algorithm}"
            if algorithm not in self.algorithms:
                raise ValueError(f"{where}: not one of its algorithms "
                                 f"({', '.join(self.algorithms)})"
                                 f"; list it in algorithms or drop it from sweep")
            if algorithm not in KNOB_OF:
                raise ValueError(f"{where}: no knob to sweep; algorithms with a knob: "
                                 f"{', '.join(sorted(KNOB_OF))}")
            if (not isinstance(values, list | tuple) or not values
                    or not all(is_type(v, float) for v in values)):
                raise ValueError(f"{where} = {values!r}: give a list of knob values, e.g. "
                                 f"sweep = {{{algorithm} = [5, 50]}}")
        if self.sweep and self.kind == "skewscout":
            raise ValueError(f"experiment {self.name!r}: a skewscout experiment runs its [grids]; "
                             "drop sweep")
        object.__setattr__(self, "sweep", {a: tuple(v) for a, v in self.sweep.items()})

    def knobs(self, algorithm: str) -> tuple[float | None, ...]:
        """The knob values this experiment runs ``algorithm`` at (None: the study's)."""
        return tuple(self.sweep.get(algorithm, ())) or (None,)


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's outcome; ``run_id`` hashes it."""

    dataset: dict[str, Any]
    model: str
    algorithm: str
    algorithm_params: dict[str, Any]
    noniid_fraction: float
    num_partitions: int
    partitioner: str
    seed: int
    train: dict[str, Any]
    engine: str
    skewscout: dict[str, Any] | None = None   # None: a fixed-knob run
    partitioner_params: dict[str, Any] = field(default_factory=dict)   # to skewtools.partition

    @property
    def data(self) -> DatasetSpec:
        """The dataset as its typed spec (validated)."""
        return dataset_spec(self.dataset)

    @property
    def mode(self) -> str:
        return "fixed" if self.skewscout is None else "skewscout"

    @property
    def knob(self) -> float | None:
        name = KNOB_OF.get(self.algorithm)
        return None if name is None else self.algorithm_params.get(name)

    @property
    def run_id(self) -> str:
        fields_ = asdict(self)
        if not self.partitioner_params:     # runs without any keep the ids they had before it
            del fields_["partitioner_params"]
        blob = json.dumps(fields_, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class ScheduleProblem:
    """One algorithm setting whose schedule is wrong, and the runs (and experiments) using it."""

    algorithm: str
    problems: tuple[str, ...]
    experiments: list[str] = field(default_factory=list)
    runs: dict[str, RunSpec] = field(default_factory=dict)

    def add(self, experiment: str, spec: RunSpec) -> None:
        if experiment not in self.experiments:
            self.experiments.append(experiment)
        self.runs.setdefault(spec.run_id, spec)

    def message(self) -> str:
        """The problem(s), then which runs: their number, experiments, and the first one."""
        first = next(iter(self.runs.values()))
        where = (f"{len(self.runs)} run(s) in {', '.join(self.experiments)}, e.g. run "
                 f"{first.run_id}: {first.model} {first.noniid_fraction:.0%} non-IID "
                 f"N={first.num_partitions} seed {first.seed}")
        return f"{self.algorithm}: {'; '.join(self.problems)} ({where})"


@dataclass(frozen=True)
class StudyConfig:
    """A study; the keys of its config file are these fields (:data:`TOP_LEVEL`), so a field
    added here is a key there."""

    name: str = example('name = "my_study"')
    dataset: DatasetSpec = example('[dataset] name = "digits"')
    experiments: tuple[Experiment, ...] = example("[[experiments]] name = ...")
    num_partitions: int = 5
    partitioner: str = "label_skew"
    # to skewtools.partition
    partitioner_params: dict[str, Any] = example("[partitioner_params] alpha = 0.5",
                                                 default_factory=dict)
    seeds: tuple[int, ...] = example("seeds = [0, 1]", default=(0,))
    train: dict[str, Any] = example("[train] iterations = 300", default_factory=dict)
    # the algorithms' default params
    algorithms: dict[str, dict[str, Any]] = example("[algorithms.fedavg] iter_local = 50",
                                                    default_factory=dict)
    grids: dict[str, tuple[float, ...]] = example("[grids] fedavg = [5, 50]",
                                                  default_factory=lambda: dict(DEFAULT_GRIDS))
    target: float = 0.03          # accuracy loss allowed vs BSP (Oracle and findings)
    skewscout: dict[str, Any] = example("[skewscout] travel_interval = 20", default_factory=dict)
    engine: str = "simulation"
    # torch CPU threads for simulation runs (None: torch's default). Training sums in an order
    # that depends on the thread count, and small differences grow over a run, so a fixed count
    # gives the same numbers on every machine.
    threads: int | None = example("threads = 1", default=None)
    # where the runs execute ([executor] table; read by training.study.executors.ExecutorConfig)
    executor: dict[str, Any] = example('[executor] kind = "local"', default_factory=dict)
    # refuse (True) or only warn about (False) runs whose schedule cannot mean what they claim
    # (schedule_problems)
    strict: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, DatasetSpec):
            raise ValueError(f"dataset={self.dataset!r}: give a parsed [dataset] table "
                             "(training.study.data_specs.dataset_spec)")
        for key, spec in TOP_LEVEL.items():     # the scalars: a table was checked as parsed
            value = getattr(self, key)
            if spec.kind not in (list, dict) and value is not None:
                check_key(TOP_LEVEL, key, value)
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.num_partitions < 2:
            raise ValueError(f"num_partitions={self.num_partitions}: need at least 2")
        if not 0 < self.target < 1:
            raise ValueError(f"target={self.target}: give the accuracy loss as a fraction")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads={self.threads}: give at least 1, or leave it out")
        names = [e.name for e in self.experiments]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:       # tables, figures and --only go by name: the second would hide the first
            raise ValueError(f"experiment name(s) {', '.join(twice)} used twice; give each "
                             "[[experiments]] its own name")
        self._check_runs()
        self._check_norm_stats()
        self._check_schedules()

    def train_of(self, exp: Experiment) -> dict[str, Any]:
        """The experiment's training settings: its ``train`` table over the study's."""
        return {**self.train, **exp.train}

    def partitioning_of(self, exp: Experiment) -> tuple[str, dict[str, Any]]:
        """The experiment's partitioner and its parameters (Experiment: the override rule)."""
        partitioner = exp.partitioner or self.partitioner
        if exp.partitioner_params is not None:
            return partitioner, dict(exp.partitioner_params)
        same = partitioner == self.partitioner
        return partitioner, dict(self.partitioner_params) if same else {}

    def _train_config(self, exp: Experiment | None = None) -> TrainConfig:
        """The experiment's (None: the study's) TrainConfig; an error names its table."""
        if exp is None or not exp.train:
            try:
                return TrainConfig(**self.train)
            except TypeError as exc:
                raise ValueError(f"[train]: {exc}") from None
        try:
            return TrainConfig(**self.train_of(exp))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"experiment {exp.name!r}: train: {exc}") from None

    def _check_partitionings(self) -> None:
        """Build each partitioning the experiments use once (grouped by partitioner and
        parameters), naming the experiments of an override in its error."""
        groups: dict[str, tuple[str, dict[str, Any], list[Experiment]]] = {}
        for exp in self.experiments:
            partitioner, params = self.partitioning_of(exp)
            key = json.dumps([partitioner, params], sort_keys=True, default=str)
            groups.setdefault(key, (partitioner, params, []))[2].append(exp)
        for partitioner, params, exps in groups.values():
            try:
                self.dataset.check_partitions(
                    partitioner, params,
                    {n for e in exps for n in e.num_partitions or (self.num_partitions,)},
                    {f for e in exps for f in e.noniid_fractions})
            except ValueError as exc:
                named = [e.name for e in exps if e.partitioner is not None
                         or e.partitioner_params is not None]
                if not named:
                    raise
                raise ValueError(f"experiment(s) {', '.join(map(repr, named))}: {exc}") from None

    def _check_runs(self) -> None:
        """Build what the runs will build (training settings, partitioner, models' names,
        algorithms, SkewScout and its grids), so that a bad value stops the study before its
        first run rather than after hours of others."""
        self._train_config()
        for exp in self.experiments:
            train = self._train_config(exp)
            if train.participation is not None:  # SkewScout experiments add a BSP reference run
                for algorithm in (*exp.algorithms, *(["bsp"] if exp.kind == "skewscout" else [])):
                    check_supported(algorithm)
        self._check_partitionings()
        for exp in self.experiments:
            for model in exp.models:
                check_model_name(model)
            for algorithm in ("bsp", *exp.algorithms):
                try:
                    create_algorithm(algorithm, **self.algorithms.get(algorithm, {}))
                except TypeError as exc:
                    raise ValueError(f"[algorithms.{algorithm}]: {exc}") from None
            for algorithm, values in exp.sweep.items():
                for knob in values:
                    try:
                        create_algorithm(algorithm, **{**self.algorithms.get(algorithm, {}),
                                                       KNOB_OF[algorithm]: knob})
                    except (TypeError, ValueError) as exc:
                        raise ValueError(f"experiment {exp.name!r}: sweep {algorithm} = "
                                         f"{knob!r}: {exc}") from None
            if exp.kind == "skewscout":
                for algorithm in exp.algorithms:
                    ordered_grid(KNOB_OF[algorithm], self.grids[algorithm])
                    for knob in self.grids[algorithm]:
                        create_algorithm(algorithm, **{**self.algorithms.get(algorithm, {}),
                                                       KNOB_OF[algorithm]: knob})
                try:
                    scout_config({"target": self.target, **self.skewscout})
                except TypeError as exc:     # e.g. travel_interval = "5"
                    raise ValueError(f"[skewscout]: {exc}") from None

    def _check_norm_stats(self) -> None:
        """FixBN freezes global BatchNorm statistics: every model must have BatchNorm (by its
        name; a timm/torchvision model is checked when built) and no algorithm may keep the
        statistics each partition's own (FedBN)."""
        for exp in self.experiments:
            if self._train_config(exp).norm_stats != "fixbn":
                continue
            where = f"experiment {exp.name!r}: train" if "norm_stats" in exp.train else "[train]"
            for model in exp.models:
                if has_batch_norm(model) is False:
                    raise ValueError(f'{where} norm_stats = "fixbn": experiment {exp.name!r} '
                                     f"trains {model!r}, which has no BatchNorm to freeze; use "
                                     'a BatchNorm model (bn-...) or norm_stats = "batch"')
            for algorithm in exp.algorithms:
                if algorithm_class(algorithm).local_batch_norm:
                    raise ValueError(f'{where} norm_stats = "fixbn" freezes global BatchNorm '
                                     f"statistics and experiment {exp.name!r} runs {algorithm}, "
                                     "which keeps each partition's own: drop one of them")

    def schedule_problems(self) -> list[ScheduleProblem]:
        """The fixed-knob runs whose schedule cannot mean what they claim
        (``Algorithm.schedule_problems``), one entry per algorithm setting. SkewScout runs move
        over their grid, whose every value is a checked grid run of the same experiment."""
        said: dict[str, tuple[str, ...]] = {}    # params -> problems (each built once)
        found: dict[tuple[str, tuple[str, ...]], ScheduleProblem] = {}
        for exp in self.experiments:
            train = self._train_config(exp)
            phases = train.lr_phases()
            for spec in self.runs(exp):
                if spec.mode != "fixed":
                    continue
                params = json.dumps([spec.algorithm, spec.algorithm_params, train.iterations,
                                     [[p.start, p.stop] for p in phases]], sort_keys=True,
                                    default=str)
                if params not in said:
                    algorithm = create_algorithm(spec.algorithm, **spec.algorithm_params)
                    said[params] = tuple(algorithm.schedule_problems(train.iterations, phases))
                if said[params]:     # a default and its explicit value say the same: one entry
                    key = (spec.algorithm, said[params])
                    found.setdefault(key, ScheduleProblem(*key)).add(exp.name, spec)
        return list(found.values())

    def _check_schedules(self) -> None:
        problems = self.schedule_problems()
        if problems and self.strict:
            raise ValueError(f"strict = true and {len(problems)} run setting(s) cannot mean what "
                             f"they claim: {' | '.join(p.message() for p in problems)}; fix them, "
                             "or set strict = false to run them with a warning")
        for problem in problems:
            log.warning("study %s: %s", self.name, problem.message())

    def runs(self, experiment: Experiment) -> list[RunSpec]:
        """The runs an experiment needs, in a stable order."""
        out: list[RunSpec] = []
        for n in experiment.num_partitions or (self.num_partitions,):
            for model in experiment.models:
                for frac in experiment.noniid_fractions:
                    for seed in self.seeds:
                        out.extend(self._runs_one(experiment, model, float(frac), seed, n))
        return out

    def all_runs(self, only: Sequence[str] | None = None) -> list[RunSpec]:
        """Every run of the study (of its experiments named in ``only``, if given) once, in
        first-needed order."""
        seen: dict[str, RunSpec] = {}
        for exp in self.experiments:
            if only is not None and exp.name not in only:
                continue
            for spec in self.runs(exp):
                seen.setdefault(spec.run_id, spec)
        return list(seen.values())

    def _runs_one(self, exp: Experiment, model: str, frac: float, seed: int,
                  n: int) -> list[RunSpec]:
        if exp.kind != "skewscout":
            return [self.spec(model, a, frac, seed, knob=k, num_partitions=n, exp=exp)
                    for a in exp.algorithms for k in exp.knobs(a)]
        out = [self.spec(model, "bsp", frac, seed, num_partitions=n, exp=exp)]
        for algo in exp.algorithms:
            out += [self.spec(model, algo, frac, seed, knob=k, num_partitions=n, exp=exp)
                    for k in self.grids[algo]]
            out.append(self.spec(model, algo, frac, seed, skewscout=True, num_partitions=n,
                                 exp=exp))
        return out

    def spec(self, model: str, algorithm: str, frac: float, seed: int, *,
             knob: float | None = None, skewscout: bool = False,
             num_partitions: int | None = None, exp: Experiment | None = None) -> RunSpec:
        """One run; ``exp``: the experiment whose overrides (partitioner, train) apply."""
        params = dict(self.algorithms.get(algorithm, {}))
        if knob is not None:
            params[KNOB_OF[algorithm]] = knob
        scout = None
        if skewscout:
            params.pop(KNOB_OF[algorithm], None)     # the controller sets it
            scout = {"target": self.target, **self.skewscout,
                     "grid": list(self.grids[algorithm])}
        if exp is None:
            partitioner, part_params, train = (self.partitioner, dict(self.partitioner_params),
                                               dict(self.train))
        else:
            (partitioner, part_params), train = self.partitioning_of(exp), self.train_of(exp)
        return RunSpec(self.dataset.to_dict(), model, algorithm, params, frac,
                       num_partitions or self.num_partitions, partitioner, int(seed),
                       train, self.engine, scout, part_params)


# The keys of a study config and of its [[experiments]] tables: the dataclasses' fields.
TOP_LEVEL: dict[str, Key] = key_table(StudyConfig)
EXPERIMENT_KEYS: dict[str, Key] = key_table(Experiment)


def load_study(path: str | Path | None = None) -> StudyConfig:
    """Read a study from TOML (``.toml``) or YAML (``.yaml``/``.yml``); None: the default study.
    A broken or invalid file raises ValueError naming the key and the fix."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    if not path.exists():
        raise FileNotFoundError(f"no study config at {path}; pass a .toml or .yaml file")
    try:
        if path.suffix == ".toml":
            doc = tomllib.loads(path.read_text())
        elif path.suffix in (".yaml", ".yml"):
            doc = yaml.safe_load(path.read_text())
        else:
            raise ValueError(f"{path}: use a .toml, .yaml or .yml study config")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not valid {path.suffix[1:].upper()}: {first}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a study config is a table of keys (name, dataset, "
                         f"experiments, ...), got {type(doc).__name__}")
    return study_from_dict(doc, default_name=path.stem)


def study_from_dict(doc: dict[str, Any], default_name: str = "study") -> StudyConfig:
    """A study from its parsed config; unknown keys and wrong types raise ValueError naming
    the key and the fix."""
    doc = parse_top_level(doc, TOP_LEVEL)
    experiments = tuple(Experiment(**parse_experiment(e, i, EXPERIMENT_KEYS))
                        for i, e in enumerate(doc.pop("experiments", [])))
    if not experiments:
        raise ValueError("the study lists no [[experiments]]; add at least one")
    grids = {**DEFAULT_GRIDS, **{k: tuple(v) for k, v in doc.pop("grids", {}).items()}}
    unknown = sorted(set(grids) - set(DEFAULT_GRIDS))
    if unknown:
        raise ValueError(f"[grids] {', '.join(unknown)}: no such algorithm with a knob; known: "
                         f"{', '.join(sorted(DEFAULT_GRIDS))}")
    train = dict(doc.pop("train", {}))
    if "lr_milestones" in train:
        train["lr_milestones"] = tuple(train["lr_milestones"])
    dataset = dataset_spec(doc.pop("dataset", {"name": "digits"}))
    return StudyConfig(
        name=doc.pop("name", default_name), dataset=dataset, experiments=experiments,
        seeds=tuple(doc.pop("seeds", (0,))), train=train, grids=grids,
        algorithms=doc.pop("algorithms", {}), skewscout=doc.pop("skewscout", {}),
        partitioner=doc.pop("partitioner", dataset.default_partitioner), **doc,
    )
