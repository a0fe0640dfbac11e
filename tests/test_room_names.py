"""Room-name rules."""

from __future__ import annotations

import pytest

from mcp_tornado.room_names import room_name_problem


@pytest.mark.parametrize(
    "name",
    ["a", "lobby", "x" * 64, "caf\u00e9 room", "a+b", "A-Z_0.9~", "\u65e5\u672c", "r!#$%&()*"],
)
def test_valid_room_names(name: str) -> None:
    assert room_name_problem(name) is None


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 65,
        " lead",
        "trail ",
        "tab\there",
        "new\nline",
        "nul\x00",
        "bidi\u202eevil",
        "zero\u200bwidth",
        "nb\u00a0sp",
        "\ud800",
        "private\ue000",
    ],
)
def test_invalid_room_names(name: str) -> None:
    assert room_name_problem(name) is not None


def test_room_length_is_configurable() -> None:
    assert room_name_problem("x" * 8, max_length=8) is None
    assert room_name_problem("x" * 9, max_length=8) is not None
