"""The ``mcp-tornado`` command: ``serve`` (all processes), ``router`` and ``worker`` (one each).

Examples::

    mcp-tornado serve --workers 4 --host 0.0.0.0 --port 8000
    mcp-tornado router --bind tcp://0.0.0.0:5555
    mcp-tornado worker --router tcp://10.0.0.5:5555 --port 8000
    mcp-tornado token lobby --ttl 3600 --token-secret-file /etc/mcp-tornado/secret

The flags of ``serve``, ``router`` and ``worker`` are generated from the
settings Structs (:mod:`mcp_tornado.settings`): their defaults, help and checks
live there.  ``serve`` hands its children their settings as JSON in
``$MCP_TORNADO_SETTINGS``; ``router`` and ``worker`` read it when it is set
(and then take no setting flags).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from mcp_tornado import __version__
from mcp_tornado.settings import (
    SETTINGS_ENV,
    Leaf,
    RouterSettings,
    ServeSettings,
    Settings,
    WorkerSettings,
    build,
    decode,
    default_endpoint,
    leaves,
    runtime_dir,
    value_type,
)
from mcp_tornado.supervisor import cannot_start, report

__all__ = ["default_endpoint", "main", "parse_settings", "runtime_dir"]

# The commands that run with settings, and the Struct each one's flags come from.
COMMANDS: dict[str, type[Settings]] = {
    "serve": ServeSettings,
    "router": RouterSettings,
    "worker": WorkerSettings,
}


class _Command(argparse.ArgumentParser):
    """A sub-command's parser that knows which flag sets which settings."""

    settings: type[Settings]
    paths: dict[str, list[Leaf]]  # argparse dest -> the settings it sets


class _Parser(argparse.ArgumentParser):
    commands: dict[str, _Command]  # the commands that run with settings


def fail(message: object) -> NoReturn:
    """Stop with one line on stderr and exit status 2 (argparse's, for a bad command line)."""
    print(f"mcp-tornado: {message}", file=sys.stderr)
    sys.exit(2)


def _shown(leaf: Leaf) -> str:
    if leaf.flag.shown_default is not None:
        return leaf.flag.shown_default
    if isinstance(leaf.default, float):
        return f"{leaf.default:g}"
    return str(leaf.default)


def _add_setting_flags(parser: _Command, settings: type[Settings]) -> None:
    """One flag per setting of ``settings``; a flag shared by several settings sets them all.

    Every flag defaults to "absent" (``SUPPRESS``): the defaults are the Structs'.
    """
    parser.settings = settings
    parser.paths = {}
    groups: dict[str, argparse._ArgumentGroup] = {}
    for leaf in leaves(settings):
        if leaf.path in settings.derived:
            continue
        flag = leaf.flag
        dest = flag.name.removeprefix("--").replace("-", "_")
        if dest in parser.paths:  # e.g. --heartbeat-interval: the router's and the link's
            first = parser.paths[dest][0]
            assert first.default == leaf.default, f"{flag.name}: two defaults"
            parser.paths[dest].append(leaf)
            continue
        parser.paths[dest] = [leaf]
        title = leaf.owner.cli_group
        target: Any = parser
        if title is not None:
            if title not in groups:
                groups[title] = parser.add_argument_group(title)
            target = groups[title]
        kind = value_type(leaf.owner, leaf.name)
        options: dict[str, Any] = {
            "dest": dest,
            "default": argparse.SUPPRESS,
            "help": f"{flag.help} (default: {_shown(leaf)})",
            "metavar": flag.metavar,
        }
        if kind is tuple or getattr(kind, "__origin__", None) is tuple:  # repeated flag
            options["action"] = "append"
        else:
            options["type"] = flag.cli_type or kind
        target.add_argument(flag.name, **options)


def _parser() -> _Parser:
    description = __doc__.splitlines()[0].replace("``", "")  # help is plain text, not reST
    parser = _Parser(prog="mcp-tornado", description=description)
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: INFO)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Command)
    helps = {
        "serve": "run a router and N workers, supervised",
        "router": "run the router alone",
        "worker": "run one worker alone",
    }
    parser.commands = {}
    for command, settings in COMMANDS.items():
        parser.commands[command] = sub.add_parser(
            command, help=helps[command], description=helps[command].capitalize() + "."
        )
        _add_setting_flags(parser.commands[command], settings)

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
    return parser


def _settings(parser: _Parser, args: argparse.Namespace) -> Settings:
    """The settings of ``args.command``: from its flags, or from ``$MCP_TORNADO_SETTINGS``.

    A bad value stops the command with one line naming the flag (exit status 2).
    """
    command = parser.commands[args.command]
    given = [dest for dest in command.paths if hasattr(args, dest)]
    encoded = os.environ.get(SETTINGS_ENV) if args.command != "serve" else None
    if encoded is not None:
        if given:
            fail(f"${SETTINGS_ENV} is set: settings come from it, not from flags")
        try:
            return decode(encoded, command.settings)
        except (OSError, ValueError, msgspec.MsgspecError) as exc:
            # Settings handed over by serve (or a deployment): restarting cannot fix them.
            cannot_start(f"bad ${SETTINGS_ENV}: {exc}")
    try:
        values: dict[str, Any] = {}
        for dest in given:
            value = getattr(args, dest)
            if isinstance(value, list):  # a repeated flag
                value = tuple(value)
            for leaf in command.paths[dest]:
                values[leaf.path] = value if leaf.flag.load is None else leaf.flag.load(value)
        return build(command.settings, values)
    except (OSError, ValueError, msgspec.MsgspecError) as exc:
        fail(exc)


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


def _serve(settings: ServeSettings, log_level: str) -> int:
    from mcp_tornado import ports
    from mcp_tornado.settings import encode
    from mcp_tornado.supervisor import CANNOT_START, Supervisor, python_command
    from mcp_tornado.tokens import SECRET_ENV

    host, port = settings.worker.host, settings.worker.port
    endpoint = settings.router_endpoint or f"ipc://{runtime_dir()}/router-{port}-{os.getpid()}.ipc"
    try:  # a taken port stops serve here, before any child starts (each worker checks again)
        ports.check(host, port)
    except ports.CannotStart as exc:
        print(f"mcp-tornado: {exc}", file=sys.stderr)
        return CANNOT_START
    router, worker = settings.children(endpoint)
    # Each child gets its effective settings in its environment, never on its command
    # line; the token secret is left out of them and travels in its own variable.
    worker_env = {SETTINGS_ENV: encode(worker)}
    secret = worker.limits.token_secret
    if secret is not None:
        worker_env[SECRET_ENV] = secret.decode()
    common = ["--log-level", log_level]
    url = _url(host, port, tls=worker.certfile is not None)
    supervisor = Supervisor(
        python_command(*common, "router"),
        [python_command(*common, "worker")] * settings.workers,
        worker.shutdown_timeout + 2,
        router_env={SETTINGS_ENV: encode(router)},
        worker_env=worker_env,
        ready_message=f"open {url} ({settings.workers} worker"
        f"{'s' if settings.workers != 1 else ''}, router {endpoint})",
    )
    try:
        return supervisor.run()
    finally:
        if endpoint.startswith("ipc://"):
            Path(endpoint.removeprefix("ipc://")).unlink(missing_ok=True)


def _router(settings: RouterSettings) -> int:
    import zmq

    # SIGHUP reloads the workers' certificates; one sent to the whole group must not
    # kill the router (the default action).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from mcp_tornado.router.broker import Router

    router = Router(settings)
    try:
        router.bind()
    except zmq.ZMQError as exc:  # endpoint taken or malformed, no such folder: final
        cannot_start(f"router cannot bind {settings.bind}: {zmq.strerror(exc.errno or 0)}")
    report("ready")
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


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [{args.command} %(process)d] %(message)s",
    )
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    if args.command == "token":
        sys.exit(_token(args))
    settings = _settings(parser, args)  # every setting is checked before anything starts
    if isinstance(settings, ServeSettings | WorkerSettings):
        # Raise the soft open-file limit (children inherit it), or refuse to start.
        from mcp_tornado.capacity import check_fd_limit

        worker = settings.worker if isinstance(settings, ServeSettings) else settings
        problem = check_fd_limit(worker.limits.max_connections)
        if problem is not None:
            fail(problem)
    if isinstance(settings, ServeSettings):
        sys.exit(_serve(settings, args.log_level))
    if isinstance(settings, RouterSettings):
        sys.exit(_router(settings))
    assert isinstance(settings, WorkerSettings)
    sys.exit(_worker(settings))
