"""One client floods a real worker for 5 s with frames that carry no message (issue 12, item 2).

Run from the repository root: ``python -m bench.frame_floods KIND`` with KIND one of
``continuation`` (one fragment, then empty continuation frames), ``pong`` (125-byte
unsolicited pongs), ``ping`` (empty pings) or ``leave`` (whole ``{"type":"leave"}``
messages).  Starts a router and one worker with the default limits, and prints the
worker's CPU time (utime + stime from /proc) over the 5 s, what was sent, and what
the client got back: ``rate_limited``, the close code, and when the flood was cut off.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.rawws import (
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    RawWebSocket,
    decode_server_frames,
    encode_frame,
)
from tests.support import running_cluster

SECONDS = 5.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(kind: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, running_cluster(Path(tmp), 1) as cluster:
        pid = cluster.workers[0].pid
        ws = RawWebSocket.connect(cluster.ports[0], "?room=flood")
        ws.recv_json()  # joined
        if kind == "continuation":
            ws.send_raw(encode_frame(TEXT, b"{", fin=False))
            unit = encode_frame(CONTINUATION, b"", fin=False)
        elif kind == "pong":
            unit = encode_frame(PONG, b"x" * 125)
        elif kind == "ping":
            unit = encode_frame(PING, b"")
        else:
            unit = encode_frame(TEXT, b'{"type":"leave"}')
        chunk = unit * (65536 // len(unit))
        got = bytearray()
        stop = threading.Event()

        def reader() -> None:
            ws.sock.settimeout(0.2)
            while not stop.is_set():
                try:
                    data = ws.sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                got.extend(data)

        thread = threading.Thread(target=reader)
        thread.start()
        sent, error = 0, "none"
        before, started = cpu_seconds(pid), time.monotonic()
        ws.sock.settimeout(0.5)
        while time.monotonic() - started < SECONDS:
            try:
                sent += ws.sock.send(chunk)
            except TimeoutError:
                continue  # the worker stopped reading
            except OSError as exc:
                error = type(exc).__name__
                break
        cut_off = time.monotonic() - started
        time.sleep(max(0.0, SECONDS - cut_off))  # the CPU over the same 5 s either way
        used = cpu_seconds(pid) - before
        stop.set()
        thread.join()
        frames = decode_server_frames(bytes(got))
        limited = any(b"rate_limited" in f.payload for f in frames if f.opcode == TEXT)
        closes = [f.close_code for f in frames if f.opcode == CLOSE]
        print(
            f"{kind}: sent {sent / 1e6:.1f} MB = {sent // len(unit) / 1e6:.2f} M frames until"
            f" {cut_off:.2f} s ({error}); worker CPU {used:.2f} s"
            f" ({100 * used / SECONDS:.0f}% of a core); rate_limited={limited}, close={closes}"
        )


if __name__ == "__main__":
    main(sys.argv[1])
