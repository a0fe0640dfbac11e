"""Every setting of the router and the workers, defined once: type, default, check, flag, help.

Each setting is one field of a frozen msgspec Struct::

    rate: Annotated[float, Flag("--rate-limit", "frames per second ...", low=0, off=True)] = 50.0

The field gives the type and the default; its :class:`Flag` gives the command
line flag, the help text and the bounds that :meth:`Settings.__post_init__`
checks (with a message that starts with the flag, so that
:mod:`mcp_tornado.config` can name the key and its source instead).
``mcp-tornado`` generates its flags from these definitions (:func:`leaves`),
and the flag's name gives the setting's environment variable and config file
key (:attr:`Flag.env`, :attr:`Flag.key`, :func:`keys`), so a new setting is one
new field.

``serve`` composes :class:`WorkerSettings` and :class:`RouterSettings`
(:class:`ServeSettings`) and hands each child its effective settings as JSON in
``$MCP_TORNADO_SETTINGS`` (:func:`encode`/:func:`decode`), without flags and
without secrets: each travels in its :attr:`Flag.secret_env`
(:func:`secrets_env`; the token secret in ``$MCP_TORNADO_TOKEN_SECRET``).
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

from mcp_tornado import curve, ice, tls, tokens
from mcp_tornado.origins import HostPolicy, OriginPolicy
from mcp_tornado.proxies import parse_networks

ENV_PREFIX: Final = "MCP_TORNADO_"  # of every setting's environment variable
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


MAX_SHARDS: Final = 64  # router shards one deployment may list


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
    # The environment variable holding the secret itself (``load(None)`` reads it);
    # ``serve`` hands a child the effective secret in it.
    secret_env: str | None = None

    @property
    def key(self) -> str:
        """The setting's name in a config file: ``--rate-limit`` -> ``rate_limit``."""
        return self.name.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        """The setting's environment variable: ``--rate-limit`` -> ``MCP_TORNADO_RATE_LIMIT``."""
        return ENV_PREFIX + self.key.upper()

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

    @classmethod
    def derive(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (by dotted path) with the derived settings :func:`build` can know.

        So that a nested group checks itself with them rather than a placeholder.
        """
        return values

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
# CURVE on a tcp:// link (mcp_tornado/curve.py): the router's and the workers' flags.
CurveSecretKeyFile = Annotated[
    Path | None,
    Flag(
        "--curve-secret-key-file",
        "this process's CURVE certificate with its secret key (NAME.key_secret from "
        "`mcp-tornado keys`): encrypts and authenticates a tcp:// router link",
        shown_default="none",
        metavar="PATH",
    ),
]
Insecure = Annotated[
    bool,
    Flag(
        "--insecure",
        "allow a tcp:// router link without CURVE: plain text, and anything that reaches "
        "the router's port can act as a worker",
    ),
]
_HEARTBEAT_INTERVAL: Final = 0.5
_HEARTBEAT_LIVENESS: Final = 3
_HWM: Final = 100_000


LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS: Final = ("text", "json")


class LogSettings(Settings, frozen=True):
    """How a process logs (:mod:`mcp_tornado.logs`); in ``serve`` one flag sets every process's."""

    cli_group: ClassVar[str | None] = "logging (see the README's Operations)"

    level: Annotated[
        str, Flag("--log-level", "DEBUG, INFO, WARNING, ERROR or CRITICAL", metavar="LEVEL")
    ] = "INFO"
    format: Annotated[
        str,
        Flag(
            "--log-format",
            "text (for people) or json (one object per line, for log collectors)",
            metavar="FORMAT",
        ),
    ] = "text"
    payloads: Annotated[
        bool,
        Flag(
            "--log-payloads",
            "let log lines show what clients relay (SDP holds IP addresses); "
            "otherwise only a message's type and length",
            shown_default="off",
        ),
    ] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.level.upper() not in LOG_LEVELS:
            raise ValueError(
                f"--log-level must be one of {', '.join(LOG_LEVELS)}, not {self.level!r}"
            )
        if self.format not in LOG_FORMATS:
            raise ValueError(f"--log-format must be text or json, not {self.format!r}")


def _join_endpoints(value: tuple[str, ...] | str | None) -> str:
    """``--router`` as given (repeated, comma-separated, or absent) as ``LinkSettings.endpoint``."""
    if value is None:
        return default_endpoint()
    return _joined(value)


def _join_remote_routers(value: tuple[str, ...] | str | None) -> str | None:
    """``serve --router`` as given as ``ServeSettings.routers``; absent: None (its own router)."""
    return (_joined(value) or None) if value is not None else None


def _joined(value: tuple[str, ...] | str) -> str:
    items = (value,) if isinstance(value, str) else value
    return ",".join(part.strip() for item in items for part in item.split(",") if part.strip())


def _split(endpoints: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in endpoints.split(",") if item.strip())


def _paths(value: tuple[str, ...] | str | None) -> tuple[Path, ...]:
    """``--curve-server-key-file`` as given (repeated, comma-separated, or absent) as paths."""
    if value is None:
        return ()
    return tuple(Path(item) for item in _split(_joined(value)))


class LinkSettings(Settings, frozen=True):
    """A worker's link to the router: where it is and how patient to be with it."""

    # Comma-separated when there are several router shards (see :attr:`endpoints`).
    endpoint: Annotated[
        str,
        Flag(
            "--router",
            "router endpoint; with router shards, every shard's in shard order "
            "(repeat, or comma-separate), the same list on every worker",
            shown_default="ipc in runtime dir",
            metavar="ENDPOINT",
            cli_type=tuple[str, ...],
            load=_join_endpoints,
        ),
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
    curve_secret_key_file: CurveSecretKeyFile = None
    # One file for every shard, or one per shard in --router order (see server_key_file).
    curve_server_key_file: Annotated[
        tuple[Path, ...],
        Flag(
            "--curve-server-key-file",
            "the router's public CURVE certificate (its NAME.key), for a tcp:// router link; "
            "with router shards, one for all or one per shard in --router order (repeat)",
            shown_default="none",
            metavar="PATH",
            cli_type=tuple[str, ...],
            load=_paths,
        ),
    ] = ()
    insecure: Insecure = False

    def __post_init__(self) -> None:
        super().__post_init__()
        endpoints = self.endpoints
        if not endpoints:
            raise ValueError("--router: no router endpoint given")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError(f"--router: an endpoint is listed twice in {self.endpoint!r}")
        if len(endpoints) > MAX_SHARDS:
            raise ValueError(f"--router: at most {MAX_SHARDS} router shards, not {len(endpoints)}")
        keys = len(self.curve_server_key_file)
        if keys > 1 and keys != len(endpoints):
            raise ValueError(
                f"--curve-server-key-file: {keys} given for {len(endpoints)} --router "
                f"endpoint{'s' if len(endpoints) != 1 else ''}: give one for every shard, "
                "or one per shard in --router order"
            )
        for shard, endpoint in enumerate(endpoints):
            curve.check_link(
                endpoint, self.curve_secret_key_file, self.server_key_file(shard), self.insecure
            )

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every router shard's endpoint, in shard order (one without shards)."""
        return _split(self.endpoint)

    def server_key_file(self, shard: int) -> Path | None:
        """The public certificate of router shard ``shard``: its own, or the one for all."""
        files = self.curve_server_key_file
        if not files:
            return None
        return files[shard] if len(files) > 1 else files[0]


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
            "HTTP 429, 0: unlimited (WebSockets through a --trusted-proxy count per "
            "forwarded client address)",
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
    trusted_proxies: Annotated[
        tuple[str, ...],
        Flag(
            "--trusted-proxy",
            "a reverse proxy (address or CIDR range) whose X-Forwarded-For/Forwarded header "
            "names the client (repeat, or comma-separate)",
            shown_default="none: the TCP peer is the client",
            metavar="CIDR",
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
            secret_env=tokens.SECRET_ENV,
        ),
    ] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate > 0 and self.burst < 1:
            raise ValueError(f"--rate-burst must be at least 1, not {self.burst}")
        # A check's message starts with its flag: the configuration names the key and its source.
        try:
            OriginPolicy(self.allowed_origins)
        except ValueError as exc:
            raise ValueError(f"--allowed-origin: {exc}") from None
        try:
            HostPolicy(self.allowed_hosts, allowed_origins=self.allowed_origins)
        except ValueError as exc:
            raise ValueError(f"--allowed-host: {exc}") from None
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ValueError(f"--trusted-proxy: {exc}") from None
        if self.token_secret is not None:
            tokens.check_secret(self.token_secret)


class IceSettings(Settings, frozen=True):
    """The STUN and TURN servers handed to joining peers (:mod:`mcp_tornado.ice`)."""

    cli_group: ClassVar[str | None] = "TURN and STUN (see the README)"

    turn_uris: Annotated[
        tuple[str, ...],
        Flag(
            "--turn-uri",
            "TURN server for joining peers, turn:HOST[:PORT][?transport=udp|tcp] or turns:... "
            "(repeat, or comma-separate); needs --turn-secret-file",
            shown_default="none",
            metavar="URI",
        ),
    ] = ()
    stun_uris: Annotated[
        tuple[str, ...],
        Flag(
            "--stun-uri",
            "STUN server for joining peers, stun:HOST[:PORT] or stuns:... "
            "(repeat, or comma-separate)",
            shown_default="none",
            metavar="URI",
        ),
    ] = ()
    turn_secret: Annotated[
        bytes | None,
        Flag(
            "--turn-secret-file",
            "the TURN server's shared secret (coturn's static-auth-secret) is in this file "
            f"(or set ${ice.SECRET_ENV})",
            shown_default="none",
            metavar="PATH",
            cli_type=Path,
            load=ice.load_secret,
            secret=True,
            secret_env=ice.SECRET_ENV,
        ),
    ] = None
    turn_ttl: Annotated[
        float,
        Flag(
            "--turn-ttl",
            "seconds a TURN credential handed to a peer can start new relays",
            low=1,
            metavar="SECONDS",
        ),
    ] = ice.DEFAULT_TTL

    def __post_init__(self) -> None:
        super().__post_init__()
        ice.check_turn_uris(self.turn_uris)
        ice.check_stun_uris(self.stun_uris)
        if self.turn_secret is not None:
            ice.check_secret(self.turn_secret)
        turn = ice.split_uris(self.turn_uris)
        if turn and self.turn_secret is None:
            raise ValueError(
                f"--turn-uri needs the TURN secret: --turn-secret-file or ${ice.SECRET_ENV}"
            )
        if self.turn_secret is not None and not turn:
            raise ValueError(
                f"a TURN secret is set (--turn-secret-file or ${ice.SECRET_ENV}) but no --turn-uri"
            )


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
    certfile: Annotated[
        Path | None,
        Flag(
            "--certfile",
            "serve https:// and wss:// with this certificate chain (PEM, leaf first; "
            "reloaded on SIGHUP)",
            shown_default="plain http:// and ws://",
            metavar="PATH",
        ),
    ] = None
    keyfile: Annotated[
        Path | None,
        Flag(
            "--keyfile",
            "the certificate's private key (PEM, unencrypted; only its path is passed on)",
            shown_default="none",
            metavar="PATH",
        ),
    ] = None
    limits: LimitSettings = msgspec.field(default_factory=LimitSettings)
    ice: IceSettings = msgspec.field(default_factory=IceSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        tls.check_pair(self.certfile, self.keyfile)


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
    shard: Annotated[
        int,
        Flag(
            "--shard",
            "this router's place (from 0) in the workers' ordered --router list of shards",
            low=0,
        ),
    ] = 0
    shards: Annotated[
        int,
        Flag(
            "--shards",
            "how many router shards the workers list; a worker with another map is refused",
            low=1,
            high=MAX_SHARDS,
        ),
    ] = 1
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    metrics_port: Annotated[
        int,
        Flag(
            "--metrics-port",
            "serve Prometheus /metrics of the whole deployment on this port, 0: off",
            low=0,
            high=65535,
            off=True,
        ),
    ] = 0
    metrics_host: Annotated[
        str, Flag("--metrics-host", "address the router serves /metrics on")
    ] = "127.0.0.1"
    curve_secret_key_file: CurveSecretKeyFile = None
    curve_allowed_dir: Annotated[
        Path | None,
        Flag(
            "--curve-allowed-dir",
            "folder of the public CURVE certificates (NAME.key) of the workers this router "
            "accepts on a tcp:// link; read at every handshake",
            shown_default="none",
            metavar="DIR",
        ),
    ] = None
    insecure: Insecure = False
    max_peers_per_worker: Annotated[
        int,
        Flag(
            "--max-peers-per-worker",
            "peers (and so rooms) one worker may hold at the router; a worker's own "
            "--max-connections lowers it",
            low=1,
        ),
    ] = 100_000
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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shard >= self.shards:
            raise ValueError(
                f"--shard must be below --shards ({self.shards}): shards count from 0, "
                f"not {self.shard}"
            )
        curve.check_router(
            self.bind, self.curve_secret_key_file, self.curve_allowed_dir, self.insecure
        )


_REMOTE_ALLOWED_DIR: Final = (
    "--curve-allowed-dir: a router's setting, and serve --router runs no router "
    "(give the workers --curve-secret-key-file and --curve-server-key-file)"
)


class ServeSettings(Settings, frozen=True):
    """``serve``: N workers and their routers, supervised, with the workers' and routers' settings.

    Which routers, from two settings (a mix of them is refused, one line):

    * neither: one router of its own, on a private ipc:// endpoint (or ``--router-endpoint``);
    * ``--shards N``: N router shards of its own, shard ``I`` on a private ipc:// endpoint
      of its own, each supervised and restarted; every worker links to all, in order;
    * ``--router ENDPOINT`` (repeated: the shards, in order): no router of its own, the
      workers link to routers elsewhere (a worker host), with the workers' CURVE flags.

    :meth:`children` gives each router shard and every worker its settings.
    """

    # Set by serve itself (ServeSettings.children), from the endpoints it links.
    derived: ClassVar[frozenset[str]] = frozenset(
        {
            "worker.link.endpoint",
            "router.bind",
            "router.expected_workers",
            "router.shard",
            "router.shards",
        }
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
    # Comma-separated, like LinkSettings.endpoint; None: serve runs its own routers.
    routers: Annotated[
        str | None,
        Flag(
            "--router",
            "router endpoint; with router shards, every shard's in shard order (repeat, or "
            "comma-separate), the same list on every worker. serve: run no router, link the "
            "workers to these (a worker host)",
            shown_default="serve: its own router; worker: ipc in runtime dir",
            metavar="ENDPOINT",
            cli_type=tuple[str, ...],
            load=_join_remote_routers,
        ),
    ] = None
    shards: Annotated[
        int,
        Flag(
            "--shards",
            "how many router shards there are (a worker with another map is refused). serve: "
            "runs them on this host, each on a private ipc:// endpoint, workers linked to all",
            low=1,
            high=MAX_SHARDS,
        ),
    ] = 1
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    router: RouterSettings = msgspec.field(default_factory=RouterSettings)

    @classmethod
    def derive(cls, values: dict[str, Any]) -> dict[str, Any]:
        # With remote routers the workers' link is checked against them (keys per
        # shard), and the router serve does not run takes no part in it: the shared
        # --curve-secret-key-file is the workers' key, not a router's half pair.
        routers = values.get("routers")
        if not routers:
            return values
        if values.get("router.curve_allowed_dir") is not None:
            raise ValueError(_REMOTE_ALLOWED_DIR)
        return {**values, "worker.link.endpoint": routers, "router.curve_secret_key_file": None}

    def __post_init__(self) -> None:
        super().__post_init__()
        remote = self.remote_routers
        if remote:
            self._check_remote(remote)
        elif self.shards > 1 and self.router_endpoint is not None:
            raise ValueError(
                "--router-endpoint: one router's endpoint, but --shards runs several: "
                "serve gives each shard a private ipc:// endpoint"
            )
        metrics = self.router.metrics_port
        if metrics and metrics + self.shards - 1 > 65535:
            raise ValueError(
                f"--metrics-port: shard I serves /metrics on {metrics}+I, past 65535 "
                f"with --shards {self.shards}"
            )
        if remote or self.router_endpoint is not None:  # the link is checked with them
            try:
                self.children(remote or (self.router_endpoint or "",))
            except ValueError as exc:  # named after the children's flags: name ours
                problem = str(exc)
                if not remote:
                    for flag in ("--bind", "--router"):
                        if problem.startswith(flag + ":"):
                            problem = "--router-endpoint" + problem[len(flag) :]
                raise ValueError(problem) from None

    def _check_remote(self, remote: tuple[str, ...]) -> None:
        if self.router_endpoint is not None:
            raise ValueError(
                "--router-endpoint: the endpoint of serve's own router, but --router runs "
                "none (the workers link to remote routers): give one or the other"
            )
        if self.shards not in (1, len(remote)):
            raise ValueError(
                f"--shards: {self.shards}, but --router lists {len(remote)} "
                f"router{'s' if len(remote) != 1 else ''}"
            )
        # Router settings that could only matter to a router of its own: refused, not ignored.
        if self.router.curve_allowed_dir is not None:
            raise ValueError(_REMOTE_ALLOWED_DIR)
        if self.router.metrics_port:
            raise ValueError(
                "--metrics-port: the routers serve /metrics, and serve --router runs none: "
                "scrape the routers"
            )

    @property
    def remote_routers(self) -> tuple[str, ...]:
        """The remote routers' endpoints (``--router``), in shard order; empty: its own."""
        return _split(self.routers or "")

    def children(
        self, endpoints: tuple[str, ...]
    ) -> tuple[tuple[RouterSettings, ...], WorkerSettings]:
        """Each router shard's settings (none with remote routers) and every worker's.

        The workers link to ``endpoints`` in shard order; serve's own shard ``I``
        binds ``endpoints[I]`` (and serves /metrics on ``--metrics-port`` + I).
        """
        link = msgspec.structs.replace(self.worker.link, endpoint=",".join(endpoints))
        worker = msgspec.structs.replace(self.worker, link=link)
        if self.remote_routers:
            return (), worker
        metrics = self.router.metrics_port
        routers = tuple(
            msgspec.structs.replace(
                self.router,
                bind=endpoint,
                shard=shard,
                shards=len(endpoints),
                expected_workers=self.workers,
                metrics_port=metrics + shard if metrics else 0,
            )
            for shard, endpoint in enumerate(endpoints)
        )
        return routers, worker


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


def keys(cls: type[Settings]) -> dict[str, list[Leaf]]:
    """Key (``rate_limit``) -> the settings it sets, for every key of ``cls``, in field order.

    A key is a flag, an environment variable and a config file key at once
    (:attr:`Flag.key`); one shared by several settings (``heartbeat_interval``:
    the router's and the link's) sets them all.  Derived settings have none.
    """
    found: dict[str, list[Leaf]] = {}
    for leaf in leaves(cls):
        if leaf.path not in cls.derived:
            found.setdefault(leaf.flag.key, []).append(leaf)
    return found


def build(cls: type[S], values: dict[str, Any], prefix: str = "") -> S:
    """``cls`` from values keyed by dotted path; absent ones take their defaults.

    Absent settings with a :attr:`Flag.load` are loaded (``load(None)``: the
    token secret from the environment).  Raises ``ValueError`` for a bad value.
    """
    if not prefix:
        values = cls.derive(values)
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


def _drop_secrets(fields: dict[str, Any], cls: type[Settings]) -> None:
    """Blank the secrets in ``fields``, the builtins of a ``cls``.

    On builtins rather than with ``structs.replace``: a secretless Struct may
    not pass its own checks (a TURN URI needs its secret).
    """
    for name, flag in flags_of(cls).items():
        if flag.secret:
            fields[name] = None
    for name, group in nested(cls).items():
        _drop_secrets(fields[name], group)


def _load_secrets_into(fields: Any, cls: type[Settings]) -> None:
    """Put the secrets of ``cls`` (from the environment) into its decoded JSON ``fields``.

    Before the Structs are built, so that their checks see them (a TURN URI
    without its secret is refused).
    """
    if not isinstance(fields, dict):
        return  # not an object: msgspec.convert says so
    for name, flag in flags_of(cls).items():
        if flag.secret and flag.load is not None:
            fields[name] = flag.load(None)
    for name, group in nested(cls).items():
        _load_secrets_into(fields.setdefault(name, {}), group)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    raise NotImplementedError(type(obj))


def _dec_hook(kind: type, obj: Any) -> Any:
    if kind is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError(kind)


def secrets_env(settings: Settings) -> dict[str, str]:
    """Each secret of ``settings`` in its :attr:`Flag.secret_env`, ``""`` for one not set.

    A child started with these (and :func:`encode`'s JSON) loads exactly these
    secrets, whatever its inherited environment held.
    """
    found: dict[str, str] = {}
    cls = type(settings)
    for name, flag in flags_of(cls).items():
        if flag.secret and flag.secret_env is not None:
            value = getattr(settings, name)
            found[flag.secret_env] = "" if value is None else os.fsdecode(value)
    for name in nested(cls):
        found.update(secrets_env(getattr(settings, name)))
    return found


def encode(settings: Settings) -> str:
    """``settings`` as JSON for a child process, with every secret left out."""
    fields = msgspec.to_builtins(settings, enc_hook=_enc_hook)
    _drop_secrets(fields, type(settings))
    return msgspec.json.encode(fields).decode()


def decode(text: str, cls: type[S]) -> S:
    """The settings :func:`encode` wrote; secrets are loaded from the environment.

    Raises ``ValueError`` (a bad value: the message names the flag) or
    ``msgspec.ValidationError``.
    """
    fields = msgspec.json.decode(text)
    _load_secrets_into(fields, cls)
    return msgspec.convert(fields, cls, dec_hook=_dec_hook)
