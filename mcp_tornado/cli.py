"""The ``mcp-tornado`` command: ``serve`` (all processes), ``router`` and ``worker`` (one each).

Examples::

    mcp-tornado serve --workers 4 --host 0.0.0.0 --port 8000
    mcp-tornado router --bind tcp://0.0.0.0:5555
    mcp-tornado worker --router tcp://10.0.0.5:5555 --port 8000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mcp_tornado import __version__


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
    return flags


def _heartbeat_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--heartbeat-interval", str(args.heartbeat_interval),
        "--heartbeat-liveness", str(args.heartbeat_liveness),
    ]  # fmt: skip


def _serve(args: argparse.Namespace) -> int:
    from mcp_tornado.supervisor import Supervisor, python_command

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
    from router.broker import Router, RouterConfig

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
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s [{args.command} %(process)d] %(message)s",
    )
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
    commands = {"serve": _serve, "router": _router, "worker": _worker}
    sys.exit(commands[args.command](args))
