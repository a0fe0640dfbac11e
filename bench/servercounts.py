"""The server's own counts of a run (its Prometheus ``/metrics``), against the client's.

Usage::

    before = quiet(url)                      # before the run, once nothing moves
    ... run ...
    after = settled(url, before, client)     # once the server's counts stopped moving
    check = compare(before, after, client)   # {"server": ..., "client": ..., "disagree": [...]}

mcp-tornado's router serves the totals of every worker (``--metrics-port``);
workers report them once per heartbeat, so the figures after a run are
read once they have stopped changing.  What must agree: the client frames the
server accepted for relay and the text frames the load client sent
(``mcp_messages_relayed_total``), and the ``joined`` events the clients got and
the joins the server counted (``mcp_joins_total{outcome="ok"}``).
"""

from __future__ import annotations

import time
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

#: Figure -> (metric sample name, labels it must carry), summed over the other labels.
FIGURES = {
    "messages_relayed": ("mcp_messages_relayed_total", {}),
    "joins": ("mcp_joins_total", {"outcome": "ok"}),
}
#: Figure -> the client tally it must equal (bench.wsclient.Tally).
CLIENT_FIGURE = {"messages_relayed": "sent", "joins": "joined"}


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """The server's :data:`FIGURES` now."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    out = dict.fromkeys(FIGURES, 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for figure, (name, labels) in FIGURES.items():
                if sample.name == name and labels.items() <= sample.labels.items():
                    out[figure] += sample.value
    return out


def quiet(url: str, period: float = 1.2, timeout: float = 15.0) -> dict[str, float]:
    """The figures once they have not moved for ``period`` seconds (more than a heartbeat:
    what the server did before, e.g. a readiness probe, must be counted before a run starts)."""
    deadline = time.monotonic() + timeout
    last = scrape(url)
    since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < period:
        time.sleep(0.2)
        now = scrape(url)
        if now != last:
            last, since = now, time.monotonic()
    return last


def settled(
    url: str,
    before: dict[str, float],
    client: dict[str, int],
    quiet: float = 1.5,
    timeout: float = 15.0,
) -> dict[str, float]:
    """Scrape until the figures agree with the client's, or have not moved for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    last = scrape(url)
    since = time.monotonic()
    while time.monotonic() < deadline:
        if all(last[f] - before[f] == client.get(CLIENT_FIGURE[f], 0) for f in FIGURES):
            return last
        time.sleep(0.25)
        now = scrape(url)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return last
    return last


def compare(
    before: dict[str, float], after: dict[str, float], client: dict[str, int]
) -> dict[str, Any]:
    """The server's counts of the run beside the client's, and where they disagree."""
    server = {f: int(after[f] - before[f]) for f in FIGURES}
    theirs = {f: int(client.get(CLIENT_FIGURE[f], 0)) for f in FIGURES}
    disagree = [
        f"{f}: server counted {server[f]}, client {CLIENT_FIGURE[f]} {theirs[f]}"
        for f in FIGURES
        if server[f] != theirs[f]
    ]
    return {"server": server, "client": theirs, "disagree": disagree}
