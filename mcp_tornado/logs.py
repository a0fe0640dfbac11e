"""How every mcp-tornado process logs: human text, or one JSON object per line.

Usage (``mcp-tornado`` does it once per process, from its
:class:`~mcp_tornado.settings.LogSettings`)::

    logs.configure(settings.log, logs.process_name("worker"))
    log.warning("lost the connection to the router", extra={"event": "router_lost"})

Every log call in mcp-tornado names its event (a stable snake_case name that
log queries and alerts can rely on, unlike the wording of the message) and
passes the facts it is about as structured fields: ``room``, ``peer`` (a peer
id), ``code`` (a close or error code), ``worker`` (a worker's name with the
router), ``client`` (a client's address), and a few more.  With
``--log-format json`` each record is one line::

    {"ts":"2026-11-30T12:55:09.123Z","level":"warning","process":"worker 0","pid":4245,
     "event":"router_lost","msg":"lost the connection to the router","reason":"disconnected"}

``process`` is ``serve``, ``router`` or ``worker N``: ``serve`` tells each
child its name in ``$MCP_TORNADO_CHILD`` (:data:`~mcp_tornado.supervisor.CHILD_ENV`);
a process started by hand is plain ``router`` or ``worker``.  A record from
another library (Tornado, asyncio) gets its logger's name as its event.  The
text format is one readable line with the message alone, as before.

What clients relay (SDP, which holds their IP addresses, and ICE candidates)
never reaches a log unless ``--log-payloads`` is on: code that would show a
payload passes it through :func:`payload` or :func:`describe`, which give
only its length while payload logging is off.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
from typing import Any, Final

import msgspec

from mcp_tornado.settings import LogSettings
from mcp_tornado.supervisor import CHILD_ENV

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD: Final = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName"}
)
_payloads = False  # set by configure(): whether log lines may show relayed payloads


def process_name(default: str) -> str:
    """``worker 0`` for the child ``serve`` named ``worker-0``; ``default`` without a supervisor."""
    child = os.environ.get(CHILD_ENV, "")
    return child.replace("-", " ") if child else default


def show_payloads(shown: bool) -> None:
    """Let log lines show relayed payloads (``--log-payloads``), or only their length."""
    global _payloads
    _payloads = shown


def payload(data: bytes) -> str:
    """``data`` for a log line: its text with ``--log-payloads``, else only its length."""
    if _payloads:
        return data.decode(errors="replace")
    return f"<{len(data)} bytes>"


def describe(message: object) -> str:
    """A wire message for a log line: its type and fields, a payload only as :func:`payload`.

    Fields left at their default are left out; resume tokens (the grant to take a
    peer's slot) are never shown.
    """
    if not isinstance(message, msgspec.Struct):
        return type(message).__name__
    names = message.__struct_fields__
    defaults = dict(zip(names[len(names) - len(message.__struct_defaults__) :],
                        message.__struct_defaults__, strict=True))  # fmt: skip
    fields = []
    for name in names:
        value = getattr(message, name)
        if name in defaults and value == defaults[name]:
            continue
        fields.append(f"{name}={_shown(name, value)}")
    return f"{type(message).__name__}({', '.join(fields)})"


_SECRET_FIELDS: Final = frozenset({"resume", "token"})  # resume tokens (wire.Resume, PeerRecord)


def _shown(name: str, value: object) -> str:
    if isinstance(value, bytes):
        return payload(value)
    if name in _SECRET_FIELDS and isinstance(value, str):
        return "<hidden>"
    if isinstance(value, msgspec.Struct):
        return describe(value)
    if isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
        return f"[{', '.join(map(describe, value))}]"
    return repr(value)


def _timestamp(created: float) -> str:
    """RFC 3339, UTC, milliseconds: ``2026-11-30T12:55:09.123Z``."""
    moment = datetime.datetime.fromtimestamp(created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_of(record: logging.LogRecord) -> str:
    """The record's event name: the one its call gave, else its logger's (``tornado_access``)."""
    event = record.__dict__.get("event")
    if isinstance(event, str):
        return event
    return record.name.replace(".", "_") or "root"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a log call passed in ``extra`` (its event aside)."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k != "event"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring for its fields)."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "process": self.process,
            "pid": record.process,
            "event": event_of(record),
            "msg": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            if value is None:  # "when relevant": a field that does not apply is left out
                continue
            if isinstance(value, bytes | bytearray | memoryview):  # bytes are a payload
                value = payload(bytes(value))
            line.setdefault(key, value)  # a field never hides one of the above
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return msgspec.json.encode(line, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    """``2026-11-30 12:55:09,123 WARNING [worker 0 4245] lost the connection to the router``."""

    def __init__(self, process: str) -> None:
        # The name goes in as text, not as a %-field: a "%" in it must not break the format.
        name = process.replace("%", "%%")
        super().__init__(f"%(asctime)s %(levelname)s [{name} %(process)d] %(message)s")


def formatter(log_format: str, process: str) -> logging.Formatter:
    return JsonFormatter(process) if log_format == "json" else TextFormatter(process)


def configure(settings: LogSettings, process: str) -> None:
    """Send this process's log records to stderr, as ``settings`` say; call once, at start.

    Replaces any handler the root logger had.  Tornado's access log stays at
    WARNING (refusals and errors): a line per successful request or handshake
    would cost a busy worker more than it tells.
    """
    show_payloads(settings.payloads)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.format, process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
