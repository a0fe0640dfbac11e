from __future__ import annotations

import json

import pytest

from mcp_tornado import protocol


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"offer","sdp":"v=0"}',
        '{"type":"offer","offer":{"type":"offer","sdp":"v=0"}}',
        '{"type":"candidate","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}}',
        '{"type":"answer","extra":[1,2,{"x":null}]}',
        '{"type":"leave"}',
        b'{"type":"leave"}',
    ],
)
def test_relayable_frames_pass(frame: str | bytes) -> None:
    assert protocol.check_client_frame(frame) is None


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ('{"type":"offer"', "invalid_json"),
        ("", "invalid_json"),
        ("[1,2]", "invalid_message"),
        ('"offer"', "invalid_message"),
        ("{}", "invalid_message"),
        ('{"type":7}', "invalid_message"),
        ('{"type":"hello"}', "unknown_type"),
        ('{"type":"joined"}', "unknown_type"),
    ],
)
def test_bad_frames_get_a_coded_error(frame: str, code: str) -> None:
    error = protocol.check_client_frame(frame)
    assert error is not None
    assert error.code == code
    assert error.message


def test_unknown_type_message_is_bounded() -> None:
    error = protocol.check_client_frame(json.dumps({"type": "x" * 10_000}))
    assert error is not None and len(error.message) < 200


def test_room_full_keeps_the_text_existing_clients_match() -> None:
    assert json.loads(protocol.ROOM_FULL_EVENT) == {
        "type": "error",
        "code": "room_full",
        "message": "Room is full",
    }


def test_events_encode_with_their_type_tag() -> None:
    joined = protocol.encode_event(protocol.Joined("r", 2, True))
    assert json.loads(joined) == {"type": "joined", "room": "r", "peers": 2, "initiator": True}
    left = protocol.encode_event(protocol.PeerLeft("r", 1))
    assert json.loads(left) == {"type": "peer-left", "room": "r", "peers": 1}
    assert json.loads(protocol.PEER_GONE_EVENT) == {"type": "leave"}
    assert json.loads(protocol.NO_PEER_EVENT)["type"] == "info"


def test_close_codes_have_reasons() -> None:
    for code in (
        protocol.CloseCode.GOING_AWAY,
        protocol.CloseCode.TRY_AGAIN_LATER,
        protocol.CloseCode.ROOM_FULL,
    ):
        assert protocol.close_reason(code)
