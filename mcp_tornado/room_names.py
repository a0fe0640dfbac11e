"""Room-name rules: which names a client may join (and ``mcp-tornado token`` may grant)."""

from __future__ import annotations

import unicodedata
from typing import Final

from mcp_tornado.settings import LimitSettings

# Letters, marks, numbers, punctuation and symbols of any script, and the plain
# space.  Refused: control and format characters (bidi overrides, zero-width
# joiners), surrogates, private-use and unassigned code points, and every other
# kind of space or line break.
_ROOM_CATEGORIES: Final = frozenset("LMNPS")


def room_name_problem(name: str, max_length: int = LimitSettings().max_room_length) -> str | None:
    """``None`` if ``name`` is a valid room name, else what is wrong with it."""
    if not name:
        return "the room name is empty"
    if len(name) > max_length:
        return f"the room name is longer than {max_length} characters"
    if name != name.strip():
        return "the room name starts or ends with a space"
    for char in name:
        if char != " " and unicodedata.category(char)[0] not in _ROOM_CATEGORIES:
            return f"the room name contains a disallowed character (U+{ord(char):04X})"
    return None
