from __future__ import annotations

import msgspec
import pytest

from mcp_tornado import wire


def test_worker_batch_round_trips() -> None:
    payload = '{"type":"offer","sdp":"v=0\\r\\n","x":"\u00e9\U0001f600"}'.encode()
    batch: list[wire.ToRouter] = [
        wire.Hello([wire.PeerRecord(1, "a", True)]),
        wire.Join(2, "room"),
        wire.Relay(2, payload),
        wire.Leave(2),
        wire.Ping("epoch"),
        wire.Bye(),
    ]
    decoded = wire.decode_to_router(wire.encode_batch(batch))
    assert decoded == batch
    relay = decoded[2]
    assert isinstance(relay, wire.Relay) and relay.payload == payload


def test_router_batch_round_trips() -> None:
    batch: list[wire.ToWorker] = [
        wire.Welcome("e", [3]),
        wire.Joined(1, "r", 2, True),
        wire.RoomFull(4, "r"),
        wire.PeerJoined(1, "r", 2),
        wire.PeerLeft(1, "r", 1),
        wire.Deliver(1, b"{}"),
        wire.NoPeer(1),
        wire.Reregister([1, 2]),
        wire.Ping("e"),
        wire.Bye(),
    ]
    assert wire.decode_to_worker(wire.encode_batch(batch)) == batch


@pytest.mark.parametrize(
    "frame",
    [b"", b"\xc1", b"\x91\x93\x63\x01\x02", msgspec.msgpack.encode([[2, "not-an-int", "r"]])],
)
def test_malformed_batches_raise_msgspec_errors(frame: bytes) -> None:
    with pytest.raises((msgspec.DecodeError, msgspec.ValidationError)):
        wire.decode_to_router(frame)


def test_a_worker_cannot_send_router_only_messages() -> None:
    frame = wire.encode_batch([wire.Deliver(1, b"{}")])
    with pytest.raises(msgspec.ValidationError):
        wire.decode_to_router(frame)


def test_relayed_payloads_are_bytes_and_never_checked_as_text() -> None:
    # The worker that received the frame checked its UTF-8; the hop carries bytes.
    relay = wire.decode_to_router(wire.encode_batch([wire.Relay(1, b"\xff not utf-8")]))[0]
    assert isinstance(relay, wire.Relay) and relay.payload == b"\xff not utf-8"
