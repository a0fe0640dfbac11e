"""The Autobahn report judging (tests/autobahn/report.py) on made-up results: no wstest needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.autobahn.report import (
    Results,
    close_verdict,
    compare_closing,
    failure_table,
    load_report,
    not_ok,
    summary_table,
    write_doc,
)


def case(
    behavior: str = "OK",
    close: str = "OK",
    *,
    by_client: bool = True,
    client_code: int | None = 1000,
    server_code: int | None = 1000,
    server_sent_close: bool = True,
    clean: bool = True,
    reason: str | None = None,
) -> dict[str, Any]:
    details = {
        "behavior": behavior,
        "behaviorClose": close,
        "closedByMe": by_client,
        "localCloseCode": client_code,
        "remoteCloseCode": server_code,
        "droppedByMe": False,
        "wasClean": clean,
        "wasNotCleanReason": reason,
        "wasCloseHandshakeTimeout": False,
        "wasServerConnectionDropTimeout": False,
        "description": "a case",
        "expectation": "something",
        "result": "what happened",
    }
    return {
        "behavior": behavior,
        "behaviorClose": close,
        "serverSentClose": server_sent_close,
        "details": details,
    }


def test_not_ok_allows_informational_only_for_the_allowlisted_cases() -> None:
    results: Results = {
        "1.1.1": case(),
        "6.4.1": case("NON-STRICT"),
        "7.9.1": case("FAILED", "WRONG CODE"),
        "7.13.1": case("INFORMATIONAL", "INFORMATIONAL"),
        "7.1.1": case("INFORMATIONAL"),
        "7.1.6": case("OK", "UNCLEAN"),
    }
    assert not_ok(results) == ["6.4.1", "7.1.1", "7.1.6", "7.9.1"]
    table = failure_table(results, not_ok(results))
    assert "7.9.1    FAILED        WRONG CODE" in table


def test_closing_alike_when_the_server_echoes_whatever_code_the_client_sent() -> None:
    echo = {"2.1": case()}
    signal = {"2.1": case(client_code=None, server_code=None, close="OK")}
    assert close_verdict(echo["2.1"]) == close_verdict(signal["2.1"])
    signal = {"2.1": case(close="WRONG CODE", client_code=1001, server_code=1001)}
    mismatches, explained = compare_closing(echo, signal)
    assert mismatches == []
    assert explained == [
        "2.1: behaviorClose OK (echo) vs WRONG CODE (signaling):"
        " the client closed with 1000 vs 1001"
    ]


def test_closing_differs_when_the_server_does_something_else() -> None:
    echo = {"7.9.1": case("FAILED", "WRONG CODE", client_code=0, server_code=0)}
    answered_1002 = case(client_code=0, server_code=1002)
    dropped = case(server_sent_close=False, server_code=None, clean=False, reason="peer dropped")
    server_first = case(by_client=False, server_code=1002)
    for signal in (answered_1002, dropped, server_first):
        mismatches, _ = compare_closing(echo, {"7.9.1": signal})
        assert len(mismatches) == 1 and mismatches[0].startswith("7.9.1: ")
    same_client_code = case("FAILED", "UNCLEAN", client_code=0, server_code=0)
    mismatches, _ = compare_closing(echo, {"7.9.1": same_client_code})
    assert mismatches == ["7.9.1: behaviorClose: echo 'WRONG CODE', signaling 'UNCLEAN'"]


def test_summary_counts_each_case_once_as_its_worse_verdict() -> None:
    results: Results = {
        "1.1.1": case(),
        "1.1.2": case("NON-STRICT"),
        "7.1.1": case("OK", "WRONG CODE"),
        "7.13.1": case("INFORMATIONAL", "INFORMATIONAL"),
        "7.1.2": case("NON-STRICT", "UNCLEAN"),
    }
    assert summary_table(results)[2:] == [
        "| 1 | 2 | 1 | 1 | 0 | 0 | 0 |",
        "| 7 | 3 | 0 | 0 | 2 | 1 | 0 |",
        "| **all** | **5** | **1** | **1** | **2** | **1** | **0** |",
    ]


def test_load_report_and_doc(tmp_path: Path) -> None:
    wirelog = [["RO", [4, "880203e8"]], ["RF", [2, "0x03e8"], 8, True, 0, False, None]]
    details = {**case()["details"], "id": "1.1.1", "wirelog": wirelog}
    (tmp_path / "echo_case_1_1_1.json").write_text(json.dumps(details))
    index = {"echo": {"1.1.1": {"behavior": "OK", "behaviorClose": "OK",
                                "reportfile": "echo_case_1_1_1.json"}}}  # fmt: skip
    (tmp_path / "index.json").write_text(json.dumps(index))
    results = load_report(tmp_path, "echo")
    assert results is not None
    assert results["1.1.1"]["serverSentClose"] is True
    assert "wirelog" not in results["1.1.1"]["details"]
    assert load_report(tmp_path / "missing", "echo") is None
    doc = tmp_path / "autobahn.md"
    write_doc(doc, results, None, 1024)
    text = doc.read_text()
    assert "| **all** | **1** | **1** | **0** | **0** | **0** | **0** |" in text
    assert "Every case is OK." in text
    assert text.endswith("Not run.\n")
