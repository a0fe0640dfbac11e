"""Server-side measurements: psutil snapshots of a process tree, spawning servers.

Everything works on any server: a pid (``--server-pid``) or a command line
(``--spawn``) is all it needs; CPU and RSS are summed over the pid and all of its
children, and each process is also labelled from its command line (``router``,
``worker``, ``main`` ...) so the router's CPU can be told from the workers'.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil


@dataclass(frozen=True)
class ProcSample:
    pid: int
    label: str
    cmdline: str
    cpu_s: float
    rss: int


@dataclass
class TreeSnapshot:
    t: float
    procs: dict[int, ProcSample] = field(default_factory=dict)

    @property
    def rss(self) -> int:
        return sum(p.rss for p in self.procs.values())

    @property
    def cpu_s(self) -> float:
        return sum(p.cpu_s for p in self.procs.values())


def label_process(cmdline: str, is_root: bool) -> str:
    """Classify a server process by its command line."""
    low = cmdline.lower()
    # The subcommand word decides first ("worker --router ipc://..." is a worker).
    for token in low.split():
        if token in ("router", "broker"):
            return "router"
        if token == "worker":
            return "worker"
        if token == "serve":
            return "main"
    if is_root:
        return "main"
    if "router" in low or "broker" in low:
        return "router"
    if "worker" in low:
        return "worker"
    return "child"


class ProcTree:
    """Samples CPU time and RSS of a pid and all its descendants."""

    def __init__(self, pid: int | list[int]) -> None:
        self.roots = [pid] if isinstance(pid, int) else list(pid)
        self.pid = self.roots[0]
        self._cache: dict[int, psutil.Process] = {}
        self._lock = threading.Lock()
        self.peak_rss = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _processes(self) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        for pid in self.roots:
            try:
                root = self._cache.get(pid) or psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        out = []
        for proc in procs:
            cached = self._cache.get(proc.pid)
            try:
                if cached is None or cached.create_time() != proc.create_time():
                    self._cache[proc.pid] = proc
                    cached = proc
            except psutil.Error:
                continue
            out.append(cached)
        return out

    def snapshot(self) -> TreeSnapshot:
        with self._lock:
            snap = TreeSnapshot(t=time.monotonic())
            for proc in self._processes():
                try:
                    with proc.oneshot():
                        cpu = proc.cpu_times()
                        mem = proc.memory_info()
                        cmd = " ".join(proc.cmdline()) or proc.name()
                except psutil.Error:
                    continue
                snap.procs[proc.pid] = ProcSample(
                    pid=proc.pid,
                    label=label_process(cmd, proc.pid == self.pid),
                    cmdline=cmd[:160],
                    cpu_s=cpu.user + cpu.system,
                    rss=mem.rss,
                )
            self.peak_rss = max(self.peak_rss, snap.rss)
            return snap

    def start_peak_sampler(self, interval: float = 0.5) -> None:
        """Background thread that only keeps ``peak_rss`` up to date."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                self.snapshot()

        self._thread = threading.Thread(target=loop, name="proc-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def cpu_between(a: TreeSnapshot, b: TreeSnapshot) -> dict[str, Any]:
    """CPU used between two snapshots: total, by label and by process (percent of one core)."""
    wall = max(1e-9, b.t - a.t)
    by_label: dict[str, float] = {}
    per_proc: list[dict[str, Any]] = []
    total = 0.0
    for pid, after in b.procs.items():
        before = a.procs.get(pid)
        used = after.cpu_s - (before.cpu_s if before is not None else 0.0)
        used = max(0.0, used)
        total += used
        by_label[after.label] = by_label.get(after.label, 0.0) + used
        per_proc.append(
            {
                "pid": pid,
                "label": after.label,
                "cmdline": after.cmdline,
                "cpu_pct": round(100.0 * used / wall, 1),
                "rss_mib": round(after.rss / 2**20, 1),
            }
        )
    per_proc.sort(key=lambda row: (row["label"], row["pid"]))
    return {
        "wall_s": wall,
        "cpu_s": total,
        "cpu_pct": 100.0 * total / wall,
        "cpu_pct_by_label": {k: round(100.0 * v / wall, 1) for k, v in sorted(by_label.items())},
        "procs": per_proc,
        "rss_mib": round(b.rss / 2**20, 1),
    }


def url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
    return host, port


def check_loopback(url: str) -> None:
    """Refuse any target that is not on this machine's loopback."""
    host, _ = url_host_port(url)
    if host == "localhost" or host == "::1" or host.startswith("127."):
        return
    raise SystemExit(f"bench only targets loopback addresses, not {host!r} ({url})")


def port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SpawnedServer:
    """A server started by the bench in its own process group; ``stop`` kills the group."""

    def __init__(
        self,
        command: str,
        url: str,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.command = command
        self.url = url
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0, probe: bool = True) -> SpawnedServer:
        """Start; wait for the port, then (``probe``) until a probe pair can talk."""
        argv = shlex.split(self.command)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
            out: Any = self._log
        else:
            out = subprocess.DEVNULL
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # A process group of its own (stop() kills the group), but not a session
            # of its own: Linux's autogroup scheduling gives every session an equal
            # share of the CPU, which would cap all of a multi-process server at one
            # core while the load client has the other (window-8 relay, 2 workers:
            # 42-68k deliveries/s in its own session, 125k sharing the client's).
            process_group=0,
        )
        host, port = url_host_port(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"server exited with {self.proc.returncode} before listening: {self.command}"
                )
            if port_open(host, port):
                if not probe or self._probe(deadline - time.monotonic()):
                    return self
                break
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"server not ready on {host}:{port} within {timeout}s: {self.command}")

    def _probe(self, timeout: float) -> bool:
        from bench.scenarios import probe_ready
        from bench.wsclient import run_async

        return run_async(lambda: probe_ready(self.url, max(1.0, timeout)))

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        # Whatever is left of the group (workers that outlived the parent) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> SpawnedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count() or 0,
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
    }
