"""Options built from config dataclasses (pipelines/_cli.py): defaults, types and help from the
field, override mode (a flag changes a config only when given), deprecated aliases."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from pipelines._cli import (
    NOT_GIVEN,
    FieldOption,
    add_field_options,
    apply_given,
    field_help,
    field_options,
    given_values,
)


@dataclass(frozen=True)
class Toy:
    size: int = 3                        # how many
    # where it goes
    # (two lines)
    place: str | None = None
    ratios: tuple[float, ...] = (0.5, 0.75)
    fast: bool = False
    note: str = field(default="x", metadata={"help": "from metadata"})   # not this comment
    mixed: float | int = 1               # a fraction or a count


if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True)
class Unresolved:
    where: Path | None = None            # a type only type checkers import


def parse(options, argv):
    parser = argparse.ArgumentParser()
    add_field_options(parser, options)
    return parser, parser.parse_args(argv)


def test_help_comes_from_the_fields_comment_or_metadata():
    assert field_help(Toy, "size") == "how many"
    assert field_help(Toy, "place") == "where it goes (two lines)"
    assert field_help(Toy, "note") == "from metadata"
    assert field_help(Toy, "ratios") == ""
    parser, _ = parse(field_options(Toy), [])
    text = " ".join(parser.format_help().split())
    assert "--size SIZE how many (default: 3)" in text
    assert "--ratios RATIOS (default: 0.5,0.75)" in text
    assert "--fast, --no-fast" in text


def test_fill_mode_gives_every_field_its_default_and_reads_each_type():
    options = field_options(Toy)
    _, args = parse(options, [])
    assert given_values(args, options) == dataclasses.asdict(Toy())
    _, args = parse(options, ["--size", "4", "--place", "none", "--ratios", "0.1,0.2",
                              "--fast", "--mixed", "3"])
    assert given_values(args, options) == {"size": 4, "place": None, "ratios": (0.1, 0.2),
                                           "fast": True, "note": "x", "mixed": 3}
    _, args = parse(options, ["--mixed", "0.25", "--place", "here"])
    assert (args.mixed, args.place) == (0.25, "here")


def test_override_mode_changes_only_what_was_given():
    options = field_options(Toy, override=True, flags={"size": "--count"})
    _, args = parse(options, [])
    assert args.count is NOT_GIVEN and given_values(args, options) == {}
    from_file = Toy(size=9, place="file", fast=True)
    assert apply_given(from_file, args, options) is from_file
    _, args = parse(options, ["--count", "2", "--no-fast"])
    assert apply_given(from_file, args, options) == Toy(size=2, place="file", fast=False)


def test_a_command_line_default_of_its_own_fills_even_in_override_mode():
    options = field_options(Toy, override=True, defaults={"size": 100})
    parser, args = parse(options, [])
    assert given_values(args, options) == {"size": 100}
    assert "how many (default: 100)" in " ".join(parser.format_help().split())


def test_a_new_dataclass_field_is_a_new_option():
    @dataclass(frozen=True)
    class Wider(Toy):
        depth: int = 7                   # added later

    parser, args = parse(field_options(Wider, override=True), ["--depth", "8"])
    text = " ".join(parser.format_help().split())
    assert "added later (default: 7)" in text and "how many (default: 3)" in text
    assert apply_given(Wider(), args, field_options(Wider, override=True)).depth == 8


def test_a_deprecated_alias_still_works_is_hidden_and_says_the_new_name(caplog):
    options = (FieldOption("--side", Toy, "size", aliases=("--old-size",)),)
    parser, args = parse(options, [])
    assert args.side == 3 and "--old-size" not in parser.format_help()
    with caplog.at_level(logging.WARNING, logger="pipelines._cli"):
        _, args = parse(options, ["--old-size", "5"])
    assert args.side == 5
    assert [r.getMessage() for r in caplog.records] == ["--old-size is deprecated: use --side"]
    with pytest.raises(SystemExit):
        parse(options, ["--old-size", "five"])


def test_a_field_whose_type_cannot_be_resolved_is_read_as_json_or_text():
    options = field_options(Unresolved, override=True)
    parser, args = parse(options, ["--where", "x/y"])
    assert given_values(args, options) == {"where": "x/y"}
    assert "a type only type checkers import" in parser.format_help()
