"""The top-level ``router/`` folder is the package ``mcp_tornado.router``, under no other name."""

import re
from pathlib import Path

import mcp_tornado.router

ROOT = Path(__file__).resolve().parent.parent


def test_router_folder_is_mcp_tornado_router() -> None:
    assert Path(mcp_tornado.router.__file__ or "").resolve() == ROOT / "router" / "__init__.py"


def test_nothing_imports_a_top_level_router() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+router\b", re.MULTILINE)
    sources = [
        path
        for folder in ("mcp_tornado", "router", "tests", "bench", "examples")
        for path in (ROOT / folder).rglob("*.py")
    ]
    assert sources
    offenders = [str(path) for path in sources if pattern.search(path.read_text())]
    assert offenders == []
