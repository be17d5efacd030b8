"""Cleaning on several devices: one process per device over disjoint chunks of records.

docs/reference.md §1 (the cleaning pass). Each process loads its own :class:`~flickr_mammal.
clean.Cleaner` on its device (``cuda:0``, ``cuda:1``, ...) and judges whole chunks; the parent
reads the records (the input may be a catalog cursor), hands each chunk to whichever process
asks first, and yields the judged records, which the build commits through the catalog as it
does for one device. Decisions do not depend on the device (fp32 recheck near the boundary),
so the kept set is the same whichever process judged a chunk.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import queue
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from flickr_mammal._util import batched
from flickr_mammal.clean.stage import CleanConfig, Cleaner, clean_records
from flickr_mammal.records import PhotoRecord

log = logging.getLogger(__name__)

_LIVENESS_CHECK_S = 1.0


class CleanWorkerLost(RuntimeError):
    """A cleaning process died before reporting its records (a resumed build redoes them)."""


def visible_gpus() -> list[str]:
    """``cuda:N`` for every visible GPU (honours CUDA_VISIBLE_DEVICES)."""
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def clean_on_devices(records: Iterable[PhotoRecord], image_path: Callable[[str], Path],
                     config: CleanConfig, devices: list[str], *,
                     chunk_size: int | None = None) -> Iterator[PhotoRecord]:
    """:func:`~flickr_mammal.clean.stage.clean_records` with one process per device in ``devices``.

    Yields records chunk by chunk in completion order. ``image_path`` must pickle (a
    ``Layout.image_path`` does).
    """
    if not devices:
        raise ValueError("clean_on_devices needs at least one device, e.g. ['cuda:0']")
    chunk_size = chunk_size or config.batch_size * 16
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    todo, done = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_device_main, name=f"clean-{device}", daemon=True,
                         args=(todo, done, image_path, dataclasses.replace(config, device=device)))
             for device in devices]
    for proc in procs:
        proc.start()
    in_flight, limit = 0, 2 * len(devices)  # a chunk queued behind each one being judged
    try:
        for chunk in batched(records, chunk_size):
            todo.put(list(chunk))
            in_flight += 1
            while in_flight >= limit:
                in_flight -= 1
                yield from _take(done, procs)
        while in_flight:
            in_flight -= 1
            yield from _take(done, procs)
    finally:
        for _ in procs:
            todo.put(None)
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        todo.cancel_join_thread()


def _take(done: Any, procs: list[Any]) -> list[PhotoRecord]:
    while True:
        try:
            item = done.get(timeout=_LIVENESS_CHECK_S)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                codes = ", ".join(f"{p.name}: exit code {p.exitcode}" for p in procs)
                raise CleanWorkerLost(f"a cleaning process ended early ({codes}); its records "
                                      "stay DOWNLOADED and a resumed build judges them") from None
            continue
        if isinstance(item, BaseException):
            raise item
        return item


def _device_main(todo: Any, done: Any, image_path: Callable[[str], Path],
                 config: CleanConfig) -> None:
    try:
        cleaner = Cleaner.load(config)
        while (chunk := todo.get()) is not None:
            done.put(list(clean_records(chunk, image_path, cleaner, chunk_size=len(chunk))))
    except BaseException as exc:  # weights missing, out of memory: the parent raises it
        done.put(exc)
