from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Client, Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A router and two workers on two ports, shared by a module's tests (rooms keep them apart)."""
    tmp: Path = tmp_path_factory.mktemp("cluster")
    c = Cluster(tmp, workers=2)
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture
def close_clients(io_loop: object) -> Iterator[None]:
    """Close every :class:`Client` a test opened, before its event loop goes away."""
    yield
    Client.close_all()
