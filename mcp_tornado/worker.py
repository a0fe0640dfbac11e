"""A worker process: signaling WebSockets and Tornado's HTTP server on one port, before the router.

Usage::

    run_worker(WorkerSettings(host="127.0.0.1", port=8000, link=LinkSettings("ipc:///run/r.ipc")))

Several workers can share one port (``SO_REUSEPORT``); a worker starts
listening once the router has welcomed it.  Its
:class:`~mcp_tornado.listener.Listener` gives each upgrade to
``/ws/signal/`` a :class:`~mcp_tornado.connection.Connection` whose handler is
a :class:`~mcp_tornado.peer.Peer`, and every other request (the browser
client, ``/healthz``, ``/readyz``) to Tornado (:mod:`mcp_tornado.web`).  Peers reach the
router through the worker's :class:`~mcp_tornado.hub.Hub` and its
:class:`~mcp_tornado.router_link.RouterLink` (one per router shard, when
``--router`` lists several: :mod:`mcp_tornado.shards`; the worker listens once
any shard has welcomed it).
With ``--certfile``/``--keyfile`` the port speaks TLS only (``https://`` and
``wss://``); SIGHUP reloads the certificate for new connections, open ones
carry on.  On SIGTERM a worker stops accepting, keeps relaying for a quarter second so
messages in flight arrive, closes every client with 1001 (going away), lets
queued messages drain to the router, and exits within ``shutdown_timeout``
seconds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import time
import uuid

import uvloop
from tornado.httpserver import HTTPServer
from tornado.ioloop import PeriodicCallback

from mcp_tornado import collector, ports, protocol, supervisor, telemetry
from mcp_tornado.admission import Gatekeeper, http_server_options
from mcp_tornado.capacity import Capacity, NoBodies, Slot
from mcp_tornado.connection import Connection
from mcp_tornado.hub import Hub
from mcp_tornado.ice import IceServers
from mcp_tornado.listener import Listener
from mcp_tornado.origins import HostPolicy
from mcp_tornado.peer import SignalEndpoint
from mcp_tornado.proxies import TrustedProxies
from mcp_tornado.router_link import RouterLink
from mcp_tornado.settings import WorkerSettings
from mcp_tornado.shards import ShardMap
from mcp_tornado.tls import Certificate
from mcp_tornado.web import make_app

log = logging.getLogger(__name__)

_LISTEN_BACKLOG = 4096  # Tornado's 128 drops SYNs (1 s retries) in a connect storm
_DRAIN_PERIOD = 0.25  # seconds of relaying after SIGTERM before clients are closed


class Pinger:
    """Finds clients that vanished without a close frame (their network went away).

    One timer for the whole worker, instead of Tornado's ping task per
    connection: every ``interval`` seconds each client is pinged, and one that
    has not answered any ping for ``interval + timeout`` seconds is dropped at
    once (no closing handshake with a peer that cannot answer), which frees
    its slot and tells its partner.
    """

    def __init__(self, hub: Hub, interval: float, timeout: float) -> None:
        self.hub = hub
        self.interval = interval
        self.timeout = timeout
        self._timer = PeriodicCallback(self._sweep, interval * 1000)

    def start(self) -> None:
        if self.interval > 0:
            self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _sweep(self) -> None:
        deadline = time.monotonic() - self.interval - self.timeout
        for peer in list(self.hub.peers.values()):
            connection = peer.connection
            if connection.last_pong < deadline:
                log.info(
                    "peer %s stopped answering pings; dropping it",
                    peer.peer_id,
                    extra={"event": "ping_timeout", "peer": peer.peer_id, "room": peer.room},
                )
                connection.abort()
            else:
                connection.ping()


async def serve_worker(config: WorkerSettings, stop: asyncio.Event) -> None:
    """Run a worker in the current event loop until ``stop`` is set, then shut down gracefully.

    Raises :class:`~mcp_tornado.ports.CannotStart` at once when the port is
    served by another deployment or cannot be bound (before the router is
    contacted): restarting such a worker could not help.
    """
    loop = asyncio.get_running_loop()
    certificate = _certificate(config)
    # Claim and bind the port first, listen only later: a bound socket that does not
    # listen holds the port without being handed connections.
    claim = ports.claim(config.host, config.port, config.link.endpoint)
    try:
        sockets = ports.bind(config.host, config.port)
    except BaseException:
        claim.release()
        raise
    claim.answer_in(loop)
    try:
        await _serve(config, stop, sockets, claim, certificate)
    finally:
        for sock in sockets:
            sock.close()
        claim.release()


async def _serve(
    config: WorkerSettings,
    stop: asyncio.Event,
    sockets: list[socket.socket],
    claim: ports.PortClaim,
    certificate: Certificate | None,
) -> None:
    endpoints = config.link.endpoints
    hub = Hub(Gatekeeper(config.limits), IceServers(config.ice), ShardMap(len(endpoints)))
    limits = config.limits
    capacity = Capacity(limits.max_connections, limits.max_connections_per_ip)

    def gauges() -> dict[str, int]:
        peers = hub.peers.values()
        return {
            "connections_open": capacity.total,
            "websockets_open": hub.gate.connections,
            "worker_peers": len(hub.peers),
            "worker_rooms": len({peer.room for peer in peers}),
            "router_links_up": sum(link.ready for link in hub.links),
        }

    def carries_stats(shard: int) -> bool:
        # The worker's counters go to one router at a time, the first shard that is
        # up: they are deltas, and sent to several routers each would count a part.
        return next((link.shard for link in hub.links if link.ready), -1) == shard

    if len(endpoints) == 1:
        link = RouterLink(config.link, hub, gauges=gauges, max_peers=limits.max_connections)
        hub.attach(link)
    else:
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        for shard in range(len(endpoints)):
            hub.attach(
                RouterLink(
                    config.link,
                    hub.shard_listener(shard),
                    name,
                    gauges,
                    limits.max_connections,
                    shard,
                    functools.partial(carries_stats, shard),
                )
            )
    link = hub.link
    for each in hub.links:
        each.start()
    app = make_app(config.static_dir, hub.links)
    # Listen only once the router knows us, so that with SO_REUSEPORT the
    # kernel never hands a connection to a worker that would have to refuse it.
    quiet = logging.DEBUG if supervisor.supervised() else logging.INFO  # serve speaks for us
    log.log(
        quiet,
        "worker %s waiting for the router at %s",
        link.name,
        config.link.endpoint,
        extra={
            "event": "waiting_for_router",
            "worker": link.name,
            "endpoint": config.link.endpoint,
        },
    )
    ready = asyncio.ensure_future(_any_ready(hub))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        ready.cancel()
        for each in hub.links:
            each.close()
        return
    limits = config.limits
    proxies = TrustedProxies(limits.trusted_proxies) or None
    # No endpoint takes a body: one announced is answered 413 before it is read.
    server = HTTPServer(NoBodies(app, proxies), xheaders=False, **http_server_options(limits))
    hosts = HostPolicy(limits.allowed_hosts, config.host, limits.allowed_origins)
    endpoint = SignalEndpoint(hub, hub.gate, config.max_message_size, hosts, proxies)
    loop = asyncio.get_running_loop()
    # SIGHUP (serve forwards it): reload the certificate; never the default, which kills.
    loop.add_signal_handler(signal.SIGHUP, certificate.reload if certificate else _no_reload)

    def make_connection(deadline: float | None, slot: Slot) -> Connection:
        return Connection(endpoint, deadline, slot)

    for sock in sockets:
        sock.listen(_LISTEN_BACKLOG)
    listener = Listener(
        sockets,
        server,
        make_connection,
        limits.handshake_timeout,
        capacity,
        certificate,
        proxies,
    )
    listener.start()
    supervisor.report("ready")  # serve says where to go once every worker is ready
    log.log(
        quiet,
        "worker %s serving on %s:%d",
        link.name,
        config.host,
        config.port,
        extra={"event": "listening", "worker": link.name, "host": config.host, "port": config.port},
    )
    pinger = Pinger(hub, config.ping_interval, config.ping_timeout)
    pinger.start()
    lag = telemetry.LoopLag()
    lag.start()
    await stopped
    lag.stop()
    pinger.stop()

    log.info(
        "worker %s shutting down",
        link.name,
        extra={"event": "shutting_down", "worker": link.name, "peers": len(hub.peers)},
    )
    listener.stop()
    claim.release()  # not listening any more: the port is free for whoever comes next
    # Keep relaying briefly so messages already on their way reach their peers.
    await asyncio.sleep(min(_DRAIN_PERIOD, config.shutdown_timeout / 2))
    for peer in list(hub.peers.values()):
        # Each leaves its room (a resumable one is suspended, to resume on another
        # worker), then is closed.
        peer.end(protocol.CloseCode.GOING_AWAY, suspend=bool(peer.resume))
    deadline = loop.time() + config.shutdown_timeout
    while (hub.peers or hub.leaving or any(each.backlog for each in hub.links)) and (
        loop.time() < deadline
    ):
        await asyncio.sleep(0.02)
    for each in hub.links:
        each.close()


async def _any_ready(hub: Hub) -> None:
    """Return once any router shard has welcomed the worker."""
    waits = [asyncio.ensure_future(link.wait_ready()) for link in hub.links]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


def _no_reload() -> None:
    log.info(
        "worker: SIGHUP, but there is no certificate to reload (no --certfile)",
        extra={"event": "tls_reload_skipped"},
    )


def _certificate(config: WorkerSettings) -> Certificate | None:
    """The worker's TLS certificate, if it has one (the files were checked at start)."""
    if config.certfile is None or config.keyfile is None:
        return None
    try:
        return Certificate(config.certfile, config.keyfile)
    except ValueError as exc:  # changed since the check: restarting will not help
        raise ports.CannotStart(str(exc)) from None


def run_worker(config: WorkerSettings) -> None:
    """Run a worker until SIGTERM or SIGINT, on uvloop.

    Tornado runs on any asyncio loop; libuv's makes the per-read and per-write
    bookkeeping of thousands of sockets markedly cheaper than the selector loop.
    """

    async def main() -> None:
        collector.tune()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve_worker(config, stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
