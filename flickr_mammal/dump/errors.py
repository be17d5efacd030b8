"""The one-line errors of the dump stage (the command line prints them and exits 2)."""

from __future__ import annotations


class DumpColumnError(ValueError):
    """The dump lacks a column the scan needs (the message names it and how to map it)."""


class DumpScanMismatch(ValueError):
    """The output folder holds a scan made with other options (flickr_mammal.dump.search)."""


class DumpFileError(ValueError):
    """A whole dump file cannot be read as its format: empty, cut short, another format. The
    message names the file and what was expected."""
