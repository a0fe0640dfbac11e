"""The shape check of client frames: liberal with extras, strict with the types of known fields."""

from __future__ import annotations

import json

import pytest

from mcp_tornado import protocol


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"offer","sdp":"v=0"}',
        '{"type":"offer","sdp":null}',
        '{"type":"offer","offer":{"type":"offer","sdp":"v=0","extra":[1]}}',
        '{"type":"answer","answer":{"sdp":"v=0"},"sdp":"v=0"}',
        '{"type":"candidate","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}}',
        '{"type":"candidate","candidate":{"sdpMLineIndex":"odd but allowed","x":{"y":[]}}}',
        '{"type":"candidate","candidate":"candidate:2","sdpMLineIndex":0}',
        '{"type":"candidate","candidate":null}',
        '{"type":"candidate"}',
        '{"type":"leave","reason":"bye","sdp":5}',  # leave checks nothing
        '{"sdp":"before the type","type":"offer"}',
        '{"type":"offer","unknown":{"deep":' + "[" * 200 + "]" * 200 + "}}",
    ],
)
def test_existing_and_liberal_shapes_pass(frame: str) -> None:
    assert protocol.check_client_frame(frame) is None


@pytest.mark.parametrize(
    ("frame", "where"),
    [
        ('{"type":"offer","sdp":5}', "$.sdp"),
        ('{"type":"offer","sdp":["v=0"]}', "$.sdp"),
        ('{"type":"answer","sdp":{}}', "$.sdp"),
        ('{"type":"offer","offer":"v=0"}', "$.offer"),
        ('{"type":"offer","offer":{"sdp":1}}', "$.offer.sdp"),
        ('{"type":"answer","answer":[]}', "$.answer"),
        ('{"type":"candidate","candidate":5}', "$.candidate"),
        ('{"type":"candidate","candidate":[]}', "$.candidate"),
        ('{"type":"candidate","candidate":true}', "$.candidate"),
    ],
)
def test_known_fields_of_the_wrong_type_are_invalid(frame: str, where: str) -> None:
    error = protocol.check_client_frame(frame)
    assert error is not None and error.code == "invalid_message"
    assert where in error.message


def test_a_duplicate_type_key_is_invalid_not_unknown() -> None:
    error = protocol.check_client_frame('{"type":"offer","type":"leave"}')
    assert error is not None and error.code == "invalid_message"


@pytest.mark.parametrize("depth", [2_000, 30_000])
def test_deep_nesting_is_an_error_not_a_crash(depth: int) -> None:
    inner = "[" * depth + "]" * depth
    for frame in (inner, '{"type":"offer","x":' + inner + "}"):
        error = protocol.check_client_frame(frame)
        assert error is not None and error.code == "invalid_message"


def test_error_details_are_bounded() -> None:
    for frame in (
        json.dumps({"type": "z" * 50_000}),
        json.dumps({"type": "offer", "sdp": 1, "k" * 50_000: 1}),
        json.dumps({"type": "offer", "offer": {"sdp": ["x" * 50_000]}}),
    ):
        error = protocol.check_client_frame(frame)
        assert error is not None and len(protocol.encode_event(error)) < 300


def test_unknown_types_with_quotes_are_reported() -> None:
    error = protocol.check_client_frame('{"type":"sh\'o\\"ut"}')
    assert error is not None and error.code == "unknown_type"
    assert error.message == "Unknown message type: sh'o\"ut"


def test_every_error_code_is_listed() -> None:
    assert {
        "room_full",
        "invalid_json",
        "invalid_message",
        "unknown_type",
        "router_unavailable",
        "rate_limited",
        "invalid_room",
        "invalid_token",
        "token_expired",
        "invalid_resume",
    } == protocol.ERROR_CODES


def test_every_close_code_has_a_reason() -> None:
    codes = [v for k, v in vars(protocol.CloseCode).items() if k.isupper()]
    assert sorted(codes) == [
        1001, 1002, 1007, 1009, 1013, 4008, 4400, 4401, 4409, 4410, 4411, 4429,
    ]  # fmt: skip
    assert all(protocol.close_reason(code) for code in codes)
