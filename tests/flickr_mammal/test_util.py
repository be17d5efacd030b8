"""flickr_mammal/_util.py: torch-free helpers."""

import subprocess
import sys
import time

import pytest

from flickr_mammal._util import batched, int_or, retry_after_seconds


def test_batched_yields_full_tuples_then_the_rest_from_a_lazy_stream():
    assert list(batched((i for i in range(5)), 2)) == [(0, 1), (2, 3), (4,)]
    assert list(batched([], 3)) == []
    assert list(batched("abc", 3)) == [("a", "b", "c")]


def test_int_or_reads_numbers_and_falls_back_on_missing_or_junk():
    assert int_or("16", 0) == 16 and int_or(7.9, 0) == 7
    assert int_or(None, -1) == -1 and int_or("", 0) == 0 and int_or("3.5", -1) == -1


def test_catalog_and_its_helpers_import_without_torch():
    # The catalog chunks ids with batched; it must not drag in torch via clean.py.
    code = ("import sys, flickr_mammal._util, flickr_mammal.catalog, flickr_mammal.layout; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("7", 7.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("inf", None), ("nan", None), ("1e999", None)],
)
def test_retry_after_seconds_parsing(value, expected):
    assert retry_after_seconds(value) == expected


def test_retry_after_seconds_http_date_in_the_future():
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    assert 100 < retry_after_seconds(future) <= 121
