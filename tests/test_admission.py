"""Admission: the query a client connects with, the connection cap, the bucket it gets."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_tornado import protocol
from mcp_tornado.admission import Admission, Gatekeeper, Refusal
from mcp_tornado.room_names import room_name_problem
from mcp_tornado.settings import LimitSettings


def test_admission_parses_the_query_like_before() -> None:
    gate = Gatekeeper(LimitSettings())
    assert gate.admit({}) == Admission("default")
    assert gate.admit({"room": [b""]}) == Admission("default")
    assert gate.admit({"room": [b"a", b" b "]}) == Admission("b")  # last one, stripped
    refusal = gate.admit({"room": [b"\xff"]})
    assert isinstance(refusal, Refusal) and refusal.close_code == 4400
    assert json.loads(refusal.event)["code"] == "invalid_room"


def test_connection_cap_and_unlimited() -> None:
    gate = Gatekeeper(LimitSettings(max_connections=2))
    gate.connections = 1
    assert not gate.full()
    gate.connections = 2
    assert gate.full()
    assert not Gatekeeper(LimitSettings(max_connections=0)).full()
    assert Gatekeeper(LimitSettings(rate=0)).bucket(0.0) is None


@settings(deadline=None, derandomize=True, database=None, max_examples=300)
@given(
    query=st.dictionaries(
        st.sampled_from(["room", "token", "x"]), st.lists(st.binary(max_size=80), max_size=3)
    ),
    secret=st.sampled_from([None, b"s" * 16]),
)
def test_admission_never_crashes(query: dict[str, list[bytes]], secret: bytes | None) -> None:
    verdict = Gatekeeper(LimitSettings(token_secret=secret)).admit(query)
    if isinstance(verdict, Refusal):
        assert verdict.close_code in {4400, 4401}
        assert json.loads(verdict.event)["code"] in protocol.ERROR_CODES
    else:
        assert room_name_problem(verdict.room) is None and secret is None
