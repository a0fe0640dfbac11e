"""Hypothesis throws hostile input at a running cluster (one router, two workers).

Arbitrary bytes, random JSON, wrong types, huge strings, deep nesting, random
query strings and room names, random Origin headers and WebSocket framing
garbage.  The properties, checked after every example:

* every frame a client sends gets exactly one well-formed answer: an
  ``error`` whose ``code`` is documented, the ``no_peer`` notice (the frame was
  valid and relayed to nobody), or a close with a documented code; framing
  violations (invalid UTF-8 in a text frame, broken frames) end the TCP
  connection without a close frame, as Tornado does;
* a clean pair in another room keeps relaying, both ways, byte for byte, and
  receives nothing else;
* a message in any number of fragments (empty ones, pings and pongs between)
  is relayed up to the fragment cap and closed with 1009 beyond it; floods of
  empty continuations, pongs or pings end with 1009 or 4429 (issue 12, item 2);
* no process dies.

The cluster runs with a high rate limit so that the clean pair's checks (one
message each way per example) never trip it; rate limiting is tested in
``test_limits.py``.  Examples are derandomized, so CI runs the same inputs.
"""

from __future__ import annotations

import json
import socket
import unicodedata
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_tornado import protocol
from mcp_tornado.websocket import MAX_FRAGMENTS
from tests.rawws import (
    BINARY,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    Closed,
    RawWebSocket,
    encode_frame,
)
from tests.support import Cluster

settings.register_profile(
    "hardening-fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("hardening-fuzz")

MAX_FRAME = 64 * 1024
DOCUMENTED_CLOSES = {1009, 1013, 4008, 4400, 4401, 4409, 4429}
EXAMPLES: Counter[str] = Counter()
ANSWERS: Counter[str] = Counter()


class Pair:
    """Two clients in their own room, on different workers, that must keep talking."""

    def __init__(self, cluster: Cluster) -> None:
        self.room = f"clean-{uuid.uuid4().hex[:8]}"
        self.a = RawWebSocket.connect(cluster.ports[0], f"?room={self.room}")
        assert self.a.recv_json()["type"] == "joined"
        self.b = RawWebSocket.connect(cluster.ports[1], f"?room={self.room}")
        assert self.b.recv_json()["type"] == "joined"
        assert self.a.recv_json()["type"] == "peer-joined"
        self.checks = 0

    def check(self) -> None:
        self.checks += 1
        n = self.checks
        there = f'{{"type":"offer","sdp":"check {n}","x":[1, 2.50, null]}}'
        back = f'{{"type":"candidate","candidate":{{"candidate":"c{n}"}}}}'
        self.a.send_text(there)
        assert self.b.recv_frame().text() == there  # the very next frame: nothing leaked in
        self.b.send_text(back)
        assert self.a.recv_frame().text() == back


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    c = Cluster(tmp, 2, worker_args=("--rate-limit", "1000", "--rate-burst", "1000"))
    try:
        c.start()
        yield c
        assert c.alive(), "a process died during the fuzzing"
        assert "Traceback" not in c.logs(), c.logs()[-3000:]
    finally:
        c.stop()
        print(f"\nhypothesis examples run: {dict(EXAMPLES)}, total {sum(EXAMPLES.values())}")
        print(f"answers to fuzzed frames: {dict(ANSWERS)}")


@pytest.fixture(scope="module")
def pair(cluster: Cluster) -> Iterator[Pair]:
    p = Pair(cluster)
    yield p
    p.check()
    p.a.close()
    p.b.close()


def fresh_room() -> str:
    return f"fz-{uuid.uuid4().hex[:10]}"


# --- strategies ----------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=20,
)
types = st.sampled_from(["offer", "answer", "candidate", "leave"]) | st.text(max_size=20)
messages = st.fixed_dictionaries(
    {"type": types | json_values},
    optional={"sdp": json_values, "offer": json_values, "answer": json_values},
).map(json.dumps) | st.fixed_dictionaries(
    {"type": st.just("candidate")}, optional={"candidate": json_values, "extra": json_values}
).map(json.dumps)


def nested(depth: int, wrap: bool) -> str:
    inner = "[" * depth + "]" * depth
    return '{"type":"offer","x":' + inner + "}" if wrap else inner


frames: st.SearchStrategy[bytes] = st.one_of(
    messages.map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(str.encode),
    st.binary(max_size=300),
    st.builds(nested, st.integers(1, 20_000), st.booleans()).map(str.encode),
    st.integers(MAX_FRAME - 40, MAX_FRAME + 40).map(
        lambda n: ('{"type":"offer","sdp":"' + "x" * max(0, n - 25) + '"}').encode()
    ),
    st.sampled_from(
        [
            b'{"type":"offer","type":"leave"}',
            b'{"type":"offer","sdp":"\\ud800"}',
            b'{"type":"offer","sdp":NaN}',
            b'{"type":"candidate","candidate":[]}',
            b'{"type":"offer"} trailing',
            b"\xef\xbb\xbf{}",
        ]
    ),
)


def oracle(frame: bytes) -> str | None:
    """The answer code an independent parser predicts, where it is unambiguous."""
    try:
        text = frame.decode()
        value = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, RecursionError):
        return None  # invalid_json or (deep nesting, odd escapes) invalid_message
    if not isinstance(value, dict):
        return "invalid_message"
    kind = value.get("type")
    if not isinstance(kind, str):
        return "invalid_message"
    if kind not in protocol.RELAYED_TYPES and text.count('"type"') == 1:
        return "unknown_type"
    return None


def expect_answer(ws: RawWebSocket, frame: bytes, opcode: int) -> str:
    """Read the one answer to ``frame``; return its code (or ``close:N``)."""
    try:
        reply = ws.recv_frame(timeout=5)
    except Closed as closed:
        if len(frame) > MAX_FRAME:
            assert closed.code == protocol.CloseCode.MESSAGE_TOO_BIG
        elif opcode == TEXT:
            # invalid UTF-8 in a text frame: the connection is failed with 1007 (RFC 6455 8.1)
            assert closed.code == protocol.CloseCode.INVALID_PAYLOAD
            with pytest.raises(UnicodeDecodeError):
                frame.decode()
        else:
            raise AssertionError(
                f"closed ({closed.code}) after a {len(frame)}-byte frame"
            ) from None
        return f"close:{closed.code}"
    assert len(frame) <= MAX_FRAME, "an oversized frame was processed"
    message = reply.json()
    if message["type"] == "info":
        assert message["code"] == "no_peer"
        # A relayed frame is valid JSON, an object, with a relayed type.
        value = json.loads(frame)
        assert isinstance(value, dict) and value["type"] in protocol.RELAYED_TYPES
        return "no_peer"
    assert message["type"] == "error", message
    assert set(message) == {"type", "code", "message"}
    assert message["code"] in protocol.ERROR_CODES
    assert isinstance(message["message"], str) and len(message["message"]) < 300
    predicted = oracle(frame)
    if predicted is not None:
        assert message["code"] == predicted, (frame[:200], message)
    return str(message["code"])


# --- the properties ----------------------------------------------------------------------


@settings(FUZZ, max_examples=250)
@given(
    batch=st.lists(st.tuples(frames, st.sampled_from([TEXT, BINARY])), min_size=1, max_size=3),
    worker=st.integers(0, 1),
)
def test_hostile_frames_get_answers_and_never_disturb_others(
    cluster: Cluster, pair: Pair, batch: list[tuple[bytes, int]], worker: int
) -> None:
    EXAMPLES["frames"] += 1
    with RawWebSocket.connect(cluster.ports[worker], f"?room={fresh_room()}") as ws:
        assert ws.recv_json()["type"] == "joined"
        for frame, opcode in batch:
            ws.send_raw(encode_frame(opcode, frame))
            answer = expect_answer(ws, frame, opcode)
            ANSWERS[answer] += 1
            if answer.startswith("close:"):
                break
    pair.check()


def room_rule(name: str) -> str | None:
    """The documented room name rule, written independently: the room joined, or None."""
    name = name.strip()
    if not name:
        return protocol.DEFAULT_ROOM
    if len(name) > 64:
        return None
    ok = all(c == " " or unicodedata.category(c)[0] in "LMNPS" for c in name)
    return name if ok else None


@settings(FUZZ, max_examples=150)
@given(name=st.text(max_size=80) | st.text(st.characters(codec="ascii"), max_size=70))
def test_room_names_are_joined_or_refused_with_4400(
    cluster: Cluster, pair: Pair, name: str
) -> None:
    EXAMPLES["room names"] += 1
    encoded = urllib.parse.quote(name.encode("utf-8", "surrogatepass"), safe="")
    with RawWebSocket.connect(cluster.ports[0], f"?x=1&room={encoded}") as ws:
        first = ws.recv_json()
        try:
            name.encode("utf-8")
            expected = room_rule(name)
        except UnicodeEncodeError:  # a lone surrogate: the bytes are not UTF-8
            expected = None
        if expected is None:
            assert first == {"type": "error", "code": "invalid_room", "message": first["message"]}
            assert ws.wait_closed() == protocol.CloseCode.INVALID_ROOM
        elif first["type"] == "error":  # a name reused by an earlier example, still held
            assert first["code"] == "room_full"
        else:
            assert first["type"] == "joined" and first["room"] == expected
    pair.check()


query_chars = st.characters(codec="ascii", categories=["L", "N", "P", "S"], exclude_characters="#")


@settings(FUZZ, max_examples=100)
@given(query=st.text(query_chars, max_size=120))
def test_random_query_strings(cluster: Cluster, pair: Pair, query: str) -> None:
    EXAMPLES["query strings"] += 1
    ws = RawWebSocket.handshake(cluster.ports[1], "/ws/signal/?" + query)
    try:
        if ws.status == 101:
            first = ws.recv_json()
            if first["type"] == "error":
                assert first["code"] in {"invalid_room", "room_full"}
                assert ws.wait_closed() in {4400, 4409}
            else:
                assert first["type"] == "joined"
        else:
            assert ws.status == 400, ws.status  # a request line Tornado cannot parse
    finally:
        ws.close()
    pair.check()


@settings(FUZZ, max_examples=60)
@given(origin=st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=60))
def test_random_origins_are_accepted_or_refused_with_403(
    cluster: Cluster, pair: Pair, origin: str
) -> None:
    EXAMPLES["origins"] += 1
    ws = RawWebSocket.handshake(cluster.ports[0], "/ws/signal/", headers={"Origin": origin})
    ws.close()
    assert ws.status in {101, 400, 403}
    pair.check()


@settings(FUZZ, max_examples=120)
@given(garbage=st.binary(min_size=1, max_size=600), handshake=st.booleans())
def test_framing_garbage_never_hurts_the_server(
    cluster: Cluster, pair: Pair, garbage: bytes, handshake: bool
) -> None:
    EXAMPLES["framing garbage"] += 1
    if handshake:
        ws = RawWebSocket.connect(cluster.ports[1], f"?room={fresh_room()}")
        assert ws.recv_json()["type"] == "joined"
    else:
        raw = socket.create_connection(("127.0.0.1", cluster.ports[1]), timeout=5)
        ws = RawWebSocket(raw, 0, b"")
    try:
        ws.send_raw(garbage)
        while True:  # whatever comes back must be frames (or HTTP), then a close or EOF
            ws.recv_frame(timeout=0.05)
    except (Closed, TimeoutError, ValueError, OSError, json.JSONDecodeError):
        pass
    finally:
        ws.sock.close()
    pair.check()


@settings(FUZZ, max_examples=60)
@given(
    count=st.sampled_from([1, 2, MAX_FRAGMENTS, MAX_FRAGMENTS + 1])
    | st.integers(1, MAX_FRAGMENTS + 40),
    controls=st.lists(st.sampled_from([PING, PONG]), max_size=20),
    data=st.data(),
)
def test_fragmented_messages_are_taken_up_to_the_fragment_cap(
    cluster: Cluster, pair: Pair, count: int, controls: list[int], data: st.DataObject
) -> None:
    """A valid message in ``count`` fragments (empty ones too), pings and pongs between."""
    EXAMPLES["fragments"] += 1
    message = b'{"type":"candidate","candidate":"' + b"c" * 40 + b'"}'
    cuts = data.draw(st.lists(st.integers(0, 40), min_size=count - 1, max_size=count - 1))
    pieces, rest = [], message
    for cut in cuts:  # each cut takes 0-40 bytes: empty continuations are common
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    frames = [
        encode_frame(TEXT if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    ]
    for opcode in controls:  # between fragments, never before the first
        at = data.draw(st.integers(1, len(frames)))
        frames.insert(at, encode_frame(opcode, b"c"))
    with RawWebSocket.connect(cluster.ports[0], f"?room={fresh_room()}") as ws:
        assert ws.recv_json()["type"] == "joined"
        ws.send_raw(b"".join(frames))
        if len(pieces) <= MAX_FRAGMENTS:
            assert ws.recv_json()["code"] == "no_peer"  # reassembled, checked, relayed
            ANSWERS["fragments:no_peer"] += 1
        else:
            assert ws.wait_closed() == protocol.CloseCode.MESSAGE_TOO_BIG
            ANSWERS["fragments:close:1009"] += 1
    pair.check()


@pytest.mark.parametrize("flood", ["empty continuations", "pongs", "pings"])
def test_frame_floods_are_cut_off(cluster: Cluster, pair: Pair, flood: str) -> None:
    """The floods of issue 12 (item 2): ended by the fragment cap or the rate limit."""
    EXAMPLES["floods"] += 1
    ws = RawWebSocket.connect(cluster.ports[1], f"?room={fresh_room()}")
    assert ws.recv_json()["type"] == "joined"
    if flood == "empty continuations":
        ws.send_raw(encode_frame(TEXT, b"{", fin=False))
        unit, expected = encode_frame(CONTINUATION, b"", fin=False), {1009}
    else:  # 1000/s with a burst of 1000 in this cluster
        unit, expected = encode_frame(PONG if flood == "pongs" else PING, b"f"), {4429}
    chunk = unit * 5000
    try:
        for _ in range(20):  # 100,000 frames; before the fix, all were parsed
            ws.send_raw(chunk)
    except OSError:
        pass  # reset by the server, which stopped reading
    codes = []
    try:
        while True:
            frame = ws.recv_frame_raw(timeout=5)
            if frame.opcode == TEXT:
                assert frame.json()["code"] == "rate_limited"
            elif frame.opcode == 0x8:
                codes.append(frame.close_code)
    except (Closed, OSError, TimeoutError):
        pass
    ws.sock.close()
    assert set(codes) == expected, codes
    pair.check()


def test_everything_survived(cluster: Cluster, pair: Pair) -> None:
    pair.check()
    assert cluster.alive()
    assert sum(EXAMPLES.values()) >= 500, EXAMPLES
