"""The study driver's loop: claim a run, hand it to a backend, commit its row (or its failure),
release the claim; wait for runs other drivers hold. Several drivers on one output folder (this
machine or others sharing the filesystem) split the work this way and none runs a run twice.
A heartbeat thread renews this driver's claims; a claim whose driver stopped renewing (killed,
host down) expires after its lease and the next driver to look takes the run over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from training.study.claims import Heartbeat, Lease, claims, release, try_claim
from training.study.config import RunSpec
from training.study.executors import Backend
from training.study.groups import Unit, as_unit, members, units
from training.study.results import InvalidRow, ResultsStore

log = logging.getLogger(__name__)

WAIT_S = 1.0      # how often a driver looks at runs other drivers hold


@dataclass
class Outcome:
    ran: int = 0                       # runs this driver executed (failed ones included)
    by_others: int = 0                 # runs another driver finished or failed meanwhile
    failures: list[dict[str, Any]] = field(default_factory=list)   # this driver's


def spec_failure(spec: RunSpec, error: str, tb: str) -> dict[str, Any]:
    """What a failed run was and why, for failures.json (the run stays out of the results)."""
    return {"run_id": spec.run_id, "mode": spec.mode, "model": spec.model,
            "algorithm": spec.algorithm, "knob": spec.knob,
            "noniid_fraction": spec.noniid_fraction, "num_partitions": spec.num_partitions,
            "seed": spec.seed, "error": error, "traceback": tb, "time": time.time()}


class _Driver:
    def __init__(self, store: ResultsStore, backend: Backend, started: float,
                 lease: Lease) -> None:
        self.store, self.backend, self.started, self.lease = store, backend, started, lease
        self.pending: dict[Future, Unit] = {}   # a run, or a seed group (groups.py)
        self.outcome = Outcome()

    def settled(self, spec: RunSpec) -> bool:
        """Finished (a readable row) or failed during this driver's time, by anyone."""
        if self.store.finished(spec.run_id):
            return True
        failed = self.store.failure(spec.run_id)
        return failed is not None and failed[0].get("time", 0.0) >= self.started

    def start_some(self, waiting: list[RunSpec]) -> list[RunSpec]:
        """Claim and submit runs up to the backend's capacity; returns the settled ones."""
        settled, batch = [], []
        room = self.backend.capacity - len(self.pending)
        for unit in units(waiting):      # runs that differ only by seed go as one unit
            if len(batch) >= room:
                break
            claimed = []
            for spec in unit:
                if spec.run_id in self.running:
                    continue
                if self.settled(spec):
                    settled.append(spec)
                elif try_claim(self.store.runs_dir, spec.run_id, self.lease):
                    if self.settled(spec):       # finished just before we claimed it
                        release(self.store.runs_dir, spec.run_id)
                        settled.append(spec)
                    else:
                        claimed.append(spec)
            if claimed:
                batch.append(as_unit(claimed))
        self.outcome.by_others += len(settled)
        if batch:
            try:
                futures = self.backend.submit_many(batch)
            except BaseException:        # e.g. Ctrl-C in an inline run: leave no live claim
                for spec in (s for unit in batch for s in members(unit)):
                    release(self.store.runs_dir, spec.run_id)
                raise
            for fut, spec in zip(futures, batch, strict=True):
                self.pending[fut] = spec
        return settled

    @property
    def running(self) -> set[str]:
        return {spec.run_id for unit in self.pending.values() for spec in members(unit)}

    def collect(self, timeout: float) -> list[RunSpec]:
        """Commit the runs that finished within ``timeout``."""
        if not self.pending:
            return []
        done, _ = wait(list(self.pending), timeout=timeout, return_when=FIRST_COMPLETED)
        finished = []
        for fut in done:
            unit = self.pending.pop(fut)
            try:
                result = fut.result()
            except Exception as exc:     # the backend lost the run (worker died, job killed)
                result = {"error": f"{type(exc).__name__}: {exc}", "traceback": ""}
            runs = members(unit)
            for spec, outcome in zip(runs, result.get("outcomes", [result] * len(runs)),
                                     strict=True):
                self.commit(spec, outcome)
                finished.append(spec)
        return finished

    def commit(self, spec: RunSpec, result: dict[str, Any]) -> None:
        self.outcome.ran += 1
        try:
            if "row" in result:
                try:
                    self.store.add(result["row"])
                    return
                except InvalidRow as exc:       # e.g. a NaN accuracy: a failure, not a row
                    result = {"error": str(exc), "traceback": ""}
            log.error("run %s (%s %s) failed: %s", spec.run_id, spec.model, spec.algorithm,
                      result["error"])
            record = spec_failure(spec, result["error"], result["traceback"])
            self.store.add_failure(record)
            self.outcome.failures.append(record)
        finally:
            release(self.store.runs_dir, spec.run_id)

    def release_all(self) -> None:
        for fut, unit in self.pending.items():
            fut.cancel()
            for spec in members(unit):
                release(self.store.runs_dir, spec.run_id)


def execute_all(todo: Sequence[RunSpec], store: ResultsStore, backend: Backend, *,
                desc: str, progress: bool = True, lease: Lease | None = None) -> Outcome:
    """Run every spec in ``todo`` that no driver has finished, sharing them with any other
    driver on the same folder; returns once each is finished or failed. ``lease`` (default
    :meth:`Lease.from_env`): how long this driver's claims outlive its last heartbeat."""
    lease = lease or Lease.from_env()
    driver = _Driver(store, backend, time.time(), lease)
    waiting = list(todo)
    bar = tqdm(total=len(todo), desc=desc, unit="run", disable=not progress)
    heartbeat = Heartbeat(store.runs_dir, lease).start()
    try:
        while waiting:
            gone = driver.start_some(waiting)
            if driver.pending:
                gone += driver.collect(timeout=WAIT_S)
            else:        # all that is left is held by other drivers: wait for them
                time.sleep(WAIT_S)
            for spec in gone:
                waiting.remove(spec)
            if progress:
                held = set(claims(store.runs_dir)) - driver.running
                bar.set_postfix(running=len(driver.pending),
                                elsewhere=sum(s.run_id in held for s in waiting),
                                failed=len(driver.outcome.failures), refresh=False)
            bar.update(len(gone))
    finally:
        try:
            driver.release_all()
        finally:
            heartbeat.stop()
            backend.close()
            bar.close()
    return driver.outcome
