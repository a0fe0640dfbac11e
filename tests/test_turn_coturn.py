"""A real coturn accepts the TURN credentials mcp_tornado.ice mints, and only those.

A TURN Allocate with aioice's TURN client (the one aiortc uses): coturn first
challenges it (401 with a realm and a nonce), the client answers with
MESSAGE-INTEGRITY keyed by our username and credential, and coturn either
allocates a relay address or refuses again with 401 Unauthorized.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import pytest
from aioice import stun
from aioice.turn import TurnClientUdpProtocol

from mcp_tornado import ice
from mcp_tornado.settings import IceSettings
from tests.coturn import REALM, Coturn, running_coturn

SECRET = secrets.token_hex(24).encode()


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    with running_coturn(tmp_path_factory.mktemp("turn"), SECRET) as turn:
        yield turn


def _client(turn: Coturn, username: str, credential: str) -> TurnClientUdpProtocol:
    return TurnClientUdpProtocol(turn.address, username, credential, 600, 300)


async def _allocate(turn: Coturn, client: TurnClientUdpProtocol) -> tuple[str, int]:
    """Allocate (then free) a relay with ``client``; its address.  Raises coturn's refusal."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: client, remote_addr=turn.address)
    try:
        relayed = await asyncio.wait_for(client.connect(), 20)
        await client.delete()
    finally:
        transport.close()
    return relayed


def _accepted(turn: Coturn, username: str, credential: str) -> tuple[str, int]:
    client = _client(turn, username, credential)
    relayed = asyncio.run(_allocate(turn, client))
    assert client.realm == REALM and client.integrity_key is not None  # it signed its request
    return relayed


def _refused(turn: Coturn, username: str, credential: str) -> None:
    """coturn refuses the signed Allocate with 401 Unauthorized."""
    client = _client(turn, username, credential)
    with pytest.raises(stun.TransactionFailed) as refused:
        asyncio.run(_allocate(turn, client))
    # The refusal of the second try: the client had taken coturn's realm and nonce
    # from the first answer (every unsigned request is answered 401) and signed it.
    assert client.realm == REALM and client.nonce is not None and client.integrity_key is not None
    response = refused.value.response
    assert response.message_method == stun.Method.ALLOCATE
    assert response.message_class == stun.Class.ERROR
    assert response.attributes["ERROR-CODE"] == (401, "Unauthorized")
    assert response.attributes["REALM"] == REALM


def _fresh(ttl: float = 600) -> tuple[str, str]:
    """Credentials as a joined event hands them out."""
    servers = ice.IceServers(
        IceSettings(turn_uris=("turn:127.0.0.1",), turn_secret=SECRET, turn_ttl=ttl)
    )
    listed = servers.for_peer()
    assert listed is not None
    turn = listed[0]
    assert turn.username is not None and turn.credential is not None
    return turn.username, turn.credential


def test_a_fresh_credential_allocates_a_relay_address(coturn: Coturn) -> None:
    host, port = _accepted(coturn, *_fresh())
    assert host == coturn.host and port in coturn.relay_ports


def test_an_expired_credential_is_refused_with_401(coturn: Coturn) -> None:
    expired = int(time.time()) - 60
    username, credential = ice.turn_credentials(SECRET, "expired-peer", expired)
    _refused(coturn, username, credential)
    assert f"<{username}>" in coturn.logs()  # coturn names the user it refused
    # The same peer id with a time to come is accepted: it is the expiry that was refused.
    _accepted(coturn, *ice.turn_credentials(SECRET, "expired-peer", expired + 3600))


def test_tampered_credentials_are_refused_with_401(coturn: Coturn) -> None:
    username, credential = _fresh()
    expires, _, peer_id = username.partition(":")
    flipped = ("A" if credential[0] != "A" else "B") + credential[1:]
    _refused(coturn, username, flipped)  # the credential changed
    _refused(coturn, f"{int(expires) + 86_400}:{peer_id}", credential)  # a later expiry
    _refused(coturn, f"{expires}:{peer_id[:-1]}x", credential)  # another peer id
    _refused(coturn, *ice.turn_credentials(b"another-secret-0123456789", peer_id, int(expires)))
    _accepted(coturn, username, credential)  # the untampered one still works


def test_an_allocation_made_in_time_outlives_its_credential(coturn: Coturn) -> None:
    """coturn checks the expiry when a relay is allocated, not on its later refreshes.

    So a relayed call lasts beyond the TTL; the TTL bounds how long a credential
    can start new allocations (a late join, an ICE restart, a leaked credential).
    """
    expires = int(time.time()) + 3
    username, credential = ice.turn_credentials(SECRET, "long-call", expires)

    async def call() -> None:
        client = _client(coturn, username, credential)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: client, remote_addr=coturn.address
        )
        try:
            await asyncio.wait_for(client.connect(), 20)
            await asyncio.sleep(max(0.0, expires + 1.5 - time.time()))  # now it has expired
            permission = stun.Message(stun.Method.CREATE_PERMISSION, stun.Class.REQUEST)
            permission.attributes["XOR-PEER-ADDRESS"] = (coturn.host, coturn.relay_ports.start)
            refresh = stun.Message(stun.Method.REFRESH, stun.Class.REQUEST)
            refresh.attributes["LIFETIME"] = 600
            for request in (permission, refresh):
                response, _ = await asyncio.wait_for(client.request_with_retry(request), 20)
                assert response.message_class == stun.Class.RESPONSE
            await client.delete()
        finally:
            transport.close()

    asyncio.run(call())
    _refused(coturn, username, credential)  # but no new allocation with it
