"""The ``mcp-tornado`` command: ``serve`` (all processes), ``router`` and ``worker`` (one each).

Examples::

    mcp-tornado serve --workers 4 --host 0.0.0.0 --port 8000
    mcp-tornado serve --shards 2                      # two router shards on this host
    mcp-tornado serve --router tcp://10.0.0.5:5555 --router tcp://10.0.0.6:5555 \
        --curve-secret-key-file keys/web1.key_secret \
        --curve-server-key-file keys/router0.key --curve-server-key-file keys/router1.key
    mcp-tornado serve --config /etc/mcp-tornado/config.toml
    mcp-tornado config --config /etc/mcp-tornado/config.toml   # what serve would run with
    mcp-tornado keys /etc/mcp-tornado/keys --name router
    mcp-tornado router --bind tcp://0.0.0.0:5555 \
        --curve-secret-key-file keys/router.key_secret --curve-allowed-dir keys/workers
    mcp-tornado worker --router tcp://10.0.0.5:5555 --port 8000 \
        --curve-secret-key-file keys/web1.key_secret --curve-server-key-file keys/router.key
    mcp-tornado token lobby --ttl 3600 --token-secret-file /etc/mcp-tornado/secret
    mcp-tornado status --json

The flags of ``serve``, ``router`` and ``worker`` are generated from the
settings Structs (:mod:`mcp_tornado.settings`): their defaults, help and checks
live there; :mod:`mcp_tornado.config` layers them over ``MCP_TORNADO_*``
variables and a TOML file.  ``serve`` hands its children their settings as
JSON in ``$MCP_TORNADO_SETTINGS``; ``router`` and ``worker`` read it when it is
set (and then take no setting flags, no file and no variables).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import msgspec

from mcp_tornado import __version__
from mcp_tornado.config import (
    COMMANDS,
    Config,
    ConfigError,
    add_flags,
    config_file,
    given_flags,
    resolve,
    to_json,
    to_toml,
)
from mcp_tornado.settings import (
    SETTINGS_ENV,
    Leaf,
    RouterSettings,
    ServeSettings,
    Settings,
    WorkerSettings,
    decode,
    default_endpoint,
    keys,
    runtime_dir,
)
from mcp_tornado.supervisor import cannot_start, report

__all__ = ["default_endpoint", "main", "parse_settings", "runtime_dir"]


class _OneLineErrors(argparse.ArgumentParser):
    """A parser whose errors are one line and exit status 2, like a bad setting's."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


class _Command(_OneLineErrors):
    """A sub-command's parser that knows which flag sets which settings."""

    settings: type[Settings]
    keys: dict[str, list[Leaf]]  # argparse dest (the key) -> the settings it sets


class _Parser(_OneLineErrors):
    commands: dict[str, _Command]  # the commands that run with settings, and ``config``


def fail(message: object) -> NoReturn:
    """Stop with one line on stderr and exit status 2 (argparse's, for a bad command line)."""
    text = str(message)
    if not text.isprintable():  # a path or value with a newline in it: still one line
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    print(f"mcp-tornado: {text}", file=sys.stderr)
    sys.exit(2)


def _parser() -> _Parser:
    description = __doc__.splitlines()[0].replace("``", "")  # help is plain text, not reST
    parser = _Parser(prog="mcp-tornado", description=description)
    parser.add_argument("--version", action="version", version=__version__)
    # Before the command, as it once was: the same as the command's own --log-level.
    parser.add_argument("--log-level", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Command)
    helps = {
        "serve": "run N workers and their routers (one, --shards N, or remote: --router), "
        "supervised",
        "router": "run the router alone",
        "worker": "run one worker alone",
        "config": "print the effective configuration of serve (or --for router/worker) as TOML, "
        "and where each value came from",
    }
    parser.commands = {}
    for command in [*COMMANDS, "config"]:
        parser.commands[command] = sub.add_parser(
            command,
            help=helps[command],
            description=helps[command][0].upper() + helps[command][1:] + ".",
        )
        parser.commands[command].settings = COMMANDS.get(command, ServeSettings)
        # config takes every command's flags; --for says whose configuration it shows.
        parser.commands[command].keys = add_flags(parser.commands[command], COMMANDS.get(command))
    parser.commands["config"].add_argument(
        "--for",
        dest="for_command",
        choices=list(COMMANDS),
        default="serve",
        help="the command whose configuration to print (default: serve)",
    )
    parser.commands["config"].add_argument(
        "--json", action="store_true", help="print JSON instead of TOML (default: TOML)"
    )

    keys = sub.add_parser(
        "keys",
        help="make a CURVE key pair for a tcp:// link between workers and the router",
        description="Write DIR/NAME.key (public: copy it) and DIR/NAME.key_secret "
        "(secret, mode 0600: keep it on this host).",
    )
    keys.add_argument("dir", type=Path, metavar="DIR", help="folder to write the pair into")
    keys.add_argument("--name", default=None, help="the pair's name (default: this host's name)")
    token = sub.add_parser(
        "token",
        help="print a signed token granting one room",
        description="Print a room token for ?room=ROOM&token=... (the secret comes from "
        "--token-secret-file or $MCP_TORNADO_TOKEN_SECRET, never the command line).",
    )
    token.add_argument("room", help="the room the token grants")
    token.add_argument(
        "--ttl", type=float, default=3600.0, help="seconds until it expires (default: 3600)"
    )
    token.add_argument(
        "--peer", default=None, help="a peer name to bind into the token (default: none)"
    )
    token.add_argument(
        "--token-secret-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="file with the secret (default: $MCP_TORNADO_TOKEN_SECRET)",
    )

    status = sub.add_parser(
        "status",
        help="ask the router how the deployment is doing",
        description="Print the router's view of the deployment: each worker, rooms, peers, "
        "messages/s. Without --router, asks the router of the `serve` running on this machine.",
    )
    status.add_argument(
        "--router", default=None, metavar="ENDPOINT", help="the router's endpoint (default: "
        "the ipc endpoint of the running `serve`)",
    )  # fmt: skip
    status.add_argument(
        "--port", type=int, default=None, help="pick the `serve` on this port (when several run)"
    )
    status.add_argument("--json", action="store_true", help="print JSON, for scripts")
    return parser


def _config(parser: _Parser, args: argparse.Namespace) -> Config[Settings]:
    """The configuration of ``args.command``: flags > env > file > defaults, checked.

    A bad value stops the command with one line naming it and its source (exit status 2).
    """
    command = parser.commands[args.command]
    flags = given_flags(command.keys, args)
    settings = command.settings
    if args.command == "config":
        settings = COMMANDS[args.for_command]
        theirs = keys(settings)
        for key in flags:
            if key not in theirs:
                fail(f"{command.keys[key][0].flag.name} is not a setting of {args.for_command}")
    try:
        return resolve(settings, flags, config_file(args))
    except ConfigError as exc:
        fail(exc)


def _settings(parser: _Parser, args: argparse.Namespace) -> Settings:
    """The settings of ``args.command``: its configuration, or ``$MCP_TORNADO_SETTINGS``.

    A child of ``serve`` takes exactly the settings serve handed it, never the
    environment's or a file's, so that it cannot disagree with its parent.
    """
    command = parser.commands[args.command]
    encoded = os.environ.get(SETTINGS_ENV) if args.command in ("router", "worker") else None
    if encoded is None:
        return _config(parser, args).settings
    if given_flags(command.keys, args) or hasattr(args, "config"):
        fail(f"${SETTINGS_ENV} is set: settings come from it, not from flags or --config")
    try:
        return decode(encoded, command.settings)
    except (OSError, ValueError, msgspec.MsgspecError) as exc:
        # Settings handed over by serve (or a deployment): restarting cannot fix them.
        cannot_start(f"bad ${SETTINGS_ENV}: {exc}")


def parse_settings(argv: Sequence[str]) -> Settings:
    """The settings ``mcp-tornado ARGV`` would run with (for ``serve``, ``router``, ``worker``)."""
    parser = _parser()
    return _settings(parser, parser.parse_args(argv))


def _url(host: str, port: int, tls: bool = False) -> str:
    """The address a browser on this machine opens for a server listening on ``host:port``."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}/" if ":" in host else f"{scheme}://{host}:{port}/"


def _router_endpoints(settings: ServeSettings) -> tuple[str, ...]:
    """The endpoints serve's workers link to, in shard order.

    Its own routers get private ipc:// paths named after the port and serve's pid;
    shard 0's is the one ``mcp-tornado status`` finds (``router-PORT-PID.ipc``).
    """
    if settings.remote_routers:
        return settings.remote_routers
    if settings.router_endpoint is not None:
        return (settings.router_endpoint,)
    base = f"ipc://{runtime_dir()}/router-{settings.worker.port}-{os.getpid()}"
    return tuple(
        f"{base}.ipc" if shard == 0 else f"{base}-shard{shard}.ipc"
        for shard in range(settings.shards)
    )


def _serve(settings: ServeSettings) -> int:
    from mcp_tornado import ports
    from mcp_tornado.settings import encode, secrets_env
    from mcp_tornado.supervisor import CANNOT_START, Supervisor, python_command

    host, port = settings.worker.host, settings.worker.port
    endpoints = _router_endpoints(settings)
    try:  # a taken port stops serve here, before any child starts (each worker checks again)
        ports.check(host, port)
    except ports.CannotStart as exc:
        print(f"mcp-tornado: {exc}", file=sys.stderr)
        return CANNOT_START
    routers, worker = settings.children(endpoints)
    # Each child gets its effective settings in its environment, never on its command
    # line; secrets are left out of them and travel each in its own variable.
    worker_env = {SETTINGS_ENV: encode(worker), **secrets_env(worker)}
    url = _url(host, port, tls=worker.certfile is not None)
    if not routers:
        where = f"remote router{'s' if len(endpoints) > 1 else ''} {', '.join(endpoints)}"
    elif len(routers) == 1:
        where = f"router {endpoints[0]}"
    else:
        where = f"{len(routers)} router shards {', '.join(endpoints)}"
    supervisor = Supervisor(
        python_command("router") if routers else None,
        [python_command("worker")] * settings.workers,
        worker.shutdown_timeout + 2,
        router_env=secrets_env(routers[0]) if routers else None,
        worker_env=worker_env,
        ready_message=f"open {url} ({settings.workers} worker"
        f"{'s' if settings.workers != 1 else ''}, {where})",
        shard_envs=[{SETTINGS_ENV: encode(router)} for router in routers],
    )
    try:
        return supervisor.run()
    finally:
        for endpoint in endpoints if routers else ():
            if endpoint.startswith("ipc://"):
                Path(endpoint.removeprefix("ipc://")).unlink(missing_ok=True)


def _router(settings: RouterSettings) -> int:
    import zmq

    # SIGHUP reloads the workers' certificates; one sent to the whole group must not
    # kill the router (the default action).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from mcp_tornado import collector
    from mcp_tornado.router.broker import Router

    router = Router(settings)
    try:
        router.bind()
    except ValueError as exc:  # a key file changed since the settings were checked
        fail(exc)
    except zmq.ZMQError as exc:  # endpoint taken or malformed, no such folder: final
        cannot_start(f"router cannot bind {settings.bind}: {zmq.strerror(exc.errno or 0)}")
    if settings.metrics_port:
        try:
            router.telemetry.serve(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            where = f"{settings.metrics_host}:{settings.metrics_port}"
            cannot_start(f"router cannot serve metrics on {where}: {exc.strerror or exc}")
    report("ready")
    collector.tune()
    router.run()
    return 0


def _worker(settings: WorkerSettings) -> int:
    from mcp_tornado.ports import CannotStart
    from mcp_tornado.worker import run_worker

    # Ignored until the worker's own handler (a certificate reload) is installed.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        run_worker(settings)
    except CannotStart as exc:
        cannot_start(exc)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from mcp_tornado import curve

    name = args.name or curve.default_key_name()
    try:
        public, secret = curve.create_keys(args.dir, name)
    except (OSError, ValueError) as exc:
        fail(exc)
    print(
        f"wrote {public} (public) and {secret} (secret, mode 0600: never copy it off this host)\n"
        f"for a router: --curve-secret-key-file {secret} --curve-allowed-dir DIR, and copy "
        f"{public.name} to every worker host (their --curve-server-key-file)\n"
        f"for a worker: --curve-secret-key-file {secret} --curve-server-key-file ROUTER.key, "
        f"and copy {public.name} into the router's --curve-allowed-dir"
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    from mcp_tornado import tokens
    from mcp_tornado.room_names import room_name_problem

    problem = room_name_problem(args.room)
    if problem is not None:
        fail(problem)
    try:
        secret = tokens.load_secret(args.token_secret_file)
    except (OSError, ValueError) as exc:
        fail(exc)
    if secret is None:
        fail(f"no secret: set ${tokens.SECRET_ENV} or pass --token-secret-file")
    print(tokens.mint(secret, args.room, args.ttl, args.peer))
    return 0


def _configure_logs(settings: Settings) -> None:
    from mcp_tornado import logs

    if isinstance(settings, ServeSettings):
        logs.configure(settings.worker.log, "serve")  # the router's are the same flags
    elif isinstance(settings, RouterSettings):
        logs.configure(settings.log, logs.process_name("router"))
    else:
        assert isinstance(settings, WorkerSettings)
        logs.configure(settings.log, logs.process_name("worker"))


def _status(args: argparse.Namespace) -> int:
    import json

    from mcp_tornado import status

    endpoint = args.router
    if endpoint is None:
        try:
            folder = runtime_dir()
        except ValueError as exc:
            fail(exc)
        found = status.serve_endpoints(folder, args.port)
        if not found:
            where = f" on port {args.port}" if args.port is not None else ""
            print(f"mcp-tornado: no running `serve`{where} found in {folder}; "
                  "give its router with --router ENDPOINT", file=sys.stderr)  # fmt: skip
            return 1
        if len(found) > 1:
            print(
                "mcp-tornado: several `serve` are running; pick one with --port:", file=sys.stderr
            )
            for serve in found:
                print(f"  --port {serve.port}  (pid {serve.pid}, router {serve.endpoint})",
                      file=sys.stderr)  # fmt: skip
            return 2
        endpoint = found[0].endpoint
    try:
        answer = status.query(endpoint)
    except status.NoAnswer as exc:
        print(f"mcp-tornado: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status.as_json(endpoint, answer), indent=2))
    else:
        print(status.render(endpoint, answer))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "token":
        sys.exit(_token(args))
    if args.command == "config":
        config = _config(parser, args)
        text = to_json(config) if args.json else to_toml(config, args.for_command)
        print(text, end="" if not args.json else "\n")
        sys.exit(0)
    if args.command == "status":
        sys.exit(_status(args))
    if args.command == "keys":
        sys.exit(_keys(args))
    settings = _settings(parser, args)  # every setting is checked before anything starts
    _configure_logs(settings)
    if isinstance(settings, ServeSettings | WorkerSettings):
        # Raise the soft open-file limit (children inherit it), or refuse to start.
        from mcp_tornado.capacity import check_fd_limit

        worker = settings.worker if isinstance(settings, ServeSettings) else settings
        problem = check_fd_limit(worker.limits.max_connections)
        if problem is not None:
            fail(problem)
    if isinstance(settings, ServeSettings):
        sys.exit(_serve(settings))
    if isinstance(settings, RouterSettings):
        sys.exit(_router(settings))
    assert isinstance(settings, WorkerSettings)
    sys.exit(_worker(settings))
