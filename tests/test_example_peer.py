"""examples/aiortc_peer.py survives anything the other peer can send (issue 12, item 8).

The server checks the shape of relayed messages, not their content: extra
fields of any type and size reach the other peer.  A 5,000-digit number used
to stop the bot (``json.loads`` raises a plain ``ValueError`` over Python's
4,300-digit limit, and only ``JSONDecodeError`` was caught).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.coturn import running_coturn
from tests.support import running_cluster

pytest.importorskip("aiortc")
websockets_client = pytest.importorskip("websockets.asyncio.client")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "aiortc_peer.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aiortc_peer_under_test", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load()

HUGE = "1" * 5000
DEEP = 5000
# Each of these is relayed by the server (it passes check_client_frame) or is
# something a server could send; none may stop the bot.
HOSTILE: list[str | bytes] = [
    f'{{"type":"offer","n":{HUGE}}}',
    f'{{"type":"candidate","candidate":{{"candidate":"x","n":{HUGE}}}}}',
    f'{{"type":"leave","x":{HUGE}}}',
    f'{{"type":"offer","n":-{HUGE}.5e99999}}',
    '{"type":"offer","n":' + "[" * 200 + "]" * 200 + "}",
    '{"type":"offer","sdp":"not an sdp"}',
    '{"type":"offer","offer":{"type":"offer","sdp":"v=0\\r\\nm=nonsense\\r\\n"}}',
    '{"type":"answer","sdp":"garbage"}',
    '{"type":"candidate","candidate":"candidate:garbage"}',
    '{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 9 typ host",'
    '"sdpMLineIndex":99999999999999999999,"sdpMid":7}}',
    '{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 9 typ host",'
    '"sdpMLineIndex":true}}',
    '{"type":"candidate","candidate":{"candidate":"a=candidate:1 1 tcp x y z typ"}}',
    '{"type":"candidate","candidate":{"candidate":null}}',
    '{"type":"leave","reason":{"a":[1,2,{"b":null}]}}',
]
# Not relayed by the server, but a bot must not trust that.
UNRELAYED: list[str | bytes] = [
    "[" * DEEP + "]" * DEEP,
    '{"a":' * DEEP + "1" + "}" * DEEP,
    HUGE,
    "[1,2,3]",
    '"offer"',
    "null",
    "{",
    '{"type":1}',
    '{"type":["offer"]}',
    '{"type":"error","message":' + json.dumps("x" * 100_000) + "}",
    '{"type":"error","code":{"room_full":1},"message":{"nested":true}}',
    '{"type":"joined","initiator":"yes"}',
    '{"type":"joined","iceServers":{"urls":1}}',
    '{"type":"joined","iceServers":[{"urls":["turn:x?transport=quic"],"username":5}]}',
    '{"type":"joined","iceServers":[null,1,"stun:x",{"urls":["javascript:1",7,"turn:"]}]}',
    '{"type":"' + "t" * 100_000 + '"}',
    '{"type":"candidate"}',
    "\udcff",
    b"\x00\xff binary",
]


@pytest.mark.parametrize("raw", HOSTILE + UNRELAYED, ids=range(len(HOSTILE + UNRELAYED)))
def test_decode_message_never_raises(raw: str | bytes) -> None:
    msg = example.decode_message(raw)
    assert msg is None or (isinstance(msg, dict) and isinstance(msg["type"], str))


def test_on_frame_skips_every_hostile_frame() -> None:
    async def scenario() -> None:
        peer = example.AiortcPeer("ws://unused")
        for raw in HOSTILE + UNRELAYED:
            await peer.on_frame(raw)  # no exception gets out
        await peer.on_frame('{"type":"peer-left"}')  # and it still handles real ones
        assert list(peer.events)[-1] == "peer-left"

    asyncio.run(scenario())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
types = st.sampled_from(["offer", "answer", "candidate", "leave", "peer-left", "error", "x"])


@settings(
    deadline=None,
    derandomize=True,
    database=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    kind=types,
    fields=st.dictionaries(
        st.sampled_from(["sdp", "offer", "answer", "candidate", "description", "message", "n"]),
        json_values,
    ),
)
def test_random_messages_never_escape(kind: str, fields: dict[str, Any]) -> None:
    async def scenario() -> None:
        peer = example.AiortcPeer("ws://unused")
        await peer.on_frame(json.dumps({**fields, "type": kind}))
        await peer.on_frame(json.dumps(fields))
        await peer._close_peer()

    asyncio.run(scenario())


def test_joined_ice_servers_are_used_else_the_bots_own() -> None:
    own = [example.RTCIceServer(urls="stun:own.example:3478")]
    given = [
        {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "1:a", "credential": "c"},
        {"urls": "stun:stun.example", "extra": True},
        {"urls": ["bogus:x", "stuns:stun.example:5349"]},
        {"urls": ["turn:x"], "credential": {"no": 1}},
    ]

    async def scenario() -> None:
        peer = example.AiortcPeer("ws://unused", ice_servers=own)
        await peer.on_frame(json.dumps({"type": "joined", "iceServers": given}))
        assert peer.configuration().iceServers == [
            example.RTCIceServer(["turn:127.0.0.1:3478?transport=udp"], "1:a", "c"),
            example.RTCIceServer(["stun:stun.example"]),
            example.RTCIceServer(["stuns:stun.example:5349"]),
        ]
        await peer.on_frame('{"type":"joined","room":"r","peers":1,"initiator":false}')
        assert peer.configuration().iceServers == own  # a server without: the bot's own

    asyncio.run(scenario())


def test_pending_candidates_are_capped() -> None:
    async def scenario() -> None:
        peer = example.AiortcPeer("ws://unused")
        line = "candidate:1 1 udp 2130706431 10.0.0.1 9 typ host"
        frame = json.dumps({"type": "candidate", "candidate": {"candidate": line}})
        for _ in range(example.MAX_PENDING_CANDIDATES * 3):
            await peer.on_frame(frame)
        assert len(peer._pending) == example.MAX_PENDING_CANDIDATES

    asyncio.run(scenario())


# --- through a real worker -------------------------------------------------------------


def test_the_bot_survives_hostile_relayed_messages_and_still_chats(tmp_path: Path) -> None:
    """A hostile peer sends everything above through a worker; then a good peer chats."""

    async def scenario(url: str) -> None:
        bot = example.AiortcPeer(url, on_message=example.echo)
        bot_run = asyncio.create_task(bot.run())
        await asyncio.sleep(0.3)  # it joins first
        async with websockets_client.connect(url, max_size=None) as hostile:
            for raw in HOSTILE:
                await hostile.send(raw)
            await asyncio.sleep(1.0)
            assert not bot_run.done(), bot_run
        await asyncio.sleep(0.3)  # the bot hears peer-left
        assert not bot_run.done(), bot_run
        assert "offer" in bot.events and "leave" in bot.events

        good = example.AiortcPeer(url)
        good_run = asyncio.create_task(good.run())
        try:
            await good.wait_connected(timeout=30)
            await bot.wait_connected(timeout=30)
            await good.send("still there?")
            reply = await asyncio.wait_for(good.received.get(), 20)
            assert reply == "echo: still there?"
        finally:
            await good.close()
            await bot.close()
            for task in (good_run, bot_run):
                task.cancel()
            await asyncio.gather(good_run, bot_run, return_exceptions=True)

    with running_cluster(tmp_path, 1) as cluster:
        asyncio.run(scenario(cluster.url(f"bot-{uuid.uuid4().hex[:8]}")))


def test_the_bot_gathers_relay_candidates_from_the_servers_turn_credentials(
    tmp_path: Path,
) -> None:
    """Through a worker configured for a real coturn, the bots' offers carry relayed candidates."""
    secret = uuid.uuid4().hex.encode()
    secret_file = tmp_path / "turn-secret"
    secret_file.write_bytes(secret)

    async def scenario(url: str) -> None:
        first, second = example.AiortcPeer(url), example.AiortcPeer(url)
        runs = [asyncio.create_task(first.run())]
        await asyncio.sleep(0.3)  # it joins first; the second makes the offer
        runs.append(asyncio.create_task(second.run()))
        try:
            await second.wait_connected(timeout=30)
            await first.wait_connected(timeout=30)
            for bot in (first, second):
                assert [s.urls for s in bot.joined_ice_servers] == [[turn.uri("udp")]]
                sdp = bot._pc.localDescription.sdp
                assert f" {turn.host} " in sdp and " typ relay " in sdp, sdp
        finally:
            for bot in (first, second):
                await bot.close()
            for task in runs:
                task.cancel()
            await asyncio.gather(*runs, return_exceptions=True)

    with (
        running_coturn(tmp_path, secret) as turn,
        running_cluster(
            tmp_path, 1, "--turn-uri", turn.uri("udp"), "--turn-secret-file", str(secret_file)
        ) as cluster,
    ):
        asyncio.run(scenario(cluster.url(f"turn-{uuid.uuid4().hex[:8]}")))
