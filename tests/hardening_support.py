"""A :class:`~tests.support.Cluster` whose workers take extra flags (limits, origins, tokens)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support import FAST, Cluster, spawn


class LimitedCluster(Cluster):
    """Like :class:`Cluster`, with ``worker_args`` on every worker and ``env`` added for them."""

    def __init__(
        self,
        tmp: Path,
        workers: int = 1,
        worker_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(tmp, workers)
        self.worker_args = worker_args
        self.env = env or {}

    def start_worker(self, index: int) -> subprocess.Popen[bytes]:
        with _environ(self.env):
            process = spawn(
                "worker", "--router", self.endpoint, "--port", str(self.ports[index]), *FAST,
                "--shutdown-timeout", "3", *self.worker_args, log=self.log,
            )  # fmt: skip
        if index < len(self.workers):
            self.workers[index] = process
        else:
            self.workers.append(process)
        return process

    def alive(self) -> bool:
        processes = [self.router, *self.workers]
        return all(p is not None and p.poll() is None for p in processes)


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def limited_cluster(
    tmp: Path, workers: int = 1, *worker_args: str, env: dict[str, str] | None = None
) -> Iterator[LimitedCluster]:
    cluster = LimitedCluster(tmp, workers, worker_args, env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
