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
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn

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


def missing(reason: str, *, module_level: bool = False) -> NoReturn:
    """Skip when a browser-test prerequisite is missing; fail instead under CI=true."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"e2e prerequisite missing: {reason}")
    pytest.skip(reason, allow_module_level=module_level)


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


@pytest.fixture(scope="package")
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
    tls: bool = False

    def page_url(self, room: str) -> str:
        return f"{self.base_url}/?room={room}"

    def ws_url(self, room: str) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://{self.host}:{self.port}/ws/signal/?room={room}"


class ServerProcess:
    """``mcp-tornado serve --workers 2`` on a loopback port, as a subprocess.

    Output goes to ``test-artifacts/<name>.log``. ``stop()`` terminates the
    whole process group, then kills it after a timeout.
    """

    def __init__(
        self,
        name: str,
        port: int | None = None,
        workers: int = 2,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.tls = tls  # the client side of --certfile/--keyfile in extra_args: https://
        self.extra_args = list(extra_args)
        self.env = dict(env) if env is not None else None
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ARTIFACTS / f"{name}.log"
        self._log: IO[bytes] | None = None

    @property
    def info(self) -> Server:
        scheme = "https" if self.tls is not None else "http"
        return Server(
            base_url=f"{scheme}://{self.host}:{self.port}",
            host=self.host,
            port=self.port,
            tls=self.tls is not None,
        )

    def start(self, timeout: float = 30.0) -> Server:
        ARTIFACTS.mkdir(exist_ok=True)
        cmd = [
            *server_command(),
            "serve",
            "--workers",
            str(self.workers),
            "--host",
            self.host,
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env} if self.env is not None else None,
        )
        deadline = time.monotonic() + timeout
        readiness = f"{self.info.base_url}/readyz"
        while True:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(readiness, timeout=1, context=self.tls) as resp:
                    if resp.status == 200:
                        return self.info
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet, or 503 until the workers reach the router
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"server not ready after {timeout}s; see {self.log_path}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture(scope="package")
def server(frontend_dist: Path) -> Iterator[Server]:
    """One server shared by the e2e tests (each test uses its own room)."""
    proc = ServerProcess("e2e-server")
    if proc.log_path.exists():
        proc.log_path.unlink()
    try:
        yield proc.start()
    finally:
        proc.stop()


ServerFactory = Callable[..., ServerProcess]


@pytest.fixture
def own_server_factory(
    frontend_dist: Path, request: pytest.FixtureRequest
) -> Iterator[ServerFactory]:
    """Servers of the test's own, not started yet, that the test may stop and restart."""
    made: list[ServerProcess] = []

    def make(**kwargs: Any) -> ServerProcess:
        proc = ServerProcess(f"e2e-server-{request.node.name}-{len(made)}", **kwargs)
        if proc.log_path.exists():
            proc.log_path.unlink()
        made.append(proc)
        return proc

    try:
        yield make
    finally:
        for proc in made:
            proc.stop()


@pytest.fixture
def own_server(own_server_factory: ServerFactory) -> ServerProcess:
    """A server of the test's own (default options), not started yet."""
    return own_server_factory()


# Package scope, not session: Playwright's sync API keeps its asyncio loop marked
# as running in the main thread until stopped, which breaks tests that run their
# own loop (pytest-tornado) if they come after us in the same session.
@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    if sync_playwright is None:
        missing("pip package 'playwright' is not installed")
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} not found (apt-get install -y chromium)")
    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="package")
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

    def make(
        url: str | None = None, *, width: int = 1000, height: int = 760, bypass_csp: bool = False
    ) -> Page:
        # bypass_csp: for test tools injected as inline scripts (axe); the app never needs it.
        ctx = browser.new_context(
            viewport={"width": width, "height": height}, bypass_csp=bypass_csp
        )
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
