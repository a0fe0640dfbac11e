"""bench/resume_storm.py end to end, small: every peer of the killed worker resumes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_storm_resumes_every_peer_and_reports_cpu() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.resume_storm", "--peers", "30", "--jitter", "0.2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "partners told peer-reconnecting: 30," in out, out
    assert re.search(r"resumed: 30, all within [\d.]+s of the kill", out), out
    assert re.search(r"CPU over that time: router [\d.]+s, surviving worker [\d.]+s", out), out
    assert "problems: none" in out, out
