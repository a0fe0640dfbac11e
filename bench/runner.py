"""Runs a scenario in ``--procs`` client processes and lines their phases up.

Each worker process runs one asyncio (uvloop) event loop that drives its share of
the pairs. Workers meet at numbered barriers; the main process releases barrier
``k`` only when every worker has reached it, and takes a psutil snapshot of the
server (and of the client processes) at that moment, so phase ``k`` (between
barriers ``k`` and ``k+1``) has exact CPU and RSS figures on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from bench.procmon import ProcTree, TreeSnapshot
from bench.progress import Progress
from bench.stats import merge_counts
from bench.wsclient import TALLY, raise_nofile_limit, run_async

_MP = mp.get_context("spawn")


@dataclass
class WorkerCtx:
    """What a scenario coroutine gets inside a worker process."""

    index: int
    procs: int
    url: str
    room_prefix: str
    pair_lo: int
    pair_hi: int
    params: dict[str, Any]
    _queue: Any
    _go: list[Any]
    _progress: Any
    _abort: Any
    barrier_timeout: float = 900.0

    @property
    def aborted(self) -> bool:
        """Set by the main process (e.g. a rate sweep that already crossed its limit)."""
        return bool(self._abort.is_set())

    @property
    def pairs(self) -> range:
        return range(self.pair_lo, self.pair_hi)

    def room(self, pair: int) -> str:
        return f"{self.room_prefix}-{pair}"

    async def barrier(self, k: int, info: dict[str, Any] | None = None) -> None:
        """Report arrival at barrier ``k`` and wait (bounded) until the main process opens it."""
        self._queue.put(("barrier", self.index, k, info or {}))
        deadline = time.monotonic() + self.barrier_timeout
        event = self._go[k]
        while not event.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f"barrier {k} not released within {self.barrier_timeout}s")
            await asyncio.sleep(0.005)

    def result(self, step: int, payload: dict[str, Any]) -> None:
        self._queue.put(("result", self.index, step, payload))

    def progress(self, value: int) -> None:
        self._progress.value = value


#: A scenario's worker coroutine (bench/scenarios.py), run in each client process.
WorkerFn = Callable[[WorkerCtx], Coroutine[Any, Any, None]]


def _worker_main(
    worker: WorkerFn,
    index: int,
    procs: int,
    url: str,
    room_prefix: str,
    pair_lo: int,
    pair_hi: int,
    params: dict[str, Any],
    q: Any,
    go: list[Any],
    progress: Any,
    abort: Any,
) -> None:
    raise_nofile_limit()
    ctx = WorkerCtx(
        index, procs, url, room_prefix, pair_lo, pair_hi, params, q, go, progress, abort
    )
    try:
        run_async(lambda: worker(ctx))
    except BaseException:
        q.put(("error", index, -1, {"traceback": traceback.format_exc()}))
    finally:
        q.put(("done", index, -1, TALLY.as_dict()))


@dataclass
class RunOutput:
    """What the main process collected from one multi-process run."""

    results: list[list[dict[str, Any]]]  # [step] -> one payload per worker
    barrier_infos: list[list[dict[str, Any]]]  # [barrier] -> one info per worker
    server_snaps: list[TreeSnapshot | None]  # [barrier]
    client_snaps: list[TreeSnapshot]  # [barrier]
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    # The client processes' frames sent and joined events, summed (wsclient.Tally).
    tally: dict[str, int] = field(default_factory=dict)


#: Called when every worker reached barrier k; returning True aborts the remaining steps.
BarrierHook = Callable[[int, "RunOutput"], bool | None]


def split_pairs(n_pairs: int, procs: int) -> list[tuple[int, int]]:
    """Contiguous, near-equal pair ranges, one per process (empty ones dropped)."""
    procs = max(1, min(procs, n_pairs)) if n_pairs > 0 else 1
    base, extra = divmod(n_pairs, procs)
    out = []
    lo = 0
    for i in range(procs):
        hi = lo + base + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def run_workers(
    worker: WorkerFn,
    url: str,
    n_pairs: int,
    procs: int,
    params: dict[str, Any],
    n_barriers: int,
    server: ProcTree | None,
    timeout: float,
    progress: Progress | None = None,
    on_barrier: BarrierHook | None = None,
    phase_names: list[str] | None = None,
) -> RunOutput:
    """Start the workers, release barriers in order, collect results.

    A worker sends at most one result per step (numbered from 0) and a run has fewer
    steps than barriers. Everything is bounded by ``timeout`` seconds; stragglers are
    killed.
    """
    room_prefix = f"b{os.getpid()}x{int(time.time() * 1000) % 10**8}"
    ranges = split_pairs(n_pairs, procs)
    q = _MP.Queue()
    go = [_MP.Event() for _ in range(n_barriers)]
    abort = _MP.Event()
    counters: list[Synchronized[int]] = [_MP.RawValue("q", 0) for _ in ranges]
    workers = []
    for i, (lo, hi) in enumerate(ranges):
        proc = _MP.Process(
            target=_worker_main,
            args=(
                worker,
                i,
                len(ranges),
                url,
                room_prefix,
                lo,
                hi,
                params,
                q,
                go,
                counters[i],
                abort,
            ),
            name=f"bench-{worker.__name__}-{i}",
            daemon=True,
        )
        proc.start()
        workers.append(proc)
    client = ProcTree([p.pid for p in workers if p.pid is not None])
    out = RunOutput(
        results=[[] for _ in range(max(1, n_barriers - 1))],
        barrier_infos=[[] for _ in range(n_barriers)],
        server_snaps=[None] * n_barriers,
        client_snaps=[],
    )
    arrivals: list[list[dict[str, Any]]] = [[] for _ in range(n_barriers)]
    done = 0
    started = time.monotonic()
    deadline = started + timeout
    phase = "starting"
    try:
        while done < len(workers):
            if time.monotonic() > deadline:
                out.errors.append(f"run timed out after {timeout:.0f}s")
                break
            try:
                kind, index, k, payload = q.get(timeout=0.2)
            except queue.Empty:
                if progress is not None:
                    progress.update(phase, sum(c.value for c in counters))
                if all(not p.is_alive() for p in workers):
                    # drain what is left, then stop
                    with contextlib.suppress(queue.Empty):
                        while True:
                            item = q.get(timeout=0.5)
                            if item[0] == "result":
                                out.results[item[2]].append(item[3])
                            elif item[0] == "error":
                                out.errors.append(item[3]["traceback"])
                    break
                continue
            if kind == "barrier":
                arrivals[k].append(payload)
                if len(arrivals[k]) == len(workers):
                    if on_barrier is not None and on_barrier(k, out):
                        abort.set()
                    out.server_snaps[k] = server.snapshot() if server is not None else None
                    while len(out.client_snaps) < k:
                        out.client_snaps.append(client.snapshot())
                    out.client_snaps.append(client.snapshot())
                    out.barrier_infos[k] = arrivals[k]
                    go[k].set()
                    if phase_names is not None and k < len(phase_names):
                        phase = phase_names[k]
                    if progress is not None:
                        progress.update(phase, sum(c.value for c in counters), force=True)
            elif kind == "result":
                out.results[k].append(payload)
            elif kind == "error":
                out.errors.append(f"worker {index}: {payload['traceback']}")
                # A dead worker never reaches the next barrier: release everything.
                for event in go:
                    event.set()
            elif kind == "done":
                done += 1
                merge_counts(out.tally, payload)
    finally:
        for event in go:
            event.set()
        for proc in workers:
            proc.join(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
        for proc in workers:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        if progress is not None:
            progress.finish()
    out.wall_s = time.monotonic() - started
    for err in out.errors:
        print(f"bench: {err.strip()}", file=sys.stderr)
    return out
