"""``mcp-tornado serve``: start the routers and N workers, keep them alive, stop them cleanly.

The routers: one, or one per shard (``router-0``...), or none on a worker host
whose workers link to routers elsewhere.

The supervisor is deliberately dumb: it does not speak ZeroMQ or know about
rooms.  It restarts any child that exits (with exponential backoff while a
child keeps dying soon after start), and on SIGTERM/SIGINT it stops the
workers first (each closes its clients with 1001 and drains), then the routers.
SIGHUP is passed on to the workers that are ready (they reload their TLS
certificate).
Children get ``PR_SET_PDEATHSIG`` so that a supervisor killed with SIGKILL does
not leave orphans serving the port.

A child that *cannot start* is not restarted.  Restarting helps a child that
crashed; it cannot help one whose port is taken (by another program, or by
another deployment's workers: :mod:`mcp_tornado.ports`), whose address does
not exist, or whose configuration is bad: that child would fail the same way
forever.  Such a child exits with :data:`CANNOT_START` (78, ``EX_CONFIG`` of
``sysexits.h``) after reporting the reason, one line, through
:func:`report`; the supervisor then prints that line once
(``mcp-tornado: REASON``), stops every other child and exits with
:data:`CANNOT_START` too.  Any other exit status, and any death by a signal, is
a crash: the child is restarted with backoff.

Children also report when they are ready (a worker once it listens), and when
every worker has, the supervisor prints one line saying where to go.  Reports
travel through a pipe that the supervisor passes to each child, its number in
``$MCP_TORNADO_STATUS_FD``; a child started by hand has none and prints its
reason on stderr instead.

Each child also finds its name (``router`` or ``router-0``..., ``worker-0``...) in
``$MCP_TORNADO_CHILD``, for its log lines (:mod:`mcp_tornado.logs`).
Each child also learns its place, for metrics and ``mcp-tornado status``
(:mod:`mcp_tornado.telemetry`): a worker its slot (0 .. N-1) in
``$MCP_TORNADO_SLOT``, and every child how many times its slot was restarted
in ``$MCP_TORNADO_GENERATION``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Final, NoReturn

log = logging.getLogger(__name__)

CANNOT_START: Final = 78  # a child's exit status: "cannot start, do not restart me" (EX_CONFIG)
STATUS_FD_ENV: Final = "MCP_TORNADO_STATUS_FD"  # the pipe a child reports to, set by the supervisor
# A child's name ("router", "worker-0"), set by the supervisor: its log lines say it.
CHILD_ENV: Final = "MCP_TORNADO_CHILD"
SLOT_ENV: Final = "MCP_TORNADO_SLOT"  # a worker's index, set by the supervisor
GENERATION_ENV: Final = (
    "MCP_TORNADO_GENERATION"  # restarts of a child's slot, set by the supervisor
)

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
    ready: bool = False  # this process of the child reported ready
    slot: int = -1  # a worker's index (passed on to it); -1: not a worker

    def start(self, status_fd: int | None = None) -> None:
        env = {
            **os.environ,
            **(self.env or {}),
            CHILD_ENV: self.name,
            GENERATION_ENV: str(self.restarts),
        }
        if self.slot >= 0:
            env[SLOT_ENV] = str(self.slot)
        if status_fd is not None:
            env[STATUS_FD_ENV] = str(status_fd)
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            preexec_fn=_die_with_parent,
            pass_fds=() if status_fd is None else (status_fd,),
        )
        self.started_at = time.monotonic()
        self.ready = False
        log.debug(
            "supervisor: started %s (pid %d)",
            self.name,
            self.process.pid,
            extra={"event": "child_started", "child": self.name, "child_pid": self.process.pid},
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    """Runs the routers then ``workers``, restarting whichever dies, until told to stop.

    ``router`` is the routers' command: one router (``router_env``), or with
    ``shard_envs`` one router per shard, ``router-I`` (``router`` if only one)
    started with ``router_env`` and ``shard_envs[I]``; ``None`` (a worker host): none.
    """

    def __init__(
        self,
        router: Sequence[str] | None,
        workers: Sequence[Sequence[str]],
        shutdown_timeout: float = 10.0,
        router_env: Mapping[str, str] | None = None,
        worker_env: Mapping[str, str] | None = None,
        ready_message: str | None = None,
        shard_envs: Sequence[Mapping[str, str]] = (),
    ) -> None:
        if router is None:
            self.routers: list[Child] = []
        elif not shard_envs:
            self.routers = [Child("router", list(router), router_env)]
        else:
            self.routers = [
                Child(
                    f"router-{i}" if len(shard_envs) > 1 else "router",
                    list(router),
                    {**(router_env or {}), **env},
                )
                for i, env in enumerate(shard_envs)
            ]
        self.workers = [
            Child(f"worker-{i}", list(argv), worker_env, slot=i) for i, argv in enumerate(workers)
        ]
        self.shutdown_timeout = shutdown_timeout
        self.ready_message = ready_message  # printed once, when every worker first listens
        self.failure: str | None = None  # why a child could not start, if one could not
        self._stopping = False
        self._announced = False
        self._status_r = -1
        self._status_w = -1
        self._pending = b""

    @property
    def router(self) -> Child:
        """The router, or shard 0's (there is none on a worker host)."""
        return self.routers[0]

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info(
            "supervisor: signal %d, stopping", signum, extra={"event": "stopping", "signal": signum}
        )
        self.stop()

    def _on_hangup(self, signum: int, frame: FrameType | None) -> None:
        # To the workers that run their own handler by now (ready): reload the TLS certificate.
        for worker in self.workers:
            if worker.ready and worker.running() and worker.process is not None:
                worker.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (in the main thread) or :meth:`stop`."""
        try:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGHUP, self._on_hangup)
        except ValueError:  # not the main thread: stopped with stop()
            pass
        self._status_r, self._status_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            for child in (*self.routers, *self.workers):
                child.start(self._status_w)
            while not self._stopping:
                now = time.monotonic()
                for child in (*self.routers, *self.workers):
                    self._read_reports()  # before looking at exits: a reason precedes its exit
                    self._watch(child, now)
                self._announce()
                time.sleep(0.05)
            self._stop_all()
        finally:
            os.close(self._status_r)
            os.close(self._status_w)
        if self.failure is not None:
            print(f"mcp-tornado: {self.failure}", file=sys.stderr, flush=True)
            return CANNOT_START
        return 0

    def _read_reports(self) -> None:
        """Read what children reported: ``ready PID`` or ``cannot-start PID REASON`` lines."""
        while True:
            try:
                data = os.read(self._status_r, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        by_pid = {c.process.pid: c for c in (*self.routers, *self.workers) if c.process is not None}
        for line in lines:
            kind, _, rest = line.decode(errors="replace").partition(" ")
            pid_text, _, reason = rest.partition(" ")
            child = by_pid.get(int(pid_text)) if pid_text.isdigit() else None
            if child is None:
                continue
            if kind == "ready":
                child.ready = True
            elif kind == "cannot-start" and self.failure is None:
                self.failure = reason or f"{child.name} cannot start"

    def _announce(self) -> None:
        if self._announced or self.ready_message is None:
            return
        if all(w.ready and w.running() for w in self.workers):
            self._announced = True
            print(self.ready_message, flush=True)

    def _watch(self, child: Child, now: float) -> None:
        if self._stopping or child.running():
            return
        assert child.process is not None
        code = child.process.returncode
        if code == CANNOT_START:  # restarting cannot help: stop everything
            if self.failure is None:
                self.failure = f"{child.name} cannot start (exit status {code})"
            self._stopping = True
            return
        if child.restart_at == 0.0:  # just noticed the exit
            ran = now - child.started_at
            child.backoff = 0.1 if ran > _STABLE_AFTER else min(child.backoff * 2, _BACKOFF_MAX)
            child.restart_at = now + child.backoff
            log.warning(
                "supervisor: %s exited with %s after %.1fs; restarting in %.1fs",
                child.name,
                code,
                ran,
                child.backoff,
                extra={
                    "event": "child_exited",
                    "child": child.name,
                    "exit_status": code,
                    "ran": round(ran, 3),
                    "backoff": child.backoff,
                },
            )
        elif now >= child.restart_at:
            child.restart_at = 0.0
            child.restarts += 1
            child.start(self._status_w)

    def _stop_all(self) -> None:
        self._terminate(self.workers, self.shutdown_timeout)
        self._terminate(self.routers, 2.0)
        log.info("supervisor: stopped", extra={"event": "stopped"})

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
                log.warning(
                    "supervisor: pid %d ignored SIGTERM; killing it",
                    process.pid,
                    extra={"event": "child_killed", "child_pid": process.pid},
                )
                process.kill()
                process.wait()


def supervised() -> bool:
    """Whether this process was started by a supervisor that reads its reports."""
    return os.environ.get(STATUS_FD_ENV, "").isdigit()


def report(kind: str, reason: str = "") -> bool:
    """Tell the supervisor, if this process has one: ``"ready"`` or ``"cannot-start"``.

    Returns whether it was told (``False`` for a process started by hand).
    """
    fd = os.environ.get(STATUS_FD_ENV)
    if fd is None or not fd.isdigit():
        return False
    line = f"{kind} {os.getpid()} {' '.join(reason.split())}".rstrip() + "\n"
    try:
        os.write(int(fd), line.encode()[:4000])  # under PIPE_BUF: one atomic write
    except OSError as exc:
        if exc.errno in (errno.EBADF, errno.EPIPE):
            return False
        raise
    return True


def cannot_start(reason: object) -> NoReturn:
    """Stop this child for good: report ``reason`` (one line) and exit with :data:`CANNOT_START`.

    Without a supervisor the line goes to stderr, as ``mcp-tornado: REASON``.
    """
    text = " ".join(str(reason).split())
    told = False
    with contextlib.suppress(OSError):
        told = report("cannot-start", text)
    if not told:
        print(f"mcp-tornado: {text}", file=sys.stderr, flush=True)
    sys.exit(CANNOT_START)


def python_command(*args: str) -> list[str]:
    """The command line that runs ``mcp-tornado ARGS`` with this interpreter."""
    return [sys.executable, "-m", "mcp_tornado", *args]
