"""Shared secrets (the room-token secret, the TURN secret): from a file, or one variable.

Never from the command line.  ``serve`` hands a secret to its children in its
own environment variable with :func:`os.fsdecode`, so :func:`load` reads it
back with :func:`os.fsencode`: the same bytes, whatever they are.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

MIN_BYTES: Final = 16


def check(secret: bytes, what: str) -> None:
    """Raise ``ValueError`` if ``secret`` is too short to sign anything with."""
    if len(secret) < MIN_BYTES:
        raise ValueError(f"the {what} secret must be at least {MIN_BYTES} bytes")


def load(path: Path | None, env: str, what: str) -> bytes | None:
    """The secret in the file at ``path`` if given, else in ``$env``; ``None``: not set.

    Surrounding whitespace (a trailing newline) is ignored.  Raises
    ``ValueError`` for a secret shorter than :data:`MIN_BYTES` bytes.
    """
    if path is not None:
        secret = path.read_bytes().strip()
    else:
        value = os.environ.get(env, "").strip()
        if not value:
            return None
        secret = os.fsencode(value)
    check(secret, what)
    return secret
