"""A plain progress line on stderr (``\\r`` on a terminal, a line every few seconds otherwise)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

#: Phases after (or before) the measured ones: no bar and no rate, only the count so far
#: (a bar there read ``done [....] 0.0%`` at the end of a finished churn).
UNTIMED = ("starting", "closing", "done")


class Progress:
    def __init__(
        self,
        title: str,
        total: int | None = None,
        duration: float | None = None,
        stream: TextIO | None = None,
        enabled: bool = True,
    ) -> None:
        self.title = title
        self.total = total
        self.duration = duration
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_phase = ""
        self._phase_started = self.started
        self._drawn = False

    def render(self, phase: str, count: int, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        elapsed = now - self.started
        if phase in UNTIMED:
            return f"{self.title} {phase:<10} {elapsed:7.1f}s  count={count}"
        in_phase = now - self._phase_started
        frac: float | None = None
        if self.total:
            frac = min(1.0, count / self.total)
        elif self.duration:
            frac = min(1.0, in_phase / self.duration)
        bar = ""
        if frac is not None:
            filled = int(frac * 30)
            bar = "[" + "#" * filled + "." * (30 - filled) + f"] {frac * 100:5.1f}% "
        rate = count / in_phase if in_phase > 0 else 0.0
        return f"{self.title} {phase:<10} {bar}{elapsed:7.1f}s  count={count} ({rate:,.0f}/s)"

    def update(self, phase: str, count: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if phase != self._last_phase:
            self._last_phase = phase
            self._phase_started = now
        interval = 0.25 if self.tty else 5.0
        if not force and now - self._last_draw < interval:
            return
        self._last_draw = now
        line = self.render(phase, count, now)
        if self.tty:
            self.stream.write("\r" + line[:150].ljust(150))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
