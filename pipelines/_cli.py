"""Small pieces shared by the command lines: ``key=value`` parameters, and options built from
config dataclass fields (:class:`FieldOption`, :func:`field_options`), so that a field's default,
type and help text live in one place: the dataclass.

An option either *fills* its field (its default is the field's: every run gets a value) or
*overrides* it (``override=True``: its default is :data:`NOT_GIVEN`, and only a flag the user gave
changes a config read from a file, :func:`apply_given`). A field's help text is its
``metadata["help"]``, else the comment written at the field (:func:`field_help`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import io
import json
import logging
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class _NotGiven:
    """The default of an overriding option: the user did not give it."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> bool:
        return False


NOT_GIVEN: Any = _NotGiven()
# an option's default taken from its field (FieldOption.default_value unset)
_FIELD = object()


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value``; the value is read as JSON when it parses (numbers, null, lists, dicts)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, json_or_text(raw)


def json_or_text(raw: str) -> Any:
    """``raw`` read as JSON when it parses (``0.5``, ``3``, ``null``, ``[1, 2]``), else itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _field(owner: type, name: str) -> dataclasses.Field[Any]:
    spec = next((f for f in dataclasses.fields(owner) if f.name == name), None)
    if spec is None:
        raise KeyError(f"{owner.__name__} has no field {name!r}")
    return spec


def _owner_of(owner: type, dotted: str) -> tuple[type, str]:
    """The dataclass that holds a dotted field, and the field's own name."""
    *path, name = dotted.split(".")
    for head in path:
        owner = type(field_default(owner, head))
    return owner, name


def field_default(owner: type, dotted: str) -> Any:
    """The default of a config dataclass field; ``"download.workers"``: the ``workers`` of the
    ``download`` field's default (a default_factory is called)."""
    head, *rest = dotted.split(".")
    spec = _field(owner, head)
    if spec.default is not dataclasses.MISSING:
        value = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        value = spec.default_factory()
    else:
        raise ValueError(f"{owner.__name__}.{head} has no default to offer on a command line")
    for name in rest:
        value = getattr(value, name)
    return value


def field_type(owner: type, dotted: str) -> Any:
    """The annotated type of a (dotted) field, resolved (``int | None``, ``tuple[float, ...]``)."""
    holder, name = _owner_of(owner, dotted)
    try:
        return typing.get_type_hints(holder)[name]
    except (NameError, TypeError):     # a name only imported for type checkers: read as JSON
        return _field(holder, name).type


@functools.cache
def _field_comments(owner: type) -> dict[str, str]:
    """Each field's comment in the class source: the comment lines right above it and the one
    after it on its line. Read from the source so the comment a reader sees next to the field is
    the option's help, with no second copy to keep in step."""
    try:
        source = textwrap.dedent(inspect.getsource(owner))
    except (OSError, TypeError):      # no source (frozen app): options go without help
        return {}
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    names = {f.name for f in dataclasses.fields(owner)}
    out: dict[str, str] = {}
    block: list[str] = []
    for number, line in enumerate(source.splitlines(), 1):
        if line.strip().startswith("#"):
            block.append(comments.get(number, ""))
            continue
        match = re.match(r" {4}(\w+)\s*:", line)     # a class-body line: four spaces in
        if match and match.group(1) in names and match.group(1) not in out:
            out[match.group(1)] = " ".join([*block, comments.get(number, "")]).strip()
        block = []
    return out


def field_help(owner: type, dotted: str) -> str:
    """A field's help text: ``metadata["help"]``, else its comment in the source of the class
    that declares it (a subclass's source holds only its own fields)."""
    holder, name = _owner_of(owner, dotted)
    spec = _field(holder, name)
    if spec.metadata.get("help"):
        return str(spec.metadata["help"])
    for cls in holder.__mro__:
        if dataclasses.is_dataclass(cls) and name in cls.__dict__.get("__annotations__", {}):
            return _field_comments(cls).get(name, "")
    return ""


def _sequence_of(item: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    def read(text: str) -> tuple[Any, ...]:
        return tuple(item(x.strip()) for x in text.split(",") if x.strip())
    return read


def _optional(read: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null") else read(text)
    return parse


def reader_for(hint: Any) -> Callable[[str], Any] | None:
    """How a command line reads a field of type ``hint``: ``int``, ``float``, ``str`` as
    themselves; ``X | None`` as X or ``none``; ``tuple[X, ...]`` as ``a,b,c``; any other type as
    JSON when it parses, else text. None for ``bool`` (a ``--flag / --no-flag`` pair)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        inner = reader_for(args[0])
        return None if inner is None else _optional(inner)
    if hint is bool:
        return None
    if hint in (int, float, str):
        return typing.cast(Callable[[str], Any], hint)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float, str):
        return _sequence_of(args[0])
    return json_or_text


def _is_flag(hint: Any) -> bool:
    """``bool`` and ``bool | None`` fields take ``--flag / --no-flag``."""
    return hint is bool or set(typing.get_args(hint)) == {bool, type(None)}


@dataclass(frozen=True)
class FieldOption:
    """A command-line option that sets one field of a config dataclass. Its default is read from
    the field (``show`` turns it into its command-line text), so a default changed in the
    dataclass changes the command line; ``read`` turns the parsed value into the field's.

    ``help`` None: :func:`field_help`. ``type`` None: from the default's type, else the field's
    annotation (:func:`reader_for`). ``override``: the default is :data:`NOT_GIVEN` (the value of
    a config file stands). ``default_value``: the command line's own default instead of the
    field's. ``aliases``: older flag names, hidden from ``--help``, that still work and log a
    deprecation warning."""

    flag: str
    owner: type
    field: str                                        # "per_class", "download.workers"
    help: str | None = None
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    show: Callable[[Any], Any] | None = None
    read: Callable[[Any], Any] | None = None
    override: bool = False
    default_value: Any = _FIELD
    aliases: tuple[str, ...] = ()

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def field_value(self) -> Any:
        """The value this option stands for when not given (the field's default, or the command
        line's own ``default_value``)."""
        if self.default_value is not _FIELD:
            return self.default_value
        return field_default(self.owner, self.field)

    def default(self) -> Any:
        """The default in command-line form (argparse applies ``type`` to a string)."""
        if self.override:
            return NOT_GIVEN
        value = self.field_value()
        return value if self.show is None or value is None else self.show(value)

    def help_text(self) -> str:
        text = self.help if self.help is not None else field_help(self.owner, self.field)
        try:
            value = self.field_value()
        except ValueError:                 # a required field: no default to show
            return text
        if value is None:
            return text
        shown = value if self.show is None else self.show(value)
        if isinstance(shown, tuple):
            shown = ",".join(map(str, shown))
        return f"{text} (default: {shown})".strip()

    def reader(self) -> Callable[[str], Any] | None:
        """How argparse reads the text (None: a ``--flag / --no-flag`` pair)."""
        default = None if self.override else self.default()
        hint = field_type(self.owner, self.field)
        if isinstance(default, bool) or _is_flag(hint):
            return None
        if self.type is not None:
            return self.type
        read = reader_for(hint)
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        if (read is json_or_text and not union and default is not None
                and not isinstance(default, tuple | list | dict)):
            return type(default)        # a class the annotation reader does not know (a Path)
        return read

    def value(self, args: argparse.Namespace) -> Any:
        value = getattr(args, self.dest)
        if value is NOT_GIVEN or value is None or self.read is None:
            return value
        return self.read(value)


class _DeprecatedAlias(argparse.Action):
    """An older name of an option: sets the same value and logs one line naming the new one."""

    def __init__(self, *args: Any, new_flag: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new_flag = new_flag

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        log.warning("%s is deprecated: use %s", option_string, self.new_flag)
        setattr(namespace, self.dest, values)


def add_field_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                      options: Iterable[FieldOption]) -> None:
    """One option per :class:`FieldOption` (on a parser or an argument group), its default and
    ``(default: ...)`` from the field."""
    for option in options:
        help_text = option.help_text().replace("%", "%%")
        default, read = option.default(), option.reader()
        if read is None:  # --flag / --no-flag
            parser.add_argument(option.flag, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        else:
            parser.add_argument(option.flag, type=read, default=default, choices=option.choices,
                                help=help_text)
        for alias in option.aliases:
            parser.add_argument(alias, dest=option.dest, action=_DeprecatedAlias,
                                new_flag=option.flag, type=read, default=default,
                                help=argparse.SUPPRESS)


def field_options(owner: type, *, override: bool = False, skip: Iterable[str] = (),
                  flags: Mapping[str, str] | None = None,
                  defaults: Mapping[str, Any] | None = None,
                  choices: Mapping[str, Sequence[str]] | None = None) -> tuple[FieldOption, ...]:
    """One :class:`FieldOption` per field of ``owner`` (but those in ``skip``), so that a field
    added to the dataclass is an option with no change to the command line. ``flags``: a flag
    name other than ``--field-name``; ``defaults``: the command line's own default for a field
    (such an option fills its field even when ``override``); ``choices``: allowed values."""
    flags, defaults, choices = flags or {}, defaults or {}, choices or {}
    left_out = set(skip)
    out = []
    for spec in dataclasses.fields(owner):
        if spec.name in left_out:
            continue
        flag = flags.get(spec.name, "--" + spec.name.replace("_", "-"))
        if spec.name in defaults:
            out.append(FieldOption(flag, owner, spec.name, choices=choices.get(spec.name),
                                   default_value=defaults[spec.name]))
        else:
            out.append(FieldOption(flag, owner, spec.name, choices=choices.get(spec.name),
                                   override=override))
    return tuple(out)


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


def given_values(args: argparse.Namespace, options: Iterable[FieldOption]) -> dict[str, Any]:
    """``field -> value`` for the options the user gave (and those that fill their field); an
    overriding option left out is left out here too."""
    values = {option.field: option.value(args) for option in options}
    return {name: value for name, value in values.items() if value is not NOT_GIVEN}


def apply_given(config: Any, args: argparse.Namespace, options: Iterable[FieldOption]) -> Any:
    """``config`` with the fields the user gave on the command line replaced (and validated
    again by the dataclass); the others keep the config's values."""
    given = given_values(args, options)
    return dataclasses.replace(config, **given) if given else config
