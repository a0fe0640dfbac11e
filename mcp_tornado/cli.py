"""The ``mcp-tornado`` command: ``serve`` (all processes), ``router`` and ``worker`` (one each).

Examples::

    mcp-tornado serve --workers 4 --host 0.0.0.0 --port 8000
    mcp-tornado router --bind tcp://0.0.0.0:5555
    mcp-tornado worker --router tcp://10.0.0.5:5555 --port 8000
    mcp-tornado token lobby --ttl 3600 --token-secret-file /etc/mcp-tornado/secret
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_tornado import __version__

if TYPE_CHECKING:
    from mcp_tornado.settings import Limits


def runtime_dir() -> Path:
    """Where default ipc:// endpoints live: ``$XDG_RUNTIME_DIR`` or a private temp folder."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = (
        Path(base) / "mcp-tornado"
        if base
        else Path(tempfile.gettempdir()) / f"mcp-tornado-{os.getuid()}"
    )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def default_endpoint() -> str:
    return f"ipc://{runtime_dir()}/router.ipc"


def _add_heartbeat_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=0.5,
        help="seconds between router<->worker heartbeats (default: 0.5)",
    )
    parser.add_argument(
        "--heartbeat-liveness",
        type=int,
        default=3,
        help="heartbeats missed before the other side counts as dead (default: 3)",
    )


def _add_worker_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    parser.add_argument(
        "--static-dir",
        type=Path,
        default=None,
        help="built browser client to serve at / (default: frontend/dist of this checkout)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=64 * 1024,
        help="largest client frame in bytes (default: 65536)",
    )
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=20.0,
        help="seconds between WebSocket pings to clients (default: 20)",
    )
    parser.add_argument(
        "--ping-timeout",
        type=float,
        default=20.0,
        help="seconds without a pong before a client counts as gone (default: 20)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds a graceful shutdown may take (default: 10)",
    )
    _add_limit_args(parser)


def _add_limit_args(parser: argparse.ArgumentParser) -> None:
    from mcp_tornado import settings as limits

    group = parser.add_argument_group("security and limits (see the README)")
    group.add_argument(
        "--rate-limit",
        type=float,
        default=limits.DEFAULT_RATE,
        help=f"frames per second per connection, 0: unlimited (default: {limits.DEFAULT_RATE:g})",
    )
    group.add_argument(
        "--rate-burst",
        type=int,
        default=limits.DEFAULT_BURST,
        help=f"frames a connection may send at once (default: {limits.DEFAULT_BURST})",
    )
    group.add_argument(
        "--max-room-length",
        type=int,
        default=limits.DEFAULT_MAX_ROOM_LENGTH,
        help=f"longest room name in characters (default: {limits.DEFAULT_MAX_ROOM_LENGTH})",
    )
    group.add_argument(
        "--max-connections",
        type=int,
        default=limits.DEFAULT_MAX_CONNECTIONS,
        help="WebSocket clients per worker; more get HTTP 503, 0: unlimited "
        f"(default: {limits.DEFAULT_MAX_CONNECTIONS})",
    )
    group.add_argument(
        "--max-pending-bytes",
        type=int,
        default=limits.DEFAULT_MAX_PENDING_BYTES,
        help="bytes queued for a client that does not read before it is dropped with 4008, "
        f"0: unlimited (default: {limits.DEFAULT_MAX_PENDING_BYTES})",
    )
    group.add_argument(
        "--handshake-timeout",
        type=float,
        default=limits.DEFAULT_HANDSHAKE_TIMEOUT,
        help="seconds a connection may take to send its HTTP request headers "
        f"(default: {limits.DEFAULT_HANDSHAKE_TIMEOUT:g})",
    )
    group.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="browser Origin allowed to connect (repeat, or comma-separate); '*': any "
        "(default: the server's own host, and localhost on any port)",
    )
    group.add_argument(
        "--token-secret-file",
        type=Path,
        default=None,
        help="require signed room tokens, with the secret in this file "
        "(or set $MCP_TORNADO_TOKEN_SECRET; default: no tokens)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-tornado", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run a router and N workers, supervised")
    _add_worker_args(serve)
    _add_heartbeat_args(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: number of CPUs)",
    )
    serve.add_argument(
        "--router-endpoint",
        default=None,
        help="ZeroMQ endpoint between router and workers (default: a private ipc:// path)",
    )

    router = sub.add_parser("router", help="run the router alone")
    router.add_argument(
        "--bind", default=None, help="ZeroMQ endpoint (default: ipc in runtime dir)"
    )
    router.add_argument(
        "--resync-grace",
        type=float,
        default=1.0,
        help="seconds after start reserved for workers to re-register their peers (default: 1)",
    )
    router.add_argument(
        "--expected-workers",
        type=int,
        default=0,
        help="end the resync grace as soon as this many workers registered (default: wait it out)",
    )
    _add_heartbeat_args(router)

    worker = sub.add_parser("worker", help="run one worker alone")
    worker.add_argument(
        "--router", default=None, help="router endpoint (default: ipc in runtime dir)"
    )
    _add_worker_args(worker)
    _add_heartbeat_args(worker)

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
    token.add_argument("--peer", default=None, help="a peer name to bind into the token")
    token.add_argument("--token-secret-file", type=Path, default=None, help="file with the secret")
    return parser


def _worker_flags(args: argparse.Namespace) -> list[str]:
    flags = [
        "--host", args.host,
        "--port", str(args.port),
        "--max-message-size", str(args.max_message_size),
        "--ping-interval", str(args.ping_interval),
        "--ping-timeout", str(args.ping_timeout),
        "--shutdown-timeout", str(args.shutdown_timeout),
    ]  # fmt: skip
    if args.static_dir is not None:
        flags += ["--static-dir", str(args.static_dir)]
    flags += [
        "--rate-limit", str(args.rate_limit),
        "--rate-burst", str(args.rate_burst),
        "--max-room-length", str(args.max_room_length),
        "--max-connections", str(args.max_connections),
        "--max-pending-bytes", str(args.max_pending_bytes),
        "--handshake-timeout", str(args.handshake_timeout),
    ]  # fmt: skip
    for origin in args.allowed_origin:
        flags += ["--allowed-origin", origin]
    # The token secret is never put on a command line (ps would show it): _serve
    # hands it to the workers in their environment.
    return flags


def _limits(args: argparse.Namespace) -> Limits:
    from mcp_tornado import tokens
    from mcp_tornado.origins import OriginPolicy
    from mcp_tornado.settings import Limits

    try:
        OriginPolicy(args.allowed_origin)
        return Limits(
            rate=args.rate_limit,
            burst=args.rate_burst,
            max_room_length=args.max_room_length,
            max_connections=args.max_connections,
            max_pending_bytes=args.max_pending_bytes,
            handshake_timeout=args.handshake_timeout,
            allowed_origins=tuple(args.allowed_origin),
            token_secret=tokens.load_secret(args.token_secret_file),
        )
    except (OSError, ValueError) as exc:
        sys.exit(f"mcp-tornado: {exc}")


def _heartbeat_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--heartbeat-interval", str(args.heartbeat_interval),
        "--heartbeat-liveness", str(args.heartbeat_liveness),
    ]  # fmt: skip


def _serve(args: argparse.Namespace) -> int:
    from mcp_tornado.supervisor import Supervisor, python_command
    from mcp_tornado.tokens import SECRET_ENV

    secret = _limits(args).token_secret  # validates every limit flag before starting anything
    if secret is not None:  # children inherit our environment: the workers read it there
        os.environ[SECRET_ENV] = secret.decode()

    endpoint = args.router_endpoint or f"ipc://{runtime_dir()}/router-{args.port}-{os.getpid()}.ipc"
    common = ["--log-level", args.log_level]
    router = python_command(
        *common, "router", "--bind", endpoint, "--expected-workers", str(args.workers),
        *_heartbeat_flags(args),
    )  # fmt: skip
    worker = python_command(
        *common, "worker", "--router", endpoint, *_worker_flags(args), *_heartbeat_flags(args)
    )
    supervisor = Supervisor(router, [worker] * args.workers, args.shutdown_timeout + 2)
    try:
        return supervisor.run()
    finally:
        if endpoint.startswith("ipc://"):
            Path(endpoint.removeprefix("ipc://")).unlink(missing_ok=True)


def _router(args: argparse.Namespace) -> int:
    from mcp_tornado.router.broker import Router, RouterConfig

    Router(
        RouterConfig(
            bind=args.bind or default_endpoint(),
            heartbeat_interval=args.heartbeat_interval,
            heartbeat_liveness=args.heartbeat_liveness,
            resync_grace=args.resync_grace,
            expected_workers=args.expected_workers,
        )
    ).run()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from mcp_tornado.router_link import LinkConfig
    from mcp_tornado.worker import DEFAULT_STATIC_DIR, WorkerConfig, run_worker

    run_worker(
        WorkerConfig(
            link=LinkConfig(
                endpoint=args.router or default_endpoint(),
                heartbeat_interval=args.heartbeat_interval,
                heartbeat_liveness=args.heartbeat_liveness,
            ),
            host=args.host,
            port=args.port,
            static_dir=args.static_dir or DEFAULT_STATIC_DIR,
            max_message_size=args.max_message_size,
            ping_interval=args.ping_interval,
            ping_timeout=args.ping_timeout,
            shutdown_timeout=args.shutdown_timeout,
            limits=_limits(args),
        )
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    from mcp_tornado import tokens
    from mcp_tornado.room_names import room_name_problem

    problem = room_name_problem(args.room)
    if problem is not None:
        sys.exit(f"mcp-tornado: {problem}")
    try:
        secret = tokens.load_secret(args.token_secret_file)
    except (OSError, ValueError) as exc:
        sys.exit(f"mcp-tornado: {exc}")
    if secret is None:
        sys.exit(f"mcp-tornado: no secret: set ${tokens.SECRET_ENV} or pass --token-secret-file")
    print(tokens.mint(secret, args.room, args.ttl, args.peer))
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [{args.command} %(process)d] %(message)s",
    )
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    commands = {"serve": _serve, "router": _router, "worker": _worker, "token": _token}
    sys.exit(commands[args.command](args))
