"""Where settings come from: flags > ``MCP_TORNADO_*`` environment > a TOML file > defaults.

Every setting of :mod:`mcp_tornado.settings` has one *key*, derived from its
flag and used three ways: the flag ``--rate-limit``, the environment variable
``MCP_TORNADO_RATE_LIMIT`` and the key ``rate_limit`` of the (flat) TOML file
given with ``--config FILE`` (or ``$MCP_TORNADO_CONFIG``).  A key shared by
several settings (``heartbeat_interval``: the router's and the workers') sets
them all, as its flag does.  Repeatable flags are TOML arrays and
comma-separated in the environment; a secret's key is the path of the file
holding it (``token_secret_file``), and the secret itself may also come from
its own variable (``$MCP_TORNADO_TOKEN_SECRET``, at the environment's rank).

One file serves a whole deployment: ``serve``, ``router`` and ``worker`` each
take the keys that are theirs and ignore the others' (``bind`` is the
router's), while a key or a ``MCP_TORNADO_*`` variable that no command knows is
an error.  Every error is one :class:`ConfigError` line naming the source and
the key (``config.toml: rate_limit: must be 0 (off) or positive, not -1.0``).

Usage::

    parser = argparse.ArgumentParser()
    keys = add_flags(parser, WorkerSettings)          # every setting's flag, and --config
    args = parser.parse_args(argv)
    config = resolve(WorkerSettings, given_flags(keys, args), config_file(args))
    config.settings                                   # the effective WorkerSettings
    config.origins["rate_limit"]                      # Origin("env", "MCP_TORNADO_RATE_LIMIT")
    print(to_toml(config))                            # what ``mcp-tornado config`` prints

A new field of a settings Struct needs nothing here: its flag, variable, key,
checks and README row follow from its :class:`~mcp_tornado.settings.Flag`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Generic, Literal, NamedTuple

import msgspec

from mcp_tornado.settings import (
    ENV_PREFIX,
    SETTINGS_ENV,
    Leaf,
    RouterSettings,
    S,
    ServeSettings,
    Settings,
    WorkerSettings,
    build,
    keys,
    value_type,
)
from mcp_tornado.supervisor import CHILD_ENV, GENERATION_ENV, SLOT_ENV, STATUS_FD_ENV

CONFIG_ENV: Final = "MCP_TORNADO_CONFIG"  # the config file, when --config is not given

# The commands that run with settings, and the Struct each one's flags come from.
COMMANDS: Final[dict[str, type[Settings]]] = {
    "serve": ServeSettings,
    "router": RouterSettings,
    "worker": WorkerSettings,
}

# MCP_TORNADO_* variables that are not settings: set by serve for its children, or
# read by the tests (MCP_TORNADO_BIN) and the client's dev server (MCP_TORNADO_URL).
# The secrets' own variables (Flag.secret_env) are added by known_env().
INTERNAL_ENV: Final = frozenset(
    {
        SETTINGS_ENV,
        STATUS_FD_ENV,
        CHILD_ENV,
        SLOT_ENV,
        GENERATION_ENV,
        CONFIG_ENV,
        "MCP_TORNADO_BIN",
        "MCP_TORNADO_URL",
    }
)

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})

Kind = Literal["flag", "env", "file", "default"]


class ConfigError(ValueError):
    """A configuration that cannot run: one line naming its source and key."""

    def __init__(self, message: str) -> None:
        # One line, whatever a value held (a path or a variable with a newline in it).
        if not message.isprintable():
            message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        super().__init__(message)


class Origin(NamedTuple):
    """Where a key's value came from: ``kind`` and its ``where`` (flag, variable, file)."""

    kind: Kind
    where: str = ""

    def __str__(self) -> str:
        return "default" if self.kind == "default" else f"from {self.kind} {self.where}"

    def problem(self, key: str, message: str) -> ConfigError:
        """``message`` about ``key`` (without its flag) as one line naming this source."""
        if self.kind == "flag":
            return ConfigError(f"{self.where} {message}")
        if self.kind == "env":
            return ConfigError(f"${self.where}: {message}")
        if self.kind == "file":
            return ConfigError(f"{self.where}: {key}: {message}")
        return ConfigError(f"{key}: {message}")


@dataclasses.dataclass(frozen=True)
class Config(Generic[S]):
    """The effective settings of a command, and where each of its keys came from."""

    settings: S
    values: dict[str, Any]  # key -> its value as a config file spells it (a secret: its path)
    origins: dict[str, Origin]  # key -> where that value came from
    ignored: dict[str, Origin]  # keys given for other commands (``bind`` to a worker)


# --- the keys -----------------------------------------------------------------------


def all_keys() -> dict[str, list[Leaf]]:
    """Every key of every command (``serve``'s first), with the settings it sets."""
    found: dict[str, list[Leaf]] = {}
    for cls in COMMANDS.values():
        for key, shared in keys(cls).items():
            found.setdefault(key, shared)
    return found


def known_env(known: Mapping[str, list[Leaf]] | None = None) -> frozenset[str]:
    """Every ``MCP_TORNADO_*`` variable the program reads (settings, secrets, internal)."""
    found = set(INTERNAL_ENV)
    for shared in (all_keys() if known is None else known).values():
        flag = shared[0].flag
        found.add(flag.env)
        if flag.secret_env is not None:
            found.add(flag.secret_env)
    return frozenset(found)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _literal_choices(kind: Any) -> tuple[Any, ...] | None:
    return typing.get_args(kind) if typing.get_origin(kind) is Literal else None


def _is_tuple(kind: Any) -> bool:
    return kind is tuple or typing.get_origin(kind) is tuple


def _input_type(leaf: Leaf) -> Any:
    """The type a key's value has before :attr:`Flag.load` (a secret's: its path)."""
    return leaf.flag.cli_type or value_type(leaf.owner, leaf.name)


# --- flags --------------------------------------------------------------------------


def add_flags(parser: argparse.ArgumentParser, cls: type[Settings] | None) -> dict[str, list[Leaf]]:
    """Add a flag per key of ``cls`` (and ``--config``) to ``parser``; return the keys.

    ``cls`` None: the keys of every command (``mcp-tornado config``).

    Every flag defaults to "absent" (``SUPPRESS``): the defaults are the Structs'.
    Flags of settings in a :attr:`Settings.cli_group` go to that --help section.
    """
    parser.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"TOML file of settings, overridden by ${ENV_PREFIX}* variables and flags "
        f"(default: ${CONFIG_ENV}, else none)",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    found = all_keys() if cls is None else keys(cls)
    for key, shared in found.items():
        leaf = shared[0]
        assert all(other.default == leaf.default for other in shared), f"{key}: two defaults"
        flag = leaf.flag
        title = leaf.owner.cli_group
        target: Any = parser
        if title is not None:
            if title not in groups:
                groups[title] = parser.add_argument_group(title)
            target = groups[title]
        kind = _input_type(leaf)
        options: dict[str, Any] = {
            "dest": key,
            "default": argparse.SUPPRESS,
            "help": f"{flag.help} (default: {shown_default(leaf)})",
            "metavar": flag.metavar,
        }
        if _is_tuple(kind):  # a repeated flag
            options["action"] = "append"
        elif kind is bool:
            options["action"] = argparse.BooleanOptionalAction
            del options["metavar"]
        elif (choices := _literal_choices(kind)) is not None:
            options["choices"] = choices
        else:
            options["type"] = kind
        target.add_argument(flag.name, **options)
    return found


def shown_default(leaf: Leaf) -> str:
    """A setting's default as --help and the README show it."""
    if leaf.flag.shown_default is not None:
        return leaf.flag.shown_default
    if isinstance(leaf.default, bool):
        return "on" if leaf.default else "off"
    if isinstance(leaf.default, float):
        return f"{leaf.default:g}"
    if isinstance(leaf.default, tuple):
        return ", ".join(map(str, leaf.default)) or "none"
    return str(leaf.default)


def given_flags(found: Mapping[str, list[Leaf]], args: argparse.Namespace) -> dict[str, Any]:
    """Key -> value of the flags given in ``args`` (a repeated flag's values as a tuple)."""
    given: dict[str, Any] = {}
    for key in found:
        if hasattr(args, key):
            value = getattr(args, key)
            given[key] = tuple(value) if isinstance(value, list) else value
    return given


def config_file(args: argparse.Namespace) -> Path | None:
    """The file of ``--config``, else of ``$MCP_TORNADO_CONFIG``, else none."""
    if hasattr(args, "config"):
        path: Path = args.config
        return path
    named = os.environ.get(CONFIG_ENV, "")
    return Path(named) if named else None


# --- reading values -----------------------------------------------------------------


def _describe(kind: Any) -> str:
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "a string"
    if kind is Path:
        return "a path (a string)"
    if _is_tuple(kind):
        return "an array of strings"
    if (choices := _literal_choices(kind)) is not None:
        return "one of " + ", ".join(map(repr, choices))
    return getattr(kind, "__name__", str(kind))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _toml_kind(raw: Any) -> str:
    for kind, word in _TOML_KINDS:
        if isinstance(raw, kind):
            return word
    return "the value"


_TOML_KINDS: Final = (
    (bool, "the boolean"),
    (int, "the integer"),
    (float, "the number"),
    (str, "the string"),
    (list, "the array"),
    (dict, "the table"),
)


def _from_toml(kind: Any, raw: Any) -> Any:
    """``raw`` (as ``tomllib`` read it) as a value of ``kind``; ``ValueError`` if it is not one."""
    wrong = ValueError(f"expected {_describe(kind)}, not {_toml_kind(raw)} {_shown(raw)}")
    if kind is bool or kind is str:
        if not isinstance(raw, kind):
            raise wrong
        return raw
    if kind is int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise wrong
        return raw
    if kind is float:
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            raise wrong
        return float(raw)
    if kind is Path:
        if not isinstance(raw, str) or not raw:
            raise wrong
        return Path(raw)
    if _is_tuple(kind):
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise wrong
        return tuple(raw)
    if (choices := _literal_choices(kind)) is not None:
        if raw not in choices:
            raise wrong
        return raw
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError:
        raise wrong from None


def _from_env(kind: Any, raw: str) -> Any:
    """``raw`` (an environment variable's text) as a value of ``kind``."""
    wrong = ValueError(f"expected {_describe(kind)}, not {_shown(raw)}")
    if kind is bool:
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise ValueError(f"expected true or false (1/0, yes/no, on/off), not {_shown(raw)}")
        return word in _TRUE
    if _is_tuple(kind):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if (choices := _literal_choices(kind)) is not None:
        if raw not in choices:
            raise wrong
        return raw
    try:
        return kind(raw)
    except (ValueError, TypeError, ArithmeticError):
        raise wrong from None


def read_file(path: Path, known: Mapping[str, list[Leaf]]) -> dict[str, Any]:
    """The keys of the TOML file at ``path``; :class:`ConfigError` if unreadable or unknown.

    ``known``: every key a command may take (:func:`all_keys`).
    """
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for key in table:
        if key not in known:
            hint = _suggest(key, list(known))
            if isinstance(table[key], dict):
                hint += "; keys are flat, without [sections]"
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
    return table


def read_env(environ: Mapping[str, str], known: Mapping[str, list[Leaf]]) -> dict[str, str]:
    """The ``MCP_TORNADO_*`` settings in ``environ`` by key; :class:`ConfigError` if unknown.

    ``known``: every key a command may take (:func:`all_keys`).  Empty
    variables count as unset.
    """
    by_env = {shared[0].flag.env: key for key, shared in known.items()}
    names = known_env(known)
    found: dict[str, str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in INTERNAL_ENV:
            continue
        if name not in names:
            raise ConfigError(f"${name}: no such setting{_suggest(name, sorted(names))}")
        if name in by_env and raw:
            try:
                raw.encode()
            except UnicodeEncodeError:
                raise ConfigError(f"${name}: not valid UTF-8") from None
            found[by_env[name]] = raw
    return found


# --- resolving ----------------------------------------------------------------------


def resolve(
    cls: type[S],
    flags: Mapping[str, Any],
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config[S]:
    """The settings of ``cls`` from ``flags`` > ``environ`` > the file at ``path`` > defaults.

    ``flags`` are keyed by key (:func:`given_flags`); ``environ`` defaults to
    ``os.environ`` (a secret's own variable is always read from there, by its
    :attr:`Flag.load`).  Raises :class:`ConfigError`.
    """
    environ = os.environ if environ is None else environ
    ours = keys(cls)
    known = {**all_keys(), **ours}
    table = read_file(path, known) if path is not None else {}
    env = read_env(environ, known)
    values: dict[str, Any] = {}  # key -> value before Flag.load
    origins: dict[str, Origin] = {}
    for key, shared in ours.items():
        flag = shared[0].flag
        kind = _input_type(shared[0])
        try:
            if key in flags:
                origin, value = Origin("flag", flag.name), flags[key]
            elif key in env:
                origin = Origin("env", flag.env)
                value = _from_env(kind, env[key])
            elif flag.secret_env is not None and environ.get(flag.secret_env, "").strip():
                origin, value = Origin("env", flag.secret_env), None  # load(None) reads it
            elif key in table:
                origin = Origin("file", str(path))
                raw = table[key]
                if _is_tuple(kind) and isinstance(raw, str) and flag.load is not None:
                    # A list its load joins (the routers, the routers' keys): one string
                    # too, commas allowed, as a single router or key always was.
                    value = _from_env(kind, raw)
                else:
                    value = _from_toml(kind, raw)
            else:
                continue
        except ValueError as exc:
            raise origin.problem(key, str(exc)) from None
        values[key], origins[key] = value, origin

    settings_values: dict[str, Any] = {}
    for key, shared in ours.items():
        origin = origins.get(key, Origin("default"))
        origins[key] = origin
        for leaf in shared:
            if leaf.flag.load is not None:
                try:
                    loaded = leaf.flag.load(values.get(key))
                except OSError as exc:
                    raise origin.problem(
                        key, f"cannot read {exc.filename}: {exc.strerror or exc}"
                    ) from None
                except ValueError as exc:
                    if origin.kind == "default":  # e.g. the default endpoint's folder: not a key's
                        raise ConfigError(str(exc)) from None
                    raise origin.problem(key, str(exc)) from None
                settings_values[leaf.path] = loaded
                if loaded is None:
                    origins[key] = Origin("default")
            elif key in values:
                settings_values[leaf.path] = values[key]
    try:
        settings = build(cls, settings_values)
    except (ValueError, msgspec.MsgspecError) as exc:
        raise _attributed(str(exc), ours, origins) from None

    shown: dict[str, Any] = {}
    for key, shared in ours.items():
        leaf = shared[0]
        shown[key] = values.get(key) if leaf.flag.secret else _value_at(settings, leaf)
    ignored = {key: Origin("file", str(path)) for key in table if key not in ours}
    ignored.update((key, Origin("env", known[key][0].flag.env)) for key in env if key not in ours)
    return Config(settings, shown, origins, ignored)


def _value_at(settings: Settings, leaf: Leaf) -> Any:
    value: Any = settings
    for part in leaf.path.split("."):
        value = getattr(value, part)
    return value


def _attributed(
    message: str, ours: Mapping[str, list[Leaf]], origins: Mapping[str, Origin]
) -> ConfigError:
    """A check's message (it starts with a flag, see settings.py) as one line naming its source."""
    named = [
        key
        for key, shared in ours.items()
        if message.startswith(shared[0].flag.name)
        and message[len(shared[0].flag.name) : len(shared[0].flag.name) + 1] in (" ", ":")
    ]
    if not named or origins[named[0]].kind == "flag":
        return ConfigError(message)
    key = named[0]
    rest = message[len(ours[key][0].flag.name) :].lstrip(": ")
    return origins[key].problem(key, rest)


# --- printing -----------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """``value`` (a setting's) written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    # JSON's string escapes are TOML's, but for DEL, which TOML wants escaped too.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(config: Config[Any], command: str = "serve") -> str:
    """The effective configuration as a TOML file, each key commented with its origin.

    Fed back with ``--config``, it gives the same settings (a secret given by
    its own variable still needs that variable: it is never written).
    """
    lines = [
        f"# mcp-tornado {command}: the effective configuration, and where each value came from.",
        f"# Use it with: mcp-tornado {command} --config FILE",
        "",
    ]
    ours = keys(type(config.settings))
    for key, shared in ours.items():
        flag, value, origin = shared[0].flag, config.values[key], config.origins[key]
        if flag.secret:
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}  # secret <set>, {origin}")
            elif origin.kind == "env":
                lines.append(f"# {key}: secret <set>, {origin} (never written here)")
            else:
                lines.append(f"# {key}: secret not set")
        elif value is None:
            lines.append(f"# {key}: not set (default: {shown_default(shared[0])})")
        else:
            lines.append(f"{key} = {toml_value(value)}  # {origin}")
    for key, origin in config.ignored.items():
        lines.append(f"# {key}: ignored by {command} ({origin})")
    return "\n".join(lines) + "\n"


def to_json(config: Config[Any]) -> str:
    """The effective configuration as JSON: key -> value (secrets ``"<set>"``) and origin."""
    out: dict[str, dict[str, Any]] = {}
    ours = keys(type(config.settings))
    for key, shared in ours.items():
        value = config.values[key]
        if shared[0].flag.secret:
            value = "<set>" if _value_at(config.settings, shared[0]) is not None else None
        elif isinstance(value, Path):
            value = str(value)
        origin = config.origins[key]
        out[key] = {"value": value, "source": origin.kind, "from": origin.where or None}
    return json.dumps(out, indent=2, default=str)
