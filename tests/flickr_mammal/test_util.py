"""flickr_mammal/_util.py: torch-free helpers."""

import subprocess
import sys

from flickr_mammal._util import batched


def test_batched_yields_full_tuples_then_the_rest_from_a_lazy_stream():
    assert list(batched((i for i in range(5)), 2)) == [(0, 1), (2, 3), (4,)]
    assert list(batched([], 3)) == []
    assert list(batched("abc", 3)) == [("a", "b", "c")]


def test_catalog_and_its_helpers_import_without_torch():
    # The catalog chunks ids with batched; it must not drag in torch via clean.py.
    code = ("import sys, flickr_mammal._util, flickr_mammal.catalog, flickr_mammal.layout; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
