"""training.allocator: glibc's thresholds are raised once per process, and a Trainer does it."""

import sys

import pytest

from training import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_thresholds_are_set_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(allocator, "_state", {})

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: FakeLibc())
    assert allocator.keep_freed_memory() is True
    assert allocator.keep_freed_memory() is True          # once per process
    assert calls == [(allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD),
                     (allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD)]


def test_an_allocator_without_mallopt_is_left_alone(monkeypatch):
    monkeypatch.setattr(allocator, "_state", {})

    def missing(name):
        raise OSError("no libc")

    monkeypatch.setattr(allocator.ctypes, "CDLL", missing)
    assert allocator.keep_freed_memory() is False


def test_the_real_call_succeeds_on_linux():
    if sys.platform.startswith("linux"):
        assert allocator.keep_freed_memory() is True
