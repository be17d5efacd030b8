"""Host allocator settings for training: keep freed memory for the next step.

A step allocates and frees the same tensors every iteration (a ``[S*N, P]`` stack is 4.7 MB for
a seed group of GN-LeNet). glibc serves blocks of that size with a fresh ``mmap`` and returns
them on ``free``, and trims the heap top back to the system, so every iteration pays the page
faults (and the kernel's zeroing) of every such tensor again: up to half of Gaia's step on the
CPU. Raising the mmap and trim thresholds keeps those blocks in the heap, reused at once. Memory
a run frees stays with the process (its peak is what it holds); numbers do not change (the
tensors' alignment is PyTorch's own, 64 bytes either way).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024      # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
TRIM_THRESHOLD = 1024 * 1024 * 1024    # keep up to 1 GiB of freed heap top

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True when they are set (False
    off glibc, e.g. macOS or musl, where the system allocator is left as it is)."""
    if "done" in _state:
        return _state["done"]
    done = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            mallopt = None
        if mallopt is not None:
            done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("host allocator thresholds %s", "raised" if done else "left as they are")
    _state["done"] = done
    return done
