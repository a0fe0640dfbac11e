"""The worker's router link against a scripted ROUTER socket: what it says and when.

The router is a plain ZeroMQ ROUTER socket driven by the test, so the link's
own decisions (when to send a Hello, what it reports to its listener) are seen
exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import pytest
import zmq

from mcp_tornado import wire
from mcp_tornado.router_link import RouterLink
from mcp_tornado.settings import LinkSettings

pytestmark = pytest.mark.gen_test


class Recorder:
    """A LinkListener that writes down every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: object) -> None:
            self.calls.append((name, args))

        return record

    def registrations(self) -> list[wire.PeerRecord]:
        return [wire.PeerRecord(1, "r", False)]

    def named(self, name: str) -> list[tuple[object, ...]]:
        return [args for called, args in self.calls if called == name]


class FakeRouter:
    def __init__(self) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        port: int = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.worker = b""

    async def receive(self, seconds: float) -> list[wire.ToRouter]:
        """Everything the worker sends within ``seconds``."""
        got: list[wire.ToRouter] = []
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            while self.sock.poll(0):
                self.worker, frame = self.sock.recv_multipart()
                got.extend(wire.decode_to_router(frame))
            await asyncio.sleep(0.005)
        return got

    def send(self, *messages: wire.ToWorker) -> None:
        self.sock.send_multipart([self.worker, wire.encode_batch(list(messages))])


@contextlib.contextmanager
def link_and_router() -> Iterator[tuple[RouterLink, FakeRouter, Recorder]]:
    """A started link to a scripted router (call inside the running loop)."""
    router = FakeRouter()
    listener = Recorder()
    settings = LinkSettings(
        router.endpoint, heartbeat_interval=0.1, heartbeat_liveness=3, insecure=True
    )
    link = RouterLink(settings, listener)
    link.start()
    try:
        yield link, router, listener
    finally:
        link.close()
        router.sock.close()


async def welcomed(link: RouterLink, router: FakeRouter) -> None:
    """Answer the link's first Hello and wait (bounded) until it counts as registered."""
    deadline = asyncio.get_running_loop().time() + 5
    while not any(type(m) is wire.Hello for m in await router.receive(0.02)):
        assert asyncio.get_running_loop().time() < deadline, "no Hello"
    router.send(wire.Welcome("e1", []))
    while not link.ready:
        assert asyncio.get_running_loop().time() < deadline, "no registration"
        await router.receive(0.02)


def hellos(messages: list[wire.ToRouter]) -> int:
    return sum(type(m) is wire.Hello for m in messages)


async def test_one_hello_per_episode_however_many_reregisters_arrive() -> None:
    with link_and_router() as (link, router, listener):
        await welcomed(link, router)
        assert listener.named("registered")
        # A woken worker's stale batches each earn a Reregister.
        for _ in range(20):
            router.send(wire.Reregister([1]))
        got = await router.receive(0.25)  # within the liveness window
        assert hellos(got) == 1
        assert len(listener.named("undelivered")) == 20
        assert len(listener.named("router_lost")) == 1
        router.send(wire.Welcome("e1", []))
        await router.receive(0.2)
        assert link.ready


async def test_an_unanswered_hello_is_sent_again_after_a_heartbeat_interval() -> None:
    with link_and_router() as (_, router, _):
        # No Welcome: the router is slow.  Another Hello only after its liveness
        # window (0.1 s x 3), not one per heartbeat.
        got = await router.receive(0.75)
        assert 2 <= hellos(got) <= 3


async def test_the_answer_to_a_leave_and_a_lost_router_reach_the_listener() -> None:
    with link_and_router() as (link, router, listener):
        await welcomed(link, router)
        assert link.leave(7)
        assert wire.Leave(7) in await router.receive(0.2)
        router.send(wire.Left(7))
        await router.receive(0.2)
        assert listener.named("left") == [(7,)]
        router.send(wire.Bye())
        await router.receive(0.2)
        assert not link.ready and listener.named("router_lost") == [()]
        assert not link.leave(8)  # nobody would answer


async def test_a_join_over_the_workers_cap_is_reported_apart_from_a_full_room() -> None:
    with link_and_router() as (link, router, listener):
        await welcomed(link, router)
        router.send(wire.RoomFull(3, "r", over_cap=True), wire.RoomFull(4, "r"))
        await router.receive(0.2)
        assert listener.named("refused") == [(3,)]
        assert listener.named("room_full") == [(4,)]


async def test_the_hello_announces_the_workers_cap() -> None:
    router = FakeRouter()
    settings = LinkSettings(router.endpoint, heartbeat_interval=0.1, insecure=True)
    link = RouterLink(settings, Recorder(), max_peers=1234)
    link.start()
    try:
        got = await router.receive(0.5)
        assert [m.max_peers for m in got if type(m) is wire.Hello][:1] == [1234]
    finally:
        link.close()
        router.sock.close()
