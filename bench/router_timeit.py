"""The router's whole loop, timed on real ZeroMQ sockets: CPU per routed message at batch size 1.

``bench/relay_timeit.py`` times :meth:`Router.handle` on a stubbed socket, with
batches of 64; what it cannot see is the cost the router pays per *batch* on
its socket (poll, receive, send), which is the whole cost at low and medium
load, when every batch holds one message.  This runs a
:class:`~mcp_tornado.router.broker.Router` in a thread on an ``ipc://``
endpoint, pairs a peer of worker ``w1`` with one of ``w2`` (two DEALERs in
this thread, on a ZeroMQ context of their own), and sends one relay at a
time, ``w1`` to ``w2`` and back, each waiting for the other's: every batch
the router reads and sends holds one message.  It prints the router thread's CPU time per
routed message (best of ``--repeat`` runs; thread CPU, so other load on the
machine counts little) and the median round trip (two routed messages).

Run it like ``relay_timeit.py``, against either checkout::

    .venv/bin/python bench/router_timeit.py
    (cd ../before && PYTHONPATH=. "$OLDPWD/.venv/bin/python" "$OLDPWD/bench/router_timeit.py")
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

import zmq

from mcp_tornado import wire
from mcp_tornado.router.broker import Router
from mcp_tornado.settings import RouterSettings

CANDIDATE = (
    b'{"type":"candidate","candidate":"candidate:1 1 udp 2122260223 192.168.1.2 54321 typ host"}'
)


def _dealer(ctx: zmq.Context[zmq.Socket[bytes]], name: bytes, endpoint: str) -> zmq.Socket[bytes]:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, name)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _until(sock: zmq.Socket[bytes], kind: type) -> object:
    """Read batches from the router until one holds a ``kind``; return it."""
    while True:
        if not sock.poll(5000):
            raise TimeoutError(f"no {kind.__name__} from the router within 5 s")
        for msg in wire.decode_to_worker(sock.recv()):
            if type(msg) is kind:
                return msg


def measure(messages: int, repeat: int) -> tuple[float, float]:
    """(router thread CPU ns per routed message, best run; median round trip in us)."""
    with tempfile.TemporaryDirectory(prefix="router-timeit-") as folder:
        return _measure(f"ipc://{folder}/router.ipc", messages, repeat)


def _measure(endpoint: str, messages: int, repeat: int) -> tuple[float, float]:
    router = Router(RouterSettings(bind=endpoint, resync_grace=0.0))
    router.bind()
    thread = threading.Thread(target=router.run, daemon=True)
    thread.start()
    ident = thread.ident
    assert ident is not None
    clock = time.pthread_getcpuclockid(ident)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    w1, w2 = _dealer(ctx, b"w1", endpoint), _dealer(ctx, b"w2", endpoint)
    try:
        for sock in (w1, w2):
            sock.send(wire.encode_batch([wire.Hello([])]))
            _until(sock, wire.Welcome)
        time.sleep(0.1)  # the grace ends on the router's next turn
        w1.send(wire.encode_batch([wire.Join(1, "r")]))
        _until(w1, wire.Joined)
        w2.send(wire.encode_batch([wire.Join(1, "r")]))
        _until(w2, wire.Joined)
        relay = wire.encode_batch([wire.Relay(1, CANDIDATE)])
        best = float("inf")
        trips: list[float] = []
        for _ in range(repeat):
            cpu = time.clock_gettime_ns(clock)
            for _ in range(messages // 2):  # a round trip: both send (and stay alive)
                sent = time.perf_counter()
                w1.send(relay)
                _until(w2, wire.Deliver)
                w2.send(relay)
                _until(w1, wire.Deliver)
                trips.append(time.perf_counter() - sent)
            best = min(best, (time.clock_gettime_ns(clock) - cpu) / (messages // 2 * 2))
        return best, statistics.median(trips) * 1e6
    finally:
        router.stop()
        thread.join(5)
        w1.close()
        w2.close()
        ctx.term()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="routed messages per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs; the best is printed")
    args = parser.parse_args()
    cpu, trip = measure(args.messages, args.repeat)
    print(
        f"{os.getcwd()}: router {cpu / 1000:.1f} us CPU per routed message (batches of 1), "
        f"round trip median {trip:.0f} us"
    )


if __name__ == "__main__":
    main()
