"""The garbage collector's settings for server processes (mcp_tornado.collector)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import gc
from mcp_tornado import collector
before = gc.get_threshold()
collector.tune()
print(before, gc.get_threshold(), gc.get_freeze_count() > 0)
"""


def test_tune_collects_rarely_and_freezes_start_up_objects() -> None:
    # In a process of its own: the settings are global to the interpreter.
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split(")")
    assert out[0] + ")" == "(700, 10, 10)"  # Python's defaults, until tuned
    assert out[1].strip() + ")" == "(50000, 20, 100)"
    assert out[2].strip() == "True"
