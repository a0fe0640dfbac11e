"""``mcp-tornado serve``: start one router and N workers, keep them alive, stop them cleanly.

The supervisor is deliberately dumb: it does not speak ZeroMQ or know about
rooms.  It restarts any child that exits (with exponential backoff while a
child keeps dying soon after start), and on SIGTERM/SIGINT it stops the
workers first (each closes its clients with 1001 and drains), then the router.
Children get ``PR_SET_PDEATHSIG`` so that a supervisor killed with SIGKILL does
not leave orphans serving the port.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger(__name__)

_STABLE_AFTER = 10.0  # a child that ran this long is healthy again: reset its backoff
_BACKOFF_MAX = 5.0


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class Child:
    """A supervised process: its command line and restart bookkeeping."""

    name: str
    argv: list[str]
    env: Mapping[str, str] | None = None  # added to this process's environment
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 0.1
    restart_at: float = 0.0
    restarts: int = field(default=0)

    def start(self) -> None:
        env = {**os.environ, **self.env} if self.env is not None else None
        self.process = subprocess.Popen(self.argv, env=env, preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        log.info("supervisor: started %s (pid %d)", self.name, self.process.pid)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Runs ``router`` then ``workers``, restarting whichever dies, until told to stop."""

    def __init__(
        self,
        router: Sequence[str],
        workers: Sequence[Sequence[str]],
        shutdown_timeout: float = 10.0,
        router_env: Mapping[str, str] | None = None,
        worker_env: Mapping[str, str] | None = None,
    ) -> None:
        self.router = Child("router", list(router), router_env)
        self.workers = [
            Child(f"worker-{i}", list(argv), worker_env) for i, argv in enumerate(workers)
        ]
        self.shutdown_timeout = shutdown_timeout
        self._stopping = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("supervisor: signal %d, stopping", signum)
        self.stop()

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (in the main thread) or :meth:`stop`."""
        try:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        except ValueError:  # not the main thread: stopped with stop()
            pass
        self.router.start()
        for worker in self.workers:
            worker.start()
        while not self._stopping:
            now = time.monotonic()
            for child in (self.router, *self.workers):
                self._watch(child, now)
            time.sleep(0.05)
        self._stop_all()
        return 0

    def _watch(self, child: Child, now: float) -> None:
        if child.running():
            return
        if child.restart_at == 0.0:  # just noticed the exit
            assert child.process is not None
            code = child.process.returncode
            ran = now - child.started_at
            child.backoff = 0.1 if ran > _STABLE_AFTER else min(child.backoff * 2, _BACKOFF_MAX)
            child.restart_at = now + child.backoff
            log.warning(
                "supervisor: %s exited with %s after %.1fs; restarting in %.1fs",
                child.name,
                code,
                ran,
                child.backoff,
            )
        elif now >= child.restart_at:
            child.restart_at = 0.0
            child.restarts += 1
            child.start()

    def _stop_all(self) -> None:
        self._terminate(self.workers, self.shutdown_timeout)
        self._terminate([self.router], 2.0)
        log.info("supervisor: stopped")

    @staticmethod
    def _terminate(children: list[Child], timeout: float) -> None:
        live = [c.process for c in children if c.process is not None and c.running()]
        for process in live:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in live:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("supervisor: pid %d ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait()


def python_command(*args: str) -> list[str]:
    """The command line that runs ``mcp-tornado ARGS`` with this interpreter."""
    return [sys.executable, "-m", "mcp_tornado", *args]
