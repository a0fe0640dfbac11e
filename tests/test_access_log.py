"""The workers' access log (mcp_tornado.access_log): which lines are logged, and what they cost."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from tornado.log import access_log

from mcp_tornado.access_log import access_logged, log_access


@pytest.fixture
def access_level() -> Iterator[None]:
    level = access_log.level
    yield
    access_log.setLevel(level)


def test_at_warning_only_refusals_are_logged(access_level: None) -> None:
    access_log.setLevel(logging.WARNING)  # the level logs.configure sets
    assert not access_logged(101)
    assert access_logged(403)
    assert access_logged(503)


def test_at_info_upgrades_are_logged_too(
    access_level: None, caplog: pytest.LogCaptureFixture
) -> None:
    access_log.setLevel(logging.INFO)
    assert access_logged(101)
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        log_access(101, "GET", "192.0.2.1")
    assert [r.getMessage() for r in caplog.records] == ["101 GET /ws/signal/ (192.0.2.1)"]
