"""Small pieces shared by the command lines: ``key=value`` parameters, and options built from
config dataclass fields (:class:`FieldOption`), so defaults live in one place: the dataclass."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value``; the value is read as JSON when it parses (numbers, null, lists, dicts)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def field_default(owner: type, dotted: str) -> Any:
    """The default of a config dataclass field; ``"download.workers"``: the ``workers`` of the
    ``download`` field's default (a default_factory is called)."""
    head, *rest = dotted.split(".")
    spec = next((f for f in dataclasses.fields(owner) if f.name == head), None)
    if spec is None:
        raise KeyError(f"{owner.__name__} has no field {head!r}")
    if spec.default is not dataclasses.MISSING:
        value = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        value = spec.default_factory()
    else:
        raise ValueError(f"{owner.__name__}.{head} has no default to offer on a command line")
    for name in rest:
        value = getattr(value, name)
    return value


@dataclass(frozen=True)
class FieldOption:
    """A command-line option that sets one field of a config dataclass. Its default is read from
    the field (``show`` turns it into its command-line text), so a default changed in the
    dataclass changes the command line; ``read`` turns the parsed value into the field's."""

    flag: str
    owner: type
    field: str                                        # "per_class", "download.workers"
    help: str
    type: Callable[[str], Any] | None = None          # None: the default's own type
    choices: Sequence[str] | None = None
    show: Callable[[Any], Any] | None = None
    read: Callable[[Any], Any] | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def default(self) -> Any:
        """The field's default in command-line form (argparse applies ``type`` to a string)."""
        value = field_default(self.owner, self.field)
        return value if self.show is None or value is None else self.show(value)

    def value(self, args: argparse.Namespace) -> Any:
        value = getattr(args, self.dest)
        return value if self.read is None or value is None else self.read(value)


def add_field_options(parser: argparse.ArgumentParser, options: Iterable[FieldOption]) -> None:
    """One option per :class:`FieldOption`, default and ``(default: ...)`` from the field."""
    for option in options:
        default = option.default()
        help_text = option.help.replace("%", "%%")
        if default is not None:
            help_text += f" (default: {str(default).replace('%', '%%')})"
        if isinstance(default, bool):  # --flag / --no-flag
            parser.add_argument(option.flag, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
            continue
        parser.add_argument(option.flag, type=option.type or type(default), default=default,
                            choices=option.choices, help=help_text)


def field_values(args: argparse.Namespace, options: Iterable[FieldOption],
                 owner: type) -> dict[str, Any]:
    """Keyword arguments for ``owner`` from its options' parsed values. Dotted fields
    (``download.workers``) change a copy of that field's default (``dataclasses.replace``)."""
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for option in options:
        if option.owner is not owner:
            continue
        head, _, rest = option.field.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = option.value(args)
        else:
            flat[head] = option.value(args)
    for head, changes in nested.items():
        flat[head] = dataclasses.replace(field_default(owner, head), **changes)
    return flat
