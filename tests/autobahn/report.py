"""Reading and judging Autobahn TestSuite reports, and the summary in docs/autobahn.md.

Pure functions over the JSON that ``wstest -m fuzzingclient`` writes (``index.json``
and one file per case); ``test_autobahn.py`` runs wstest, ``test_report.py`` tests
these on made-up results.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, Any]]  # case id -> index.json's entry, plus "details"

# Cases whose outcome the suite itself reports as INFORMATIONAL, whatever the server does.
INFORMATIONAL = {
    "7.1.6": "a 256 KiB message, a close and a ping back to back: whether the message is "
    "echoed before the close is implementation-defined (RFC 6455 leaves it open)",
    "7.13.1": "close code 5000: outside every range RFC 6455 7.4.2 defines, so the suite "
    "says 'actual events are undefined by the spec'",
    "7.13.2": "close code 65535: as 7.13.1",
}
STATUSES = ["OK", "NON-STRICT", "FAILED", "INFORMATIONAL", "UNIMPLEMENTED"]


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def load_report(outdir: Path, agent: str) -> Results | None:
    """The results wstest wrote to ``outdir`` for ``agent``, each with its case file's fields.

    The case file's wire log is dropped, keeping only whether the server sent a
    close frame (``serverSentClose``).
    """
    index = outdir / "index.json"
    if not index.exists():
        return None
    results: Results = json.loads(index.read_text())[agent]
    for case_id, result in results.items():
        details = json.loads((outdir / result["reportfile"]).read_text())
        assert details["id"] == case_id, f"{result['reportfile']} is not case {case_id}"
        result["serverSentClose"] = any(
            entry[0] == "RF" and entry[2] == 8 for entry in details.pop("wirelog")
        )
        result["details"] = details
    return results


def not_ok(results: Results) -> list[str]:
    """Case ids that are not OK (the INFORMATIONAL allowlist aside)."""
    bad = []
    for case_id, result in results.items():
        statuses = {result["behavior"], result["behaviorClose"]}
        allowed = {"OK", "INFORMATIONAL"} if case_id in INFORMATIONAL else {"OK"}
        if not statuses <= allowed:
            bad.append(case_id)
    return sorted(bad, key=case_key)


def snippet(text: Any, width: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def failure_table(results: Results, cases: list[str]) -> str:
    lines = [
        f"{'case':<8} {'behavior':<13} {'behaviorClose':<13} {'client':>6} {'server':>6}  "
        "description | result | expectation  (client/server: the close code each sent)"
    ]
    for case_id in cases:
        result = results[case_id]
        details = result["details"]
        lines.append(
            f"{case_id:<8} {result['behavior']:<13} {result['behaviorClose']:<13} "
            f"{details['localCloseCode']!s:>6} {details['remoteCloseCode']!s:>6}  "
            f"{snippet(details['description'], 60)} | {snippet(details['result'], 50)}"
            f" | {snippet(details['expectation'], 60)}"
        )
    return "\n".join(lines)


def close_verdict(result: dict[str, Any]) -> dict[str, Any]:
    """How a connection closed, as the server's doing: what a comparison should look at.

    When the client started the close, the server's close code is compared as
    "echoed the client's" or not: the client picks its code by what it received
    (the signaling endpoint's JSON events make it close with 1001 or no code where
    the echo's replies let it close with 1000), so the raw codes may differ.
    """
    details = result["details"]
    by_client = bool(details["closedByMe"])
    if not result["serverSentClose"]:
        server_close: Any = "no close frame"
    elif by_client and details["remoteCloseCode"] == details["localCloseCode"]:
        server_close = "echoed the client's"
    else:
        server_close = details["remoteCloseCode"]
    reason = details["wasNotCleanReason"] or ""
    return {
        "closed first by": "client" if by_client else "server",
        "server's close": server_close,
        "server dropped TCP": reason.startswith("peer dropped"),
        "client dropped TCP": details["droppedByMe"],
        "wasClean": details["wasClean"],
        "wasCloseHandshakeTimeout": details["wasCloseHandshakeTimeout"],
        "wasServerConnectionDropTimeout": details["wasServerConnectionDropTimeout"],
    }


def compare_closing(echo: Results, signal: Results) -> tuple[list[str], list[str]]:
    """(mismatches, behaviorClose differences the client's own close code explains)."""
    mismatches, explained = [], []
    for case_id in sorted(signal, key=case_key):
        ours, theirs = close_verdict(echo[case_id]), close_verdict(signal[case_id])
        diff = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
        echo_close, signal_close = echo[case_id]["behaviorClose"], signal[case_id]["behaviorClose"]
        if echo_close != signal_close:
            echo_code = echo[case_id]["details"]["localCloseCode"]
            signal_code = signal[case_id]["details"]["localCloseCode"]
            if echo_code == signal_code:
                diff["behaviorClose"] = (echo_close, signal_close)
            else:
                explained.append(
                    f"{case_id}: behaviorClose {echo_close} (echo) vs {signal_close} (signaling):"
                    f" the client closed with {echo_code} vs {signal_code}"
                )
        if diff:
            mismatches.append(
                f"{case_id}: "
                + ", ".join(f"{k}: echo {a!r}, signaling {b!r}" for k, (a, b) in diff.items())
            )
    return mismatches, explained


# --- the summary in docs/autobahn.md -----------------------------------------------


def summary_table(results: Results) -> list[str]:
    """Per section: cases, then how many of each status (a case counts as its worse status)."""
    rank = {"OK": 0, "INFORMATIONAL": 1, "NON-STRICT": 2, "UNIMPLEMENTED": 3}  # else FAILED: 4
    sections: dict[int, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for case_id, result in results.items():
        statuses = [result["behavior"], result["behaviorClose"]]
        worst = max(statuses, key=lambda s: rank.get(s, 4))
        if worst not in STATUSES:  # WRONG CODE, UNCLEAN: a failed close
            worst = "FAILED"
        sections[case_key(case_id)[0]][worst] += 1
    lines = [
        "| section | cases | " + " | ".join(STATUSES) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in STATUSES) + " |",
    ]
    total: collections.Counter[str] = collections.Counter()
    for section in sorted(sections):
        total.update(sections[section])
        lines.append(table_row(str(section), sections[section]))
    lines.append(table_row("**all**", total, bold=True))
    return lines


def table_row(label: str, counts: collections.Counter[str], bold: bool = False) -> str:
    cells = [str(n) for n in (counts.total(), *(counts[s] for s in STATUSES))]
    return "| " + " | ".join([label, *(f"**{c}**" if bold else c for c in cells)]) + " |"


def closing_table(signal: Results, mismatches: list[str]) -> list[str]:
    """Per section: cases, how many close like the echo, how many do not."""
    differ = collections.Counter(case_key(m.split(":")[0])[0] for m in mismatches)
    cases = collections.Counter(case_key(case_id)[0] for case_id in signal)
    lines = ["| section | cases | close like the echo | close differently |"]
    lines.append("| --- | ---: | ---: | ---: |")
    for section in sorted(cases):
        n, d = cases[section], differ[section]
        lines.append(f"| {section} | {n} | {n - d} | {d} |")
    n, d = cases.total(), differ.total()
    lines.append(f"| **all** | **{n}** | **{n - d}** | **{d}** |")
    return lines


def write_doc(doc: Path, echo: Results | None, signal: Results | None, max_size: int) -> None:
    """(Re)write the summary ``doc`` (docs/autobahn.md) from the two runs' results."""
    out = [
        "# Autobahn TestSuite results",
        "",
        "Generated by `tests/autobahn/test_autobahn.py` (do not edit by hand). Regenerate with",
        "",
        "    tests/autobahn/setup.sh && .venv/bin/pytest -m autobahn tests/autobahn",
        "",
        "(`./test.sh` does both). The suite is `autobahntestsuite==25.10.1` (`wstest -m",
        "fuzzingclient`, Python 2, installed into `.venv-autobahn/`); the full HTML reports are",
        "left in `build/autobahn/echo/index.html` and `build/autobahn/signal/index.html`.",
        "A case counts once, as the worse of its `behavior` and `behaviorClose` (a close",
        "that is `WRONG CODE` or `UNCLEAN` counts as FAILED). Sections 12 and 13",
        "(permessage-deflate) are not run: the server never negotiates compression.",
        "",
        "## Echo server, sections 1-7, 9, 10",
        "",
        "`tests/echo.py` echoes every message with the worker's own WebSocket classes",
        "(`Connection` and the sans-I/O `ServerProtocol`, an echo in the peer's place).",
        "Every case must be OK, except the ones the suite reports as INFORMATIONAL",
        "whatever the server does:",
        "",
        *(f"* {case_id}: {why}." for case_id, why in INFORMATIONAL.items()),
        "",
    ]
    if echo is None:
        out += ["Not run.", ""]
    else:
        bad = not_ok(echo)
        out += [*summary_table(echo), ""]
        out += ["Cases that are not OK:" if bad else "Every case is OK.", ""]
        if bad:
            out += ["| case | behavior | behaviorClose | client sent | server sent | description |"]
            out += ["| --- | --- | --- | --- | --- | --- |"]
            for case_id in bad:
                d = echo[case_id]["details"]
                out.append(
                    f"| {case_id} | {d['behavior']} | {d['behaviorClose']} | {d['localCloseCode']}"
                    f" | {d['remoteCloseCode']} | {snippet(d['description'], 70)} |"
                )
            out.append("")
    out += [
        "## Signaling endpoint, sections 2-7",
        "",
        "`/ws/signal/?room=autobahn` on a real router and one worker (`--rate-limit 0`,",
        f"`--max-message-size {max_size}` as the echo). It answers with its own JSON",
        "events (`joined`, `invalid_json` errors) instead of echoing, so its `behavior`",
        "verdicts say little: most are FAILED by design, and how many depends on when the",
        "`joined` event lands among the suite's frames, which changes from run to run (see",
        "the HTML report). The test requires instead that every case *closes* as on the",
        "echo: who closed first, the server's close frame (compared as 'echoed the client's",
        "code' when the client closed first), who dropped TCP, `wasClean`, the close",
        "timeouts, and `behaviorClose` unless the client itself closed with another code",
        "(its reaction to the unexpected JSON frames, e.g. 1001 when it gave up waiting).",
        "",
    ]
    if signal is None or echo is None:
        out += ["Not run.", ""]
    else:
        mismatches, _ = compare_closing(echo, signal)
        out += [*closing_table(signal, mismatches), ""]
        if mismatches:
            out += ["Cases that close differently:", "", *(f"* {m}" for m in mismatches), ""]
    doc.write_text("\n".join(out).rstrip("\n") + "\n")
