"""Every setting of the router and the workers, defined once: type, default, check, flag, help.

Each setting is one field of a frozen msgspec Struct::

    rate: Annotated[float, Flag("--rate-limit", "frames per second ...", low=0, off=True)] = 50.0

The field gives the type and the default; its :class:`Flag` gives the command
line flag, the help text and the bounds that :meth:`Settings.__post_init__`
checks (with a message naming the flag).  ``mcp-tornado`` generates its flags
from these definitions (:func:`leaves`), so a new setting is one new field.

``serve`` composes :class:`WorkerSettings` and :class:`RouterSettings`
(:class:`ServeSettings`) and hands each child its effective settings as JSON in
``$MCP_TORNADO_SETTINGS`` (:func:`encode`/:func:`decode`), without flags and
without secrets: the token secret travels in ``$MCP_TORNADO_TOKEN_SECRET``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import stat
import tempfile
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, TypeVar

import msgspec

from mcp_tornado import tokens
from mcp_tornado.origins import HostPolicy, OriginPolicy

SETTINGS_ENV: Final = "MCP_TORNADO_SETTINGS"  # a child's settings, JSON, set by ``serve``

DEFAULT_STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "frontend" / "dist"


def runtime_dir() -> Path:
    """Where default ipc:// endpoints live: ``$XDG_RUNTIME_DIR`` or a private temp folder.

    The folder must be ours alone: anyone who can write to it can move the
    router's socket away and bind an impostor in its place.  One that already
    exists is refused (``ValueError``, one line at the command line) unless it
    is a real directory (not a symlink), owned by the current user, with no
    group or other permissions.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = (
        Path(base) / "mcp-tornado"
        if base
        else Path(tempfile.gettempdir()) / f"mcp-tornado-{os.getuid()}"
    )
    with contextlib.suppress(FileExistsError):  # a file or a symlink there: refused below
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private_dir(path)
    return path


def check_private_dir(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is a directory of ours, closed to everyone else."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        problem = "is a symlink"
    elif not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.getuid():
        problem = f"is owned by uid {info.st_uid}, not by us (uid {os.getuid()})"
    elif info.st_mode & 0o077:
        problem = f"has mode {stat.S_IMODE(info.st_mode):04o}, open to group or others"
    else:
        return
    raise ValueError(
        f"unsafe runtime directory {path}: it {problem}; "
        "remove it, or set $XDG_RUNTIME_DIR to a private one"
    )


def default_endpoint() -> str:
    return f"ipc://{runtime_dir()}/router.ipc"


@dataclasses.dataclass(frozen=True)
class Flag:
    """How a setting is given on the command line, and which values it accepts."""

    name: str  # "--rate-limit"
    help: str
    low: float | None = None  # the smallest value allowed (NaN is refused too)
    above: bool = False  # the value must be greater than ``low``, not equal
    high: float | None = None  # the largest value allowed
    off: bool = False  # 0 turns the feature off (said in the error message)
    shown_default: str | None = None  # the help shows this instead of the default's value
    metavar: str | None = None
    cli_type: Callable[[str], Any] | None = None  # the flag's argparse type, if not the field's
    # Turns the flag's value into the field's; called with None when the flag is absent.
    load: Callable[[Any], Any] | None = None
    secret: bool = False  # never encoded for a child process (nor shown in a repr)

    def check(self, value: Any) -> None:
        """Raise ``ValueError`` naming the flag if ``value`` is out of bounds."""
        if not isinstance(value, int | float) or isinstance(value, bool):
            return
        if self.low is not None and not (value > self.low if self.above else value >= self.low):
            if self.off and self.low == 0:
                raise ValueError(f"{self.name} must be 0 (off) or positive, not {value}")
            if self.above and self.low == 0:
                raise ValueError(f"{self.name} must be positive, not {value}")
            raise ValueError(f"{self.name} must be at least {self.low:g}, not {value}")
        if self.high is not None and not value <= self.high:
            raise ValueError(f"{self.name} must be at most {self.high:g}, not {value}")


class Settings(msgspec.Struct, frozen=True):
    """Base of the settings Structs: checks every field against its :class:`Flag`."""

    cli_group: ClassVar[str | None] = None  # the --help section of these flags
    derived: ClassVar[frozenset[str]] = frozenset()  # paths set by the program, not by flags

    def __post_init__(self) -> None:
        for name, flag in flags_of(type(self)).items():
            flag.check(getattr(self, name))

    def __repr__(self) -> str:
        secret = {name for name, flag in flags_of(type(self)).items() if flag.secret}
        shown = (
            f"{f.name}=<hidden>" if f.name in secret else f"{f.name}={getattr(self, f.name)!r}"
            for f in msgspec.structs.fields(self)
        )
        return f"{type(self).__name__}({', '.join(shown)})"


# Settings that the router and the workers share (one flag sets both in ``serve``).
HeartbeatInterval = Annotated[
    float,
    Flag("--heartbeat-interval", "seconds between router<->worker heartbeats", low=0, above=True),
]
HeartbeatLiveness = Annotated[
    int,
    Flag("--heartbeat-liveness", "heartbeats missed before the other side counts as dead", low=1),
]
HighWaterMark = Annotated[
    int,
    Flag("--hwm", "ZeroMQ high-water mark between router and workers, in batches; 0: none", low=0),
]
_HEARTBEAT_INTERVAL: Final = 0.5
_HEARTBEAT_LIVENESS: Final = 3
_HWM: Final = 100_000


class LinkSettings(Settings, frozen=True):
    """A worker's link to the router: where it is and how patient to be with it."""

    endpoint: Annotated[
        str,
        Flag("--router", "router endpoint", shown_default="ipc in runtime dir", metavar="ENDPOINT"),
    ] = msgspec.field(default_factory=default_endpoint)
    heartbeat_interval: HeartbeatInterval = _HEARTBEAT_INTERVAL
    heartbeat_liveness: HeartbeatLiveness = _HEARTBEAT_LIVENESS
    hwm: HighWaterMark = _HWM
    max_backlog: Annotated[
        int,
        Flag(
            "--max-backlog",
            "messages a worker queues while the router cannot keep up; more are refused",
            low=1,
        ),
    ] = 200_000


class LimitSettings(Settings, frozen=True):
    """The hardening knobs of a worker (see the README's "Security and limits")."""

    cli_group: ClassVar[str | None] = "security and limits (see the README)"

    rate: Annotated[
        float,
        Flag("--rate-limit", "frames per second per connection, 0: unlimited", low=0, off=True),
    ] = 50.0
    burst: Annotated[int, Flag("--rate-burst", "frames a connection may send at once")] = 200
    max_room_length: Annotated[
        int, Flag("--max-room-length", "longest room name in characters", low=1)
    ] = 64
    max_connections: Annotated[
        int,
        Flag(
            "--max-connections",
            "connections per worker, of every kind (WebSockets, handshakes, plain HTTP); "
            "more get HTTP 503, 0: unlimited",
            low=0,
            off=True,
        ),
    ] = 10_000
    max_connections_per_ip: Annotated[
        int,
        Flag(
            "--max-connections-per-ip",
            "connections per worker from one client address, of every kind; more get "
            "HTTP 429, 0: unlimited (behind a reverse proxy, every client is its address)",
            low=0,
            off=True,
        ),
    ] = 256
    max_pending_bytes: Annotated[
        int,
        Flag(
            "--max-pending-bytes",
            "bytes queued for a client that does not read before it is dropped with 4008, "
            "0: unlimited",
            low=0,
            off=True,
        ),
    ] = 1024 * 1024
    handshake_timeout: Annotated[
        float,
        Flag(
            "--handshake-timeout",
            "seconds a connection may take to send its HTTP request headers",
            low=0,
            off=True,
        ),
    ] = 10.0
    allowed_origins: Annotated[
        tuple[str, ...],
        Flag(
            "--allowed-origin",
            "browser Origin allowed to connect (repeat, or comma-separate); '*': any",
            shown_default="the server's own host, and localhost on any port",
            metavar="ORIGIN",
        ),
    ] = ()
    allowed_hosts: Annotated[
        tuple[str, ...],
        Flag(
            "--allowed-host",
            "a name clients reach this server by, checked against the upgrade's Host header "
            "(DNS rebinding): HOST, HOST:PORT, *.DOMAIN; '*': any (repeat, or comma-separate)",
            shown_default="IP addresses, localhost, --host and the --allowed-origin hosts",
            metavar="HOST",
        ),
    ] = ()
    token_secret: Annotated[
        bytes | None,
        Flag(
            "--token-secret-file",
            "require signed room tokens, with the secret in this file "
            f"(or set ${tokens.SECRET_ENV})",
            shown_default="no tokens",
            metavar="PATH",
            cli_type=Path,
            load=tokens.load_secret,
            secret=True,
        ),
    ] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate > 0 and self.burst < 1:
            raise ValueError(f"--rate-burst must be at least 1, not {self.burst}")
        OriginPolicy(self.allowed_origins)
        HostPolicy(self.allowed_hosts, allowed_origins=self.allowed_origins)
        if self.token_secret is not None:
            tokens.check_secret(self.token_secret)


class WorkerSettings(Settings, frozen=True):
    """Everything a worker needs."""

    link: LinkSettings = msgspec.field(default_factory=LinkSettings)
    host: Annotated[str, Flag("--host", "address to listen on")] = "127.0.0.1"
    port: Annotated[int, Flag("--port", "port to listen on", low=0, high=65535)] = 8000
    static_dir: Annotated[
        Path | None,
        Flag(
            "--static-dir",
            "built browser client to serve at /",
            shown_default="frontend/dist of this checkout",
        ),
    ] = DEFAULT_STATIC_DIR
    max_message_size: Annotated[
        int, Flag("--max-message-size", "largest client frame in bytes", low=1)
    ] = 64 * 1024
    ping_interval: Annotated[
        float,
        Flag("--ping-interval", "seconds between WebSocket pings to clients", low=0, above=True),
    ] = 20.0
    ping_timeout: Annotated[
        float,
        Flag(
            "--ping-timeout",
            "seconds without a pong before a client counts as gone",
            low=0,
            above=True,
        ),
    ] = 20.0
    shutdown_timeout: Annotated[
        float, Flag("--shutdown-timeout", "seconds a graceful shutdown may take", low=0)
    ] = 10.0
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)


class RouterSettings(Settings, frozen=True):
    """How a router listens and how patient it is with workers."""

    bind: Annotated[
        str,
        Flag("--bind", "ZeroMQ endpoint", shown_default="ipc in runtime dir", metavar="ENDPOINT"),
    ] = msgspec.field(default_factory=default_endpoint)
    heartbeat_interval: HeartbeatInterval = _HEARTBEAT_INTERVAL
    heartbeat_liveness: HeartbeatLiveness = _HEARTBEAT_LIVENESS
    resync_grace: Annotated[
        float,
        Flag(
            "--resync-grace",
            "seconds after start reserved for workers to re-register their peers",
            low=0,
        ),
    ] = 1.0
    expected_workers: Annotated[
        int,
        Flag(
            "--expected-workers",
            "end the resync grace as soon as this many workers registered, 0: wait it out",
            low=0,
        ),
    ] = 0
    hwm: HighWaterMark = _HWM
    resume_grace: Annotated[
        float,
        Flag(
            "--resume-grace",
            "seconds a resumable peer (?resumable=1) whose socket dropped keeps its slot "
            "for a resume, 0: resume off",
            low=0,
            off=True,
        ),
    ] = 10.0
    resume_hold_messages: Annotated[
        int,
        Flag(
            "--resume-hold-messages",
            "messages held for a suspended peer; one more frees its slot (its partner gets leave)",
            low=1,
        ),
    ] = 256
    resume_hold_bytes: Annotated[
        int,
        Flag(
            "--resume-hold-bytes",
            "bytes of messages held for a suspended peer; more free its slot",
            low=1,
        ),
    ] = 1024 * 1024


class ServeSettings(Settings, frozen=True):
    """``serve``: N workers and a router, supervised, with the workers' and router's settings."""

    # Set by serve itself (ServeSettings.children), from router_endpoint and workers.
    derived: ClassVar[frozenset[str]] = frozenset(
        {"worker.link.endpoint", "router.bind", "router.expected_workers"}
    )

    workers: Annotated[
        int, Flag("--workers", "worker processes", shown_default="number of CPUs", low=1)
    ] = msgspec.field(default_factory=lambda: os.cpu_count() or 1)
    router_endpoint: Annotated[
        str | None,
        Flag(
            "--router-endpoint",
            "ZeroMQ endpoint between router and workers",
            shown_default="a private ipc:// path",
            metavar="ENDPOINT",
        ),
    ] = None
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    router: RouterSettings = msgspec.field(default_factory=RouterSettings)

    def children(self, endpoint: str) -> tuple[RouterSettings, WorkerSettings]:
        """The router's and every worker's settings, meeting at ``endpoint``."""
        router = msgspec.structs.replace(self.router, bind=endpoint, expected_workers=self.workers)
        link = msgspec.structs.replace(self.worker.link, endpoint=endpoint)
        return router, msgspec.structs.replace(self.worker, link=link)


# --- introspection --------------------------------------------------------------

S = TypeVar("S", bound=Settings)
_UnionType = type(int | None)


@functools.cache
def _hints(cls: type[Settings]) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@functools.cache
def flags_of(cls: type[Settings]) -> dict[str, Flag]:
    """Field name -> :class:`Flag`, for the fields of ``cls`` that are settings (not Structs)."""
    flags: dict[str, Flag] = {}
    for name, hint in _hints(cls).items():
        if typing.get_origin(hint) is Annotated:
            found = [m for m in hint.__metadata__ if isinstance(m, Flag)]
            if found:
                flags[name] = found[0]
    return flags


def value_type(cls: type[Settings], name: str) -> Any:
    """The plain type of field ``name`` (no ``Annotated``, no ``| None``)."""
    hint = _hints(cls)[name]
    if typing.get_origin(hint) is Annotated:
        hint = typing.get_args(hint)[0]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, _UnionType) and len(args) == 1:
        return args[0]
    return hint


def nested(cls: type[Settings]) -> dict[str, type[Settings]]:
    """Field name -> Settings class, for the fields of ``cls`` that are groups of settings."""
    return {
        name: hint
        for name, hint in _hints(cls).items()
        if isinstance(hint, type) and issubclass(hint, Settings)
    }


class Leaf(typing.NamedTuple):
    """One setting inside a (nested) settings class."""

    path: str  # "worker.limits.rate"
    owner: type[Settings]  # the class that defines it (LimitSettings)
    name: str  # its field name there ("rate")
    flag: Flag
    default: Any  # msgspec.NODEFAULT when it has a default factory


def leaves(cls: type[Settings], prefix: str = "") -> Iterator[Leaf]:
    """Every setting of ``cls``, depth first, in field order."""
    groups = nested(cls)
    flags = flags_of(cls)
    for field in msgspec.structs.fields(cls):
        path = prefix + field.name
        if field.name in groups:
            yield from leaves(groups[field.name], path + ".")
        else:
            yield Leaf(path, cls, field.name, flags[field.name], field.default)


def build(cls: type[S], values: dict[str, Any], prefix: str = "") -> S:
    """``cls`` from values keyed by dotted path; absent ones take their defaults.

    Absent settings with a :attr:`Flag.load` are loaded (``load(None)``: the
    token secret from the environment).  Raises ``ValueError`` for a bad value.
    """
    kwargs: dict[str, Any] = {}
    groups = nested(cls)
    flags = flags_of(cls)
    for field in msgspec.structs.fields(cls):
        path = prefix + field.name
        if field.name in groups:
            kwargs[field.name] = build(groups[field.name], values, path + ".")
        elif path in values:
            kwargs[field.name] = values[path]
        elif (load := flags[field.name].load) is not None:
            kwargs[field.name] = load(None)
    return cls(**kwargs)


# --- handing settings to a child process ------------------------------------------


def _without_secrets(settings: S) -> S:
    changes: dict[str, Any] = {}
    cls = type(settings)
    for name, flag in flags_of(cls).items():
        if flag.secret:
            changes[name] = None
    for name in nested(cls):
        changes[name] = _without_secrets(getattr(settings, name))
    return msgspec.structs.replace(settings, **changes)


def _with_loaded_secrets(settings: S) -> S:
    changes: dict[str, Any] = {}
    cls = type(settings)
    for name, flag in flags_of(cls).items():
        if flag.secret and flag.load is not None:
            changes[name] = flag.load(None)
    for name in nested(cls):
        changes[name] = _with_loaded_secrets(getattr(settings, name))
    return msgspec.structs.replace(settings, **changes)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise NotImplementedError(type(obj))


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError(kind)


def encode(settings: Settings) -> str:
    """``settings`` as JSON for a child process, with every secret left out."""
    return msgspec.json.encode(_without_secrets(settings), enc_hook=_enc_hook).decode()


def decode(text: str, cls: type[S]) -> S:
    """The settings :func:`encode` wrote; secrets are loaded from the environment.

    Raises ``ValueError`` (a bad value: the message names the flag) or
    ``msgspec.ValidationError``.
    """
    settings = msgspec.json.decode(text, type=cls, dec_hook=_dec_hook)
    return _with_loaded_secrets(settings)
