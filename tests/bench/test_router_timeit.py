"""bench/router_timeit.py: the router's loop on real sockets routes every relay and is timed."""

from __future__ import annotations

import math
import threading

from bench import router_timeit


def test_every_relay_is_routed_and_timed() -> None:
    before = threading.active_count()
    cpu_ns, trip_us = router_timeit.measure(messages=40, repeat=2)
    # _until raised had any relay not come back; a router that did nothing costs no CPU.
    assert 0 < cpu_ns < 1e9 and math.isfinite(cpu_ns)
    assert trip_us > 0
    assert threading.active_count() == before  # the router's thread ended
