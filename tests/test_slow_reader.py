"""A peer that never reads must not grow the server's memory: it is dropped with 4008.

The slow peer is a raw socket with a tiny receive buffer that stops reading;
its partner, on another worker, floods it with ~48 MB of 60 KB offers.  The
slow peer's worker is sampled (RSS) throughout.  A control run with the limit
off shows the measurement would catch the growth.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from mcp_tornado import protocol
from tests.rawws import Closed, RawWebSocket
from tests.support import Cluster, running_cluster

FRAME = '{"type":"offer","sdp":"' + "s" * 60_000 + '"}'
FLOOD_FRAMES = 800  # ~48 MB
MiB = 1024 * 1024


class PeakRss:
    """Samples a process's RSS every few milliseconds in a thread; ``peak`` is the maximum."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.baseline


def flood_a_sleeper(cluster: Cluster) -> tuple[RawWebSocket, RawWebSocket, int, bool]:
    """Pair a non-reading peer (worker 0) with a flooder (worker 1); flood; measure worker 0.

    Returns (sleeper, flooder, RSS growth of worker 0, whether the flooder was told the
    sleeper left).
    """
    name = f"slow-{uuid.uuid4().hex[:8]}"
    sleeper = RawWebSocket.connect(cluster.ports[0], f"?room={name}", rcvbuf=4096)
    assert sleeper.recv_json()["type"] == "joined"
    flooder = RawWebSocket.connect(cluster.ports[1], f"?room={name}")
    assert flooder.recv_json()["type"] == "joined"
    assert sleeper.recv_json()["type"] == "peer-joined"
    # From here on the sleeper reads nothing.
    meter = PeakRss(cluster.workers[0].pid)
    for _ in range(FLOOD_FRAMES):
        flooder.send_text(FRAME)
    time.sleep(1.0)  # let everything in flight land
    growth = meter.stop()
    told = False
    try:
        while True:
            message = flooder.recv_json(timeout=1.0)
            if message["type"] == "peer-left":
                told = True
                break
    except TimeoutError:
        pass
    return sleeper, flooder, growth, told


def test_a_peer_that_stops_reading_is_dropped_and_memory_stays_bounded(tmp_path: Path) -> None:
    with running_cluster(tmp_path, 2, "--rate-limit", "0") as cluster:
        sleeper, flooder, growth, told = flood_a_sleeper(cluster)
        assert told, "the flooder learns its partner is gone"
        assert growth < 24 * MiB, f"worker grew by {growth / MiB:.1f} MiB"
        # The sleeper wakes up: what was queued (at most ~1 MiB plus kernel buffers), then 4008.
        received = 0
        with pytest.raises(Closed) as closed:
            while True:
                received += len(sleeper.recv_frame(timeout=3).payload)
        assert closed.value.code == protocol.CloseCode.TOO_SLOW
        assert received < 8 * MiB
        assert cluster.alive()
        flooder.close()
        sleeper.close()
        print(f"\nslow reader: worker RSS grew {growth / MiB:.1f} MiB; {received} bytes queued")


def test_control_without_the_limit_memory_grows(tmp_path: Path) -> None:
    # Proves the measurement above can see growth: with no cap the worker buffers the flood.
    with running_cluster(tmp_path, 2, "--rate-limit", "0", "--max-pending-bytes", "0") as cluster:
        sleeper, flooder, growth, told = flood_a_sleeper(cluster)
        assert not told
        assert growth > 32 * MiB, f"worker grew by only {growth / MiB:.1f} MiB"
        print(f"\nno limit: worker RSS grew {growth / MiB:.1f} MiB")
        sleeper.close()
        flooder.close()
