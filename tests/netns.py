"""Pytest fixtures for emulated hosts (network namespaces; the builder is bench/netns.py).

Usage (as root; elsewhere the fixture skips with the reason)::

    def test_x(hosts: HostNet) -> None:
        router = hosts.add("router", "10.203.0.1")
        worker = hosts.add("wa", "10.203.0.2")
        process = router.spawn(["python", "-m", "mcp_tornado", "router", ...], log=path)

The tests' addresses are ``10.203.0.0/24`` (the bench's are ``10.204.0.0/24``).
Everything a :class:`HostNet` made is removed when the fixture ends, also when
the test fails; the session-scoped :func:`no_leftovers` fixture checks, once
all tests ran, that no namespace or link of this session's networks is left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.netns import Host, HostNet, leftovers, why_unavailable

__all__ = ["Host", "HostNet", "hosts", "no_leftovers"]

# The suffixes of the networks this process made: another test session on the machine
# (a developer's, run at the same time) has its own, which are not ours to judge.
_MADE: set[str] = set()


@pytest.fixture
def hosts() -> Iterator[HostNet]:
    """A fresh :class:`HostNet`, removed with everything in it when the test ends."""
    problem = why_unavailable()
    if problem is not None:
        pytest.skip(problem)
    net = HostNet()
    _MADE.add(net.suffix)
    try:
        yield net
    finally:
        net.close()


@pytest.fixture(scope="session", autouse=False)
def no_leftovers() -> Iterator[None]:
    """Checks, once the session's tests ran, that no namespace or link of ours is left."""
    yield
    if why_unavailable() is None:
        left = leftovers(_MADE)
        assert not left, f"network namespace tests left these behind: {left}"
