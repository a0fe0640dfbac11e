"""Every setting of the router and the workers, defined once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024
DEFAULT_RATE: Final = 50.0
DEFAULT_BURST: Final = 200
DEFAULT_MAX_ROOM_LENGTH: Final = 64
DEFAULT_MAX_CONNECTIONS: Final = 10_000
DEFAULT_MAX_PENDING_BYTES: Final = 1024 * 1024
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class Limits:
    """The hardening knobs of a worker (each a CLI flag of ``serve`` and ``worker``)."""

    rate: float = DEFAULT_RATE  # frames per second per connection; 0: unlimited
    burst: int = DEFAULT_BURST  # frames a connection may send at once
    max_room_length: int = DEFAULT_MAX_ROOM_LENGTH  # characters
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # per worker; 0: unlimited
    max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES  # queued for one client; 0: unlimited
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT  # seconds to send the HTTP headers
    allowed_origins: tuple[str, ...] = ()  # empty: same host and localhost
    token_secret: bytes | None = field(default=None, repr=False)  # None: tokens off

    def __post_init__(self) -> None:
        numbers = {
            "rate-limit": self.rate,
            "max-connections": self.max_connections,
            "max-pending-bytes": self.max_pending_bytes,
            "handshake-timeout": self.handshake_timeout,
        }
        for name, value in numbers.items():
            if not value >= 0:  # also refuses NaN
                raise ValueError(f"--{name} must be 0 (off) or positive, not {value}")
        if self.rate > 0 and self.burst < 1:
            raise ValueError(f"--rate-burst must be at least 1, not {self.burst}")
        if self.max_room_length < 1:
            raise ValueError(f"--max-room-length must be at least 1, not {self.max_room_length}")
