"""Fixtures for the browser end-to-end tests.

They start a real ``mcp-tornado serve --workers 2`` on a free loopback port and
drive Debian's Chromium (``/usr/bin/chromium``) with the ``playwright`` Python
package used as a library (no ``playwright install``: no browser download).

Environment knobs:
  MCP_TORNADO_BIN       command to start the server (default: the console script
                        next to the running Python, else ``mcp-tornado`` on PATH)
  MCP_E2E_CHROMIUM      Chromium executable (default /usr/bin/chromium)
  MCP_E2E_SKIP_BUILD=1  do not (re)build frontend/dist before the tests
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FRONTEND = REPO_ROOT / "frontend"
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = os.environ.get("MCP_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
        Page,
        Playwright,
        sync_playwright,
    )
except ImportError:  # pragma: no cover - reported as a skip below
    sync_playwright = None  # type: ignore[assignment]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: browser end-to-end test (Chromium + real server)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate (SIGTERM to the whole process group), then kill after a timeout."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def server_command() -> list[str]:
    override = os.environ.get("MCP_TORNADO_BIN")
    if override:
        return shlex.split(override)
    local = Path(sys.executable).with_name("mcp-tornado")
    if local.exists():
        return [str(local)]
    found = shutil.which("mcp-tornado")
    if found:
        return [found]
    pytest.fail(
        "mcp-tornado console script not found: pip install -e . first (or set MCP_TORNADO_BIN)"
    )


@pytest.fixture(scope="session")
def frontend_dist() -> Path:
    """Make sure the built client exists (the server serves frontend/dist)."""
    dist = FRONTEND / "dist"
    if os.environ.get("MCP_E2E_SKIP_BUILD") != "1":
        npm = shutil.which("npm")
        if npm is None:
            if not (dist / "index.html").exists():
                pytest.fail("frontend/dist is missing and npm is not available to build it")
        else:
            if not (FRONTEND / "node_modules").exists():
                subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, check=True)
            subprocess.run(
                [npm, "run", "build"],
                cwd=FRONTEND,
                check=True,
                stdout=subprocess.DEVNULL,
            )
    if not (dist / "index.html").exists():
        pytest.fail("frontend/dist/index.html missing after build")
    return dist


@dataclass
class Server:
    base_url: str
    host: str
    port: int

    def page_url(self, room: str) -> str:
        return f"{self.base_url}/?room={room}"

    def ws_url(self, room: str) -> str:
        return f"ws://{self.host}:{self.port}/ws/signal/?room={room}"


@pytest.fixture(scope="session")
def server(frontend_dist: Path) -> Iterator[Server]:
    ARTIFACTS.mkdir(exist_ok=True)
    host, port = "127.0.0.1", free_port()
    cmd = [
        *server_command(),
        "serve",
        "--workers",
        "2",
        "--host",
        host,
        "--port",
        str(port),
    ]
    log_path = ARTIFACTS / "e2e-server.log"
    log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        base = f"http://{host}:{port}"
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after 30s; see {log_path}")
            time.sleep(0.1)
        yield Server(base_url=base, host=host, port=port)
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="session")
def playwright_instance() -> Iterator[Playwright]:
    if sync_playwright is None:
        pytest.skip("pip package 'playwright' is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="session")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    b = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    try:
        yield b
    finally:
        b.close()


PageFactory = Callable[..., Page]


@pytest.fixture
def new_page(browser: Browser) -> Iterator[PageFactory]:
    """Open pages, each in its own browser context (like separate users)."""
    contexts: list[BrowserContext] = []

    def make(url: str | None = None, *, width: int = 1000, height: int = 760) -> Page:
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        if url is not None:
            page.goto(url)
        return page

    try:
        yield make
    finally:
        for ctx in contexts:
            with contextlib.suppress(Exception):  # may already be closed by the test
                ctx.close()


@pytest.fixture
def room() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"
