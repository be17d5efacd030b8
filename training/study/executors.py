"""Where a study's runs execute: in this process, in local worker processes, on a Ray cluster or
on SLURM through submitit. Each backend turns runs into ``concurrent.futures`` futures of
:func:`run_one`'s outcome; the driver (training.study.schedule) claims, stores and reports.

Every run keeps its own seed and thread count wherever it runs, so its row is the same as in a
serial study (only ``wall_time_s`` differs).
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch

from training.study import run
from training.study.config import RunSpec, StudyConfig
from training.study.groups import SeedGroup, execute_group

log = logging.getLogger(__name__)

EXTRA_OF = {"ray": "ray", "submitit": "slurm"}
PR_SET_PDEATHSIG = 1           # <linux/prctl.h>


@dataclass(frozen=True)
class ExecutorConfig:
    """The ``[executor]`` table of a study config, overridden by ``run_study``'s flags (one per
    field; a field's comment is its flag's help)."""

    kind: str = "local"                # where the runs execute (list_executors)
    jobs: int | None = None            # local: runs at once (None: cores // threads; 1 per GPU)
    address: str | None = None         # ray: ray.init(address=...); None: a running/local one
    partition: str | None = None       # slurm: the partition
    time_min: int = 60                 # slurm: time limit per run, minutes
    gpus_per_task: int | None = None   # ray/slurm: GPUs per run (None: 1 per process on CUDA)
    cpus_per_task: int | None = None   # ray/slurm: CPUs per run (None: threads x processes)
    array_parallelism: int = 256       # slurm: array tasks running at once
    folder: str | None = None          # slurm: submitit's logs (default OUT/submitit)
    cluster: str | None = None         # submitit cluster: None (auto), "slurm" or "local"

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor kind={self.kind!r}; choose one of "
                             f"{', '.join(list_executors())}")
        if self.jobs is not None and self.jobs < 1:
            raise ValueError(f"jobs={self.jobs}: give at least 1")
        for name in ("time_min", "array_parallelism"):
            if getattr(self, name) < 1:
                raise ValueError(f"executor {name}={getattr(self, name)}: give at least 1")

    @classmethod
    def from_table(cls, table: dict[str, Any], **overrides: Any) -> ExecutorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"[executor]: unknown key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        return cls(**{**table, **{k: v for k, v in overrides.items() if v is not None}})


class Backend(Protocol):
    capacity: int        # runs in flight at once

    def submit_many(self, specs: Sequence[RunSpec]) -> list[Future]: ...

    def close(self) -> None: ...


def require(module: str) -> Any:
    """Import an optional dependency, or say which extra installs it (one line)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRA_OF[module]
        raise ImportError(f"the {extra} executor needs {module}: pip install "
                          f"'noniid-quagmire[{extra}]'") from None


def run_one(spec: RunSpec, threads: int | None) -> dict[str, Any]:
    """Train one run with ``threads`` torch threads; its row, or its error as data (so that the
    driver records a failure the same way from every backend)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        if isinstance(spec, SeedGroup):   # one outcome per run of the group (groups.py)
            return {"outcomes": execute_group(spec)}
        return {"row": run.execute_run(spec)}
    except Exception as exc:     # recorded by the driver, never raised through a backend
        return {"error": f"{type(exc).__name__}: {exc}",
                "traceback": "".join(traceback.format_exception(exc)[-12:])}
    finally:
        torch.set_num_threads(before)


def uses_cuda(spec: RunSpec) -> bool:
    return str(spec.train.get("device", "cpu")).startswith("cuda")


def processes_per_run(spec: RunSpec) -> int:
    return spec.num_partitions if spec.engine == "distributed" else 1


def default_jobs(study: StudyConfig, specs: Sequence[RunSpec]) -> int:
    """Runs at once on this machine: one per GPU on CUDA studies, else the cores divided by
    what one run uses (its threads, times its processes on the distributed engine)."""
    if not specs:
        return 1
    if any(uses_cuda(s) for s in specs):
        if any(s.engine == "distributed" for s in specs):
            return 1         # each run takes GPUs 0..N-1 itself
        return max(1, torch.cuda.device_count())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if study.threads is None:
        return 1             # torch's default already uses every core
    per_run = study.threads * max(processes_per_run(s) for s in specs)
    return max(1, (cores or 1) // per_run)


class InlineBackend:
    """Runs in this process, one after another (``--jobs 1``)."""

    capacity = 1

    def __init__(self, threads: int | None) -> None:
        self.threads = threads

    def submit_many(self, specs: Sequence[RunSpec]) -> list[Future]:
        futures = []
        for spec in specs:
            fut: Future = Future()
            fut.set_result(run_one(spec, self.threads))
            futures.append(fut)
        return futures

    def close(self) -> None:
        pass


def _pin_gpu(queue: Any) -> None:
    """This worker sees one GPU (taken from the queue) as cuda:0."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(queue.get())


PARENT_POLL_S = 1.0      # how often a worker's watchdog looks for its driver


def die_with_parent(parent: int) -> None:
    """End this process when process ``parent`` ends, however it ends (SIGKILL included), so a
    killed driver leaves no worker behind (each holds a run's model and data: ~1 GB).

    Linux: the kernel sends SIGKILL at the parent's death (prctl PR_SET_PDEATHSIG). Everywhere:
    a daemon thread polls the parent pid and exits when this process was reparented. Checked
    once at once too, for a parent that died before either was in place.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):      # no prctl: the watchdog alone
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_init(parent: int, gpus: Any | None) -> None:
    """Worker initializer: die with the driver; on CUDA studies, take one GPU."""
    die_with_parent(parent)
    if gpus is not None:
        _pin_gpu(gpus)


class LocalBackend:
    """``jobs`` spawned worker processes (spawn: no CUDA or thread state copied from here).

    The workers die with the driver (:func:`die_with_parent`); :meth:`close` stops them, also
    in the middle of runs (Ctrl-C, SIGTERM), rather than waiting for their runs to finish."""

    def __init__(self, jobs: int, threads: int | None, pin_gpus: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        gpus = None
        if pin_gpus:
            gpus = ctx.Queue()
            for worker in range(jobs):      # more workers than GPUs: they share round-robin
                gpus.put(worker % max(1, torch.cuda.device_count()))
        self.pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx,
                                        initializer=_worker_init, initargs=(os.getpid(), gpus))
        self.capacity = jobs
        self.threads = threads
        self.futures: list[Future] = []

    def submit_many(self, specs: Sequence[RunSpec]) -> list[Future]:
        futures = [self.pool.submit(run_one, spec, self.threads) for spec in specs]
        self.futures = [f for f in self.futures if not f.done()] + futures
        return futures

    def close(self) -> None:
        busy = any(not f.done() for f in self.futures)
        # the pool's own processes: ProcessPoolExecutor has no public way to stop a running task
        workers = list((getattr(self.pool, "_processes", None) or {}).values())
        manager = getattr(self.pool, "_executor_manager_thread", None)
        self.pool.shutdown(wait=not busy, cancel_futures=True)
        if busy:
            for proc in workers:
                if proc.is_alive():
                    proc.terminate()
            for proc in workers:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
            # Wait for the pool's manager thread to finish its clean-up: if the interpreter
            # exits while it is closing its wake-up pipe, the pool's exit hook writes to the
            # closed pipe and prints "OSError: Bad file descriptor" (CPython 3.11's
            # _python_exit; 7 exits in 120 without this join, 0 in 120 with it).
            if manager is not None:
                manager.join(timeout=30)


def _resources(spec: RunSpec, threads: int | None, cfg: ExecutorConfig) -> tuple[int, int]:
    procs = processes_per_run(spec)
    cpus = cfg.cpus_per_task or (threads or 1) * procs
    gpus = cfg.gpus_per_task if cfg.gpus_per_task is not None else (
        procs if uses_cuda(spec) else 0)
    return cpus, gpus


class RayBackend:
    """Each run a Ray task asking for its CPUs and GPUs; the cluster schedules them."""

    capacity = 1 << 30

    def __init__(self, cfg: ExecutorConfig, threads: int | None) -> None:
        self.ray = require("ray")
        if not self.ray.is_initialized():
            self.ray.init(address=cfg.address)
        self.cfg, self.threads = cfg, threads
        self.task = self.ray.remote(run_one)

    def submit_many(self, specs: Sequence[RunSpec]) -> list[Future]:
        out = []
        for spec in specs:
            cpus, gpus = _resources(spec, self.threads, self.cfg)
            ref = self.task.options(num_cpus=cpus, num_gpus=gpus).remote(spec, self.threads)
            out.append(ref.future())
        return out

    def close(self) -> None:
        pass


class SubmititBackend:
    """The runs as one SLURM job array per batch (submitit); a thread turns finished jobs into
    futures."""

    capacity = 1 << 30
    POLL_S = 2.0

    def __init__(self, cfg: ExecutorConfig, threads: int | None, out: Path, name: str) -> None:
        submitit = require("submitit")
        folder = Path(cfg.folder) if cfg.folder else out / "submitit"
        self.executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cfg.cluster)
        self.cfg, self.threads, self.name = cfg, threads, name
        self.pending: list[tuple[Any, Future]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.poller.start()

    def submit_many(self, specs: Sequence[RunSpec]) -> list[Future]:
        if not specs:
            return []
        wants = [_resources(s, self.threads, self.cfg) for s in specs]   # one size per array
        cpus, gpus = max(c for c, _ in wants), max(g for _, g in wants)
        params: dict[str, Any] = {"timeout_min": self.cfg.time_min, "cpus_per_task": cpus,
                                  "name": f"study-{self.name}",
                                  "slurm_array_parallelism": self.cfg.array_parallelism}
        if gpus:
            params["gpus_per_node"] = gpus
        if self.cfg.partition:
            params["slurm_partition"] = self.cfg.partition
        self.executor.update_parameters(**params)
        with self.executor.batch():
            jobs = [self.executor.submit(run_one, spec, self.threads) for spec in specs]
        futures = [Future() for _ in jobs]
        with self.lock:
            self.pending += list(zip(jobs, futures, strict=True))
        return futures

    def _poll(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                jobs = list(self.pending)
            for job, fut in jobs:
                if not job.done():
                    continue
                try:
                    fut.set_result(job.result())
                except Exception as exc:      # the job itself died (killed, timed out)
                    fut.set_exception(exc)
                with self.lock:
                    self.pending.remove((job, fut))
            time.sleep(self.POLL_S)

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            for job, _ in self.pending:
                job.cancel(check=False)


# Where runs execute, by name (``[executor] kind``, ``--executor``): a factory of the backend
# from the executor's config, the study, the runs to do and the output folder.
BackendFactory = Callable[[ExecutorConfig, StudyConfig, Sequence[RunSpec], Path], Backend]
EXECUTORS: dict[str, BackendFactory] = {}


def register_executor(name: str) -> Callable[[BackendFactory], BackendFactory]:
    """Decorator: make a backend factory available as ``[executor] kind = name``."""
    def add(factory: BackendFactory) -> BackendFactory:
        EXECUTORS[name] = factory
        return factory
    return add


def list_executors() -> list[str]:
    return sorted(EXECUTORS)


def make_backend(cfg: ExecutorConfig, study: StudyConfig, specs: Sequence[RunSpec],
                 out: Path) -> Backend:
    """The backend ``cfg.kind`` names; ValueError listing the known ones for any other name."""
    factory = EXECUTORS.get(cfg.kind)
    if factory is None:
        raise ValueError(f"executor kind={cfg.kind!r}; choose one of "
                         f"{', '.join(list_executors())}")
    return factory(cfg, study, specs, out)


@register_executor("local")
def local_backend(cfg: ExecutorConfig, study: StudyConfig, specs: Sequence[RunSpec],
                  out: Path) -> Backend:
    """This machine: ``jobs`` worker processes (:func:`default_jobs`), or inline for one."""
    jobs = min(cfg.jobs or default_jobs(study, specs), max(1, len(specs)))
    if jobs == 1:
        return InlineBackend(study.threads)
    pin = any(uses_cuda(s) and s.engine != "distributed"
              and str(s.train.get("device")) == "cuda" for s in specs)
    return LocalBackend(jobs, study.threads, pin)


@register_executor("ray")
def ray_backend(cfg: ExecutorConfig, study: StudyConfig, specs: Sequence[RunSpec],
                out: Path) -> Backend:
    return RayBackend(cfg, study.threads)


@register_executor("slurm")
def slurm_backend(cfg: ExecutorConfig, study: StudyConfig, specs: Sequence[RunSpec],
                  out: Path) -> Backend:
    check_slurm(cfg)
    return SubmititBackend(cfg, study.threads, out, study.name)


def check_slurm(cfg: ExecutorConfig) -> None:
    """Refuse a SLURM executor on a machine without SLURM, unless submitit's local stand-in is
    asked for (``cluster = "local"``): submitit would otherwise fall back to running every run
    here, silently."""
    require("submitit")          # no package: say which extra installs it, first
    if cfg.cluster is None and shutil.which("sbatch") is None:
        raise SlurmMissing("--executor slurm: no SLURM on this machine (no sbatch on PATH); run "
                           "it on a SLURM login node, set [executor] cluster = \"local\" to "
                           "run the jobs as local processes, or use --executor local")


class SlurmMissing(RuntimeError):
    """The slurm executor was asked for where SLURM is not installed."""
