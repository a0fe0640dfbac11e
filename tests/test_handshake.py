"""The opening handshake's rules, on request heads (no sockets)."""

from __future__ import annotations

import pytest

from mcp_tornado.handshake import (
    MAX_HEAD,
    Rejection,
    Upgrade,
    accept_response,
    parse_upgrade,
    rejection_response,
)

GOOD = {
    "Host": "127.0.0.1:8000",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def head(
    target: str = "/ws/signal/?room=a", line: str | None = None, **changes: str | None
) -> bytes:
    fields = {**GOOD, **{k.replace("_", "-"): v for k, v in changes.items()}}
    lines = [line if line is not None else f"GET {target} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in fields.items() if value is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_a_browser_upgrade_is_accepted() -> None:
    request = parse_upgrade(head(Origin="http://127.0.0.1:8000"))
    assert request == Upgrade(
        "dGhlIHNhbXBsZSBub25jZQ==", {"room": [b"a"]}, "127.0.0.1:8000", "http://127.0.0.1:8000"
    )


def test_the_accept_key_is_the_rfc_example() -> None:
    # RFC 6455 1.3: this key must be answered with this accept value.
    response = accept_response("dGhlIHNhbXBsZSBub25jZQ==")
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert response.endswith(b"\r\n\r\n")


@pytest.mark.parametrize(
    "target", ["/ws/signal", "/ws/signal/", "/ws/signal?room=x", "/ws/signal/?"]
)
def test_both_paths_with_and_without_a_query(target: str) -> None:
    assert isinstance(parse_upgrade(head(target)), Upgrade)


def test_header_names_ignore_case_and_connection_may_list_tokens() -> None:
    raw = head(Connection="keep-alive, Upgrade").replace(
        b"Upgrade: websocket", b"uPgRaDe: WebSocket"
    )
    assert isinstance(parse_upgrade(raw), Upgrade)


def test_the_query_is_parsed_like_tornado() -> None:
    request = parse_upgrade(head("/ws/signal/?room=a&room=b&token=&x=%41"))
    assert isinstance(request, Upgrade)
    assert request.query == {"room": [b"a", b"b"], "token": [b""], "x": [b"A"]}


def test_older_origin_header_is_used_when_origin_is_absent() -> None:
    request = parse_upgrade(head(Sec_WebSocket_Origin="https://old.example"))
    assert isinstance(request, Upgrade) and request.origin == "https://old.example"
    request = parse_upgrade(head())
    assert isinstance(request, Upgrade) and request.origin is None


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (head(Upgrade=None), 400),
        (head(Upgrade="h2c"), 400),
        (head(Connection="keep-alive"), 400),
        (head(Sec_WebSocket_Key=None), 400),
        (head(Host=None), 400),
        (head(Sec_WebSocket_Version="8"), 426),
        (head(Sec_WebSocket_Version=None), 426),
        (head(line="POST /ws/signal/ HTTP/1.1"), 400),
        (head(line="GET /ws/signal/ HTTP/1.0"), 400),
        (head(line="GET /ws/signal/"), 400),
        (head(line="GET  /ws/signal/ HTTP/1.1"), 400),
        (head(line="GET /ws/signal/ SPDY/3"), 400),
        (head("/ws/signalling/"), 404),
        (head().replace(b"Host:", b"Host"), 400),
        (head().replace(b"Host:", b" Host:"), 400),
    ],
)
def test_bad_requests_are_rejected(raw: bytes, status: int) -> None:
    rejection = parse_upgrade(raw)
    assert isinstance(rejection, Rejection) and rejection.status == status


def test_426_names_the_version_we_speak() -> None:
    rejection = parse_upgrade(head(Sec_WebSocket_Version="8"))
    assert isinstance(rejection, Rejection)
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in rejection_response(rejection)


def test_rejection_response_is_complete_http() -> None:
    raw = rejection_response(Rejection(503, "server full", (("Retry-After", "5"),)))
    header, _, body = raw.partition(b"\r\n\r\n")
    lines = header.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"Retry-After: 5" in lines and b"Connection: close" in lines
    assert f"Content-Length: {len(body)}".encode() in lines and body == b"server full\n"


def with_line(raw: bytes, line: str) -> bytes:
    """``raw`` with one more header line at the end of its head."""
    return raw[:-2] + line.encode("latin-1") + b"\r\n\r\n"


@pytest.mark.parametrize(
    "key",
    [
        "dGhlIHNhbXBsZSBub25jZQ",  # padding missing
        "dGhlIHNhbXBsZSBub25jZQ=",
        "dGhlIHNhbXBsZSBub25jZXg=",  # 17 bytes
        "dGhlIHNhbXBsZSBub25j",  # 15 bytes
        "dGhlIHNhbXBsZSBub25jZQ==dGhl",
        "dGhlIHNhbXBsZSBub25jZ!==",  # not base64
        "dGhlIHNhbXBsZSBub25jZ Q=",
        "dGhlIHNhbXBsZSBub25jZé==",
        "the sample nonce",
    ],
)
def test_the_key_must_be_the_base64_of_16_bytes(key: str) -> None:
    rejection = parse_upgrade(head(Sec_WebSocket_Key=key))
    assert isinstance(rejection, Rejection) and rejection.status == 400


def test_any_16_byte_key_is_accepted() -> None:
    for key in ("AAAAAAAAAAAAAAAAAAAAAA==", "/////////////////////w==", "+/+/+/+/+/+/+/+/+/+/+w=="):
        request = parse_upgrade(head(Sec_WebSocket_Key=key))
        assert isinstance(request, Upgrade) and request.key == key


@pytest.mark.parametrize(
    "line",
    [
        "Host: 127.0.0.1:8000",
        "host: evil.example",
        "Upgrade: websocket",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==",
        "Sec-WebSocket-Version: 13",
    ],
)
def test_a_repeated_single_value_header_is_refused(line: str) -> None:
    rejection = parse_upgrade(with_line(head(), line))
    assert isinstance(rejection, Rejection) and rejection.status == 400
    assert "Duplicate" in rejection.message


def test_other_repeated_headers_are_joined() -> None:
    request = parse_upgrade(with_line(head(Connection="keep-alive"), "Connection: Upgrade"))
    assert isinstance(request, Upgrade)
    request = parse_upgrade(with_line(head(Origin="https://a.example"), "Origin: https://b"))
    assert isinstance(request, Upgrade) and request.origin == "https://a.example,https://b"


# --- issue 12, item 6: lenient parsing that got nothing through, refused all the same


@pytest.mark.parametrize(
    "line",
    [
        "GET /ws/signal/ HTTP/1.9x",
        "GET /ws/signal/ HTTP/1.2",
        "GET /ws/signal/ HTTP/1.",
        "GET /ws/signal/ HTTP/1.10",
        "GET /ws/signal/ HTTP/1.1x",
        "GET /ws/signal/ http/1.1",
    ],
)
def test_the_version_is_exactly_http_1_1(line: str) -> None:
    rejection = parse_upgrade(head(line=line))
    assert isinstance(rejection, Rejection) and rejection.status == 400


@pytest.mark.parametrize(
    "raw",
    [
        head(Origin="https://a.example\x00"),
        head(Host="127.0.0.1\x00:8000"),
        head(X_Anything="nul \x00 inside"),
        head(Origin="https://caf\xe9.example"),  # non-ASCII (latin-1 on the wire)
        head().replace(b"Host: 127", "Host: \u00e9\u00e9127".encode()),  # UTF-8
        head(X_Bell="\x07"),
        head(X_Del="\x7f"),
        head(X_Escape="\x1b[2J"),
        head("/ws/signal/?room=\xe9"),
        head("/ws/signal/?room=a\x00"),
        head().replace(b"Upgrade: websocket", b"Upgrade: websocket\rX: y"),  # a bare CR
        head().replace(b"Upgrade: websocket", b"Upgrade: websocket\nX: y"),  # a bare LF
    ],
)
def test_control_and_non_ascii_bytes_are_refused(raw: bytes) -> None:
    rejection = parse_upgrade(raw)
    assert isinstance(rejection, Rejection) and rejection.status == 400, rejection


def test_a_tab_in_a_value_is_fine() -> None:
    assert isinstance(parse_upgrade(head(Connection="keep-alive,\tUpgrade")), Upgrade)


def test_a_60_kb_key_is_refused() -> None:
    rejection = parse_upgrade(head(Sec_WebSocket_Key="QUFB" * 15_000))
    assert isinstance(rejection, Rejection) and rejection.status == 400
    assert "16 bytes" in rejection.message


def test_the_head_cap_is_exact() -> None:
    base = head()
    fits = with_line(base, "X-Pad: " + "p" * (MAX_HEAD - len(base) - len("X-Pad: \r\n")))
    assert len(fits) == MAX_HEAD and isinstance(parse_upgrade(fits), Upgrade)
    over = with_line(base, "X-Pad: " + "p" * (MAX_HEAD - len(base) - len("X-Pad: \r\n") + 1))
    rejection = parse_upgrade(over)
    assert isinstance(rejection, Rejection) and rejection.status == 431


@pytest.mark.parametrize("size", [70_000, 100_000])
def test_a_head_over_the_cap_is_refused_whatever_its_shape(size: int) -> None:
    many = with_line(head(), "\r\n".join(f"X-{i}: {'v' * 90}" for i in range(size // 96)))
    assert len(many) > MAX_HEAD
    rejection = parse_upgrade(many)
    assert isinstance(rejection, Rejection) and rejection.status == 431
