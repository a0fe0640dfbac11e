"""Structured logs (mcp_tornado.logs): the formats, payload redaction, and a real serve's stderr."""

from __future__ import annotations

import ast
import datetime
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from mcp_tornado import logs, wire
from mcp_tornado.router.broker import Router
from mcp_tornado.settings import LogSettings, RouterSettings
from mcp_tornado.supervisor import CHILD_ENV
from tests.rawws import RawWebSocket
from tests.support import FAST, free_port, ready, stop, wait_until

ROOT = Path(__file__).resolve().parents[1]
# An SDP a client would relay: it holds the client's addresses, which logs must not.
SDP = "v=0\r\no=- 4611731400430051336 2 IN IP4 198.51.100.77\r\ns=-\r\nc=IN IP4 198.51.100.77\r\n"
ADDRESS = "198.51.100.77"
EVENT = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def record(
    msg: str = "hello %s",
    args: tuple[Any, ...] = ("world",),
    level: int = logging.WARNING,
    name: str = "mcp_tornado.worker",
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    made = logging.getLogger(name).makeRecord(
        name, level, "f.py", 1, msg, args, exc_info, extra=extra or None
    )
    return made


@pytest.fixture
def payloads_shown() -> Iterator[None]:
    logs.show_payloads(True)
    try:
        yield
    finally:
        logs.show_payloads(False)


# --- the formats ------------------------------------------------------------------------------


def test_a_json_line_has_the_fields_and_the_extras() -> None:
    line = logs.JsonFormatter("worker 1").format(
        record(event="router_lost", room="lobby", peer=7, code=1013, reason=None)
    )
    assert "\n" not in line
    data = json.loads(line)
    assert list(data)[:6] == ["ts", "level", "process", "pid", "event", "msg"]
    assert data["level"] == "warning" and data["process"] == "worker 1"
    assert data["event"] == "router_lost" and data["msg"] == "hello world"
    assert (data["room"], data["peer"], data["code"]) == ("lobby", 7, 1013)
    assert "reason" not in data  # a field that does not apply is left out
    stamp = datetime.datetime.fromisoformat(data["ts"])
    assert data["ts"].endswith("Z") and stamp.utcoffset() == datetime.timedelta(0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["ts"])
    assert abs(stamp.timestamp() - time.time()) < 60


def test_a_field_cannot_hide_a_standard_one_and_odd_values_still_encode() -> None:
    data = json.loads(
        logs.JsonFormatter("router").format(
            record(event="x", process_name="p", path=Path("/a"), worker="w-1")
        )
    )
    assert data["process"] == "router" and data["path"] == "/a" and data["worker"] == "w-1"


def test_a_record_without_an_event_is_named_after_its_logger() -> None:
    data = json.loads(logs.JsonFormatter("serve").format(record(name="tornado.application")))
    assert data["event"] == "tornado_application"


def test_an_exception_travels_in_the_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        made = record(exc_info=sys.exc_info(), event="dispatch_failed")
    data = json.loads(logs.JsonFormatter("router").format(made))
    assert "Traceback" in data["exc"] and "RuntimeError: boom" in data["exc"]


def test_the_text_format_reads_as_before() -> None:
    line = logs.TextFormatter("worker 0").format(record(event="router_lost", room="lobby"))
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING \[worker 0 \d+\] hello world", line
    ), line
    assert "%" in logs.TextFormatter("50% worker").format(record())


def test_the_process_is_named_by_the_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CHILD_ENV, raising=False)
    assert logs.process_name("worker") == "worker"
    monkeypatch.setenv(CHILD_ENV, "worker-3")
    assert logs.process_name("worker") == "worker 3"
    monkeypatch.setenv(CHILD_ENV, "router")
    assert logs.process_name("router") == "router"


def test_configure_replaces_the_handlers_and_sets_the_level() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        logs.configure(LogSettings(level="debug", format="json"), "router")
        assert root.level == logging.DEBUG and len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, logs.JsonFormatter)
        assert logging.getLogger("tornado.access").level == logging.WARNING
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


# --- payloads -------------------------------------------------------------------------------


def test_a_payload_is_only_its_length_unless_payloads_are_shown() -> None:
    relay = wire.Relay(3, SDP.encode())
    assert logs.payload(SDP.encode()) == f"<{len(SDP.encode())} bytes>"
    assert logs.describe(relay) == f"Relay(peer=3, payload=<{len(SDP.encode())} bytes>)"
    assert ADDRESS not in logs.describe(wire.Deliver(3, SDP.encode()))
    assert logs.describe(wire.Join(3, "lobby")) == "Join(peer=3, room='lobby')"
    assert (
        logs.describe(wire.Join(3, "lobby", True)) == "Join(peer=3, room='lobby', resumable=True)"
    )


def test_resume_tokens_are_never_shown() -> None:
    token = "Zq3x9Kc1_resume-token-24"
    assert logs.describe(wire.Resume(3, "lobby", token)) == (
        "Resume(peer=3, room='lobby', token=<hidden>)"
    )
    hello = wire.Hello([wire.PeerRecord(1, "lobby", True, token), wire.PeerRecord(2, "x", False)])
    shown = logs.describe(hello)
    assert token not in shown
    assert "PeerRecord(peer=1, room='lobby', paired=True, resume=<hidden>)" in shown
    assert "PeerRecord(peer=2, room='x', paired=False)" in shown


def test_a_bytes_field_is_a_payload_too() -> None:
    data = json.loads(logs.JsonFormatter("worker").format(record(event="x", data=SDP.encode())))
    assert data["data"] == f"<{len(SDP)} bytes>"


@pytest.mark.usefixtures("payloads_shown")
def test_with_payloads_shown_the_payload_is_logged() -> None:
    assert ADDRESS in logs.describe(wire.Relay(3, SDP.encode()))
    data = json.loads(logs.JsonFormatter("worker").format(record(event="x", data=SDP.encode())))
    assert data["data"] == SDP


def _router_failing_on_a_relay(monkeypatch: pytest.MonkeyPatch) -> Router:
    """A router that has a worker registered and fails on every relay (a bug)."""
    router = Router(RouterSettings(bind="inproc://unused"))
    router.handle(b"w-1", wire.encode_batch([wire.Hello([])]), time.monotonic())

    def broken(key: object) -> None:
        raise RuntimeError("a bug in the room table")

    monkeypatch.setattr(router.rooms, "partner", broken)
    return router


def _json_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = logs.JsonFormatter("router")
    return [json.loads(formatter.format(r)) for r in caplog.records]


def test_the_router_logs_a_failed_message_without_its_payload(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    router = _router_failing_on_a_relay(monkeypatch)
    caplog.set_level(logging.INFO, "mcp_tornado.router.broker")
    router.handle(b"w-1", wire.encode_batch([wire.Relay(5, SDP.encode())]), time.monotonic())
    (line,) = [line for line in _json_lines(caplog) if line["event"] == "dispatch_failed"]
    assert line["level"] == "error" and line["worker"] == "w-1" and line["peer"] == 5
    assert (
        line["message_type"] == "Relay" and "RuntimeError: a bug in the room table" in line["exc"]
    )
    assert f"payload=<{len(SDP)} bytes>" in line["msg"]
    assert ADDRESS not in json.dumps(line)


@pytest.mark.usefixtures("payloads_shown")
def test_the_router_logs_the_payload_when_asked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    router = _router_failing_on_a_relay(monkeypatch)
    caplog.set_level(logging.INFO, "mcp_tornado.router.broker")
    router.handle(b"w-1", wire.encode_batch([wire.Relay(5, SDP.encode())]), time.monotonic())
    (line,) = [line for line in _json_lines(caplog) if line["event"] == "dispatch_failed"]
    assert ADDRESS in line["msg"]


def test_a_malformed_batch_is_logged_without_its_contents(caplog: pytest.LogCaptureFixture) -> None:
    router = Router(RouterSettings(bind="inproc://unused"))
    caplog.set_level(logging.INFO, "mcp_tornado.router.broker")
    for frame in [
        msgspec.msgpack.encode([[3, 1, SDP]]),  # a payload as text instead of bytes
        msgspec.msgpack.encode([[3, SDP, SDP.encode()]]),  # a peer id that is not one
        SDP.encode(),  # not msgpack at all
    ]:
        router.handle(b"w-1", frame, time.monotonic())
    lines = _json_lines(caplog)
    assert [line["event"] for line in lines] == ["malformed_batch"] * 3
    assert all(line["worker"] == "w-1" and line["bytes"] > 0 for line in lines)
    assert ADDRESS not in json.dumps(lines)


# --- every log call names its event ------------------------------------------------------------


def _log_calls() -> Iterator[tuple[str, ast.Call]]:
    levels = {"debug", "info", "warning", "error", "exception", "critical", "log"}
    for path in [
        *sorted((ROOT / "mcp_tornado").glob("*.py")),
        *sorted((ROOT / "router").glob("*.py")),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in levels
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"log", "access_log"}
            ):
                yield f"{path.relative_to(ROOT)}:{node.lineno}", node


def test_every_log_call_names_a_snake_case_event() -> None:
    calls = list(_log_calls())
    assert len(calls) > 25
    for where, call in calls:
        extra = next((k.value for k in call.keywords if k.arg == "extra"), None)
        if isinstance(extra, ast.Name):  # a dict built just before (access_log.py)
            continue
        assert isinstance(extra, ast.Dict), f"{where}: no extra={{'event': ...}}"
        fields = {
            k.value: v for k, v in zip(extra.keys, extra.values, strict=True)
            if isinstance(k, ast.Constant)
        }  # fmt: skip
        assert "event" in fields, f"{where}: no event"
        taken = set(fields) & {*logging.makeLogRecord({}).__dict__, "message", "asctime"}
        assert not taken, f"{where}: {taken} would overwrite the LogRecord's own"
        event = fields["event"]
        assert isinstance(event, ast.Constant) and isinstance(event.value, str), where
        assert EVENT.fullmatch(event.value), where


# --- a real serve, logging JSON -------------------------------------------------------------


def _serve(tmp: Path, *args: str) -> tuple[subprocess.Popen[bytes], Path, int, str]:
    port = free_port()
    endpoint = f"ipc://{tmp}/router.ipc"
    err = tmp / "stderr.log"
    with open(err, "ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_tornado", "serve", "--workers", "2", "--port", str(port),
             "--router-endpoint", endpoint, "--log-format", "json", "--log-level", "DEBUG",
             "--shutdown-timeout", "3", *FAST, *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )  # fmt: skip
    return process, err, port, endpoint


def _relay_offers_and_answers(port: int, pairs: int) -> None:
    for i in range(pairs):
        room = f"logs-{i}-{time.monotonic_ns()}"
        with (
            RawWebSocket.connect(port, f"?room={room}") as a,
            RawWebSocket.connect(port, f"?room={room}") as b,
        ):
            a.recv_type("joined", 10)
            b.recv_type("joined", 10)
            a.send_json({"type": "offer", "sdp": SDP})
            assert b.recv_type("offer", 10)["sdp"] == SDP
            b.send_json({"type": "answer", "sdp": SDP.replace("offer", "answer")})
            assert a.recv_type("answer", 10)["sdp"] == SDP
            a.send_json(
                {"type": "candidate", "candidate": f"candidate:1 1 UDP 1 {ADDRESS} 9 typ host"}
            )
            assert ADDRESS in b.recv_type("candidate", 10)["candidate"]


def _send_the_router_garbage(endpoint: str) -> None:
    """A malformed batch holding an SDP, from a DEALER posing as a worker."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock: zmq.Socket[bytes] = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.ROUTING_ID, b"intruder")
        sock.connect(endpoint)
        sock.send(msgspec.msgpack.encode([[3, 1, SDP]]))
        time.sleep(0.5)
    finally:
        sock.close(linger=0)


def _parse(err: Path) -> list[dict[str, Any]]:
    lines = err.read_text().splitlines()
    assert lines
    parsed = []
    for text in lines:
        data = json.loads(text)  # every line of stderr is one JSON object
        assert isinstance(data, dict), text
        parsed.append(data)
    return parsed


def test_serve_logs_json_lines_without_payloads(tmp_path: Path) -> None:
    serve, err, port, endpoint = _serve(tmp_path)
    try:
        wait_until(lambda: ready(port), 30, "serve to be ready")
        _relay_offers_and_answers(port, 6)
        _send_the_router_garbage(endpoint)
        refused = RawWebSocket.handshake(port, "/ws/signal/?room=x", {"Origin": "https://evil"})
        assert refused.status == 403
        refused.close()
    finally:
        stop(serve)
    assert serve.returncode == 0
    text = err.read_text()
    assert ADDRESS not in text and "4611731400430051336" not in text
    lines = _parse(err)
    for line in lines:
        assert {"ts", "level", "process", "pid", "event", "msg"} <= line.keys(), line
        assert datetime.datetime.fromisoformat(line["ts"]).utcoffset() == datetime.timedelta(0)
        assert line["level"] in {"debug", "info", "warning", "error", "critical"}
        assert line["process"] in {"serve", "router", "worker 0", "worker 1"}, line
        assert isinstance(line["pid"], int) and EVENT.fullmatch(line["event"]), line
    by_event = {line["event"]: line for line in lines}
    assert {line["process"] for line in lines} == {"serve", "router", "worker 0", "worker 1"}
    assert {"child_started", "listening", "registered", "worker_registered"} <= by_event.keys()
    garbage = by_event["malformed_batch"]
    assert garbage["process"] == "router" and garbage["worker"] == "intruder"
    access = [line for line in lines if line["event"] == "access"]
    assert any(a["status"] == 403 and a["client"] == "127.0.0.1" for a in access), access
    # At DEBUG every peer's join and departure is a line with its room, id and address.
    joined = [line for line in lines if line["event"] == "peer_joined"]
    assert len(joined) == 12 and all(line["room"].startswith("logs-") for line in joined)
    assert all(line["client"] == "127.0.0.1" and line["peer"] > 0 for line in joined)
    gone = {(x["process"], x["peer"]) for x in lines if x["event"] in ("peer_left", "peer_lost")}
    assert {(line["process"], line["peer"]) for line in joined} == gone
    pids = {line["process"]: line["pid"] for line in lines}
    assert pids["serve"] == serve.pid and len(set(pids.values())) == 4
