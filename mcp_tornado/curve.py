"""CurveZMQ on the router link: key files, the router's authenticator, a worker's DEALER.

An ``ipc://`` link needs nothing: the runtime folder's permissions guard it.
Any other transport (``tcp://``) crosses a network, where anything that reaches
the router's port could otherwise speak as a worker, so it is encrypted and
authenticated with CurveZMQ unless the operator says ``--insecure``:

* ``mcp-tornado keys DIR --name NAME`` (:func:`create_keys`) writes
  ``NAME.key`` (public, to copy) and ``NAME.key_secret`` (mode 0600, stays on
  its host), in ZeroMQ's certificate format.
* The router is the CURVE server (:func:`secure_router`): its secret
  certificate (``--curve-secret-key-file``) and a folder of the public
  certificates of the workers it accepts (``--curve-allowed-dir``), checked by
  a ZAP authenticator thread that re-reads the folder at every handshake (a
  new worker host needs no router restart) and logs every refusal once a
  minute per key, with the worker's name and address.
* A worker is a CURVE client (:func:`secure_dealer`, one call per router
  link: sharded routers each have their own server key): its secret
  certificate and the router's public one (``--curve-server-key-file``).

Secrets are read from files only (never argv, never logs, never the settings
JSON ``serve`` hands its children: that holds the paths).  A key file that is
missing, malformed, or readable by others stops the command with one line.
"""

from __future__ import annotations

import logging
import socket
import stat
import time
from pathlib import Path
from typing import Any, Final, NamedTuple

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

log = logging.getLogger(__name__)

CURVE_AVAILABLE: Final = bool(zmq.has("curve"))  # pyzmq's wheels bundle libsodium
_KEY_LENGTH: Final = 40  # a Z85-encoded 32-byte key
_REFUSAL_LOG_INTERVAL: Final = 60.0  # seconds between two log lines about one refused key

# What a worker's or the router's socket monitor reports about a failed CURVE handshake.
HANDSHAKE_FAILURES: Final = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


class KeyPair(NamedTuple):
    """One side's CURVE keys, Z85-encoded (as ZeroMQ's certificate files hold them)."""

    public: bytes
    secret: bytes


def needs_curve(endpoint: str) -> bool:
    """Whether a link on ``endpoint`` crosses a network (anything but ipc:// and inproc://)."""
    return not endpoint.startswith(("ipc://", "inproc://"))


def support_line() -> str:
    """What the start log line says about CURVE support."""
    return f"CURVE {'available' if CURVE_AVAILABLE else 'UNAVAILABLE'} (libzmq {zmq.zmq_version()})"


# --- key files ----------------------------------------------------------------


def create_keys(directory: Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) into ``directory``.

    Raises ``ValueError`` if either exists (a key pair is never overwritten)
    or if this libzmq has no CURVE support.
    """
    if not CURVE_AVAILABLE:
        raise ValueError("this libzmq has no CURVE support (libsodium): cannot make keys")
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad key name {name!r}: use letters, digits, '-' and '_'")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise ValueError(f"{path} already exists: remove it first, or pick another --name")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    made = zmq.auth.create_certificates(directory, name)
    Path(made[1]).chmod(0o600)
    return Path(made[0]), Path(made[1])


def _read(path: Path, flag: str) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError:
        raise ValueError(f"{flag}: cannot read {path}") from None
    except ValueError:
        raise ValueError(f"{flag}: {path} is not a CURVE certificate (no public key)") from None
    for key in (public, secret):
        if key is not None and (len(key) != _KEY_LENGTH or _undecodable(key)):
            raise ValueError(f"{flag}: {path} holds a malformed key")
    return public, secret


def _undecodable(key: bytes) -> bool:
    try:
        z85.decode(key)
    except (ValueError, KeyError, IndexError):
        return True
    return False


def load_key_pair(path: Path, flag: str = "--curve-secret-key-file") -> KeyPair:
    """The key pair in a ``.key_secret`` file; ``ValueError`` (naming ``flag``) if unusable."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise ValueError(f"{flag}: cannot read {path}") from None
    if mode & 0o077:
        raise ValueError(
            f"{flag}: {path} has mode {stat.S_IMODE(mode):04o}, readable by others; chmod 600 it"
        )
    public, secret = _read(path, flag)
    if secret is None:
        raise ValueError(f"{flag}: {path} holds no secret key (give the NAME.key_secret file)")
    return KeyPair(public, secret)


def load_public_key(path: Path, flag: str = "--curve-server-key-file") -> bytes:
    """The public key in a certificate file; ``ValueError`` (naming ``flag``) if unusable."""
    return _read(path, flag)[0]


def allowed_keys(directory: Path, flag: str = "--curve-allowed-dir") -> set[bytes]:
    """The public keys of the ``*.key`` files in ``directory`` (``ValueError`` if unusable)."""
    if not directory.is_dir():
        raise ValueError(f"{flag}: {directory} is not a directory")
    return {_read(path, flag)[0] for path in sorted(directory.glob("*.key"))}


# --- the policy: which settings a link needs ---------------------------------------


def check_router(
    bind: str, secret_file: Path | None, allowed_dir: Path | None, insecure: bool
) -> None:
    """Raise ``ValueError`` (one line) unless the router's link settings make sense."""
    _check(bind, "--bind", secret_file, allowed_dir, "--curve-allowed-dir", insecure)
    if secret_file is not None and allowed_dir is not None:
        load_key_pair(secret_file)
        allowed_keys(allowed_dir)


def check_link(
    endpoint: str, secret_file: Path | None, server_file: Path | None, insecure: bool
) -> None:
    """Raise ``ValueError`` (one line) unless a worker's link settings make sense."""
    _check(endpoint, "--router", secret_file, server_file, "--curve-server-key-file", insecure)
    if secret_file is not None and server_file is not None:
        load_key_pair(secret_file)
        load_public_key(server_file)


def _check(
    endpoint: str,
    endpoint_flag: str,
    secret_file: Path | None,
    other_file: Path | None,
    other_flag: str,
    insecure: bool,
) -> None:
    keyed = secret_file is not None or other_file is not None
    if keyed and insecure:
        raise ValueError("--insecure: turns CURVE off: give it or the CURVE key files, not both")
    if keyed and (secret_file is None or other_file is None):
        given, missing = (
            (other_flag, "--curve-secret-key-file")
            if secret_file is None
            else ("--curve-secret-key-file", other_flag)
        )
        raise ValueError(f"{given}: CURVE needs {missing} too")
    if keyed and not CURVE_AVAILABLE:
        raise ValueError("CURVE keys are set but this libzmq has no CURVE support (libsodium)")
    if not keyed and not insecure and needs_curve(endpoint):
        raise ValueError(
            f"{endpoint_flag}: {endpoint} crosses a network: give CURVE keys "
            f"(--curve-secret-key-file and {other_flag}; make them with `mcp-tornado keys`), "
            "or --insecure for a plain-text link anyone who reaches it can use"
        )


# --- sockets ------------------------------------------------------------------------


def secure_dealer(sock: zmq.Socket[Any], keys: KeyPair | None, server_key: bytes | None) -> None:
    """Make ``sock`` (a worker's DEALER, before it connects) a CURVE client of one router.

    ``keys`` is the worker's pair, ``server_key`` that router's public key;
    both ``None``: a plain link (ipc://, or --insecure).
    """
    if keys is None or server_key is None:
        return
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = server_key


def link_keys(
    secret_file: Path | None, server_file: Path | None
) -> tuple[KeyPair | None, bytes | None]:
    """The keys :func:`secure_dealer` takes, read from the settings' files."""
    if secret_file is None or server_file is None:
        return None, None
    return load_key_pair(secret_file), load_public_key(server_file)


def describe_handshake_failure(event: int, value: int, endpoint: str) -> str | None:
    """One line about a failed handshake on a worker's link, or ``None`` for other events."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return (
            f"the router at {endpoint} refused this worker's CURVE key "
            "(its NAME.key is not in the router's --curve-allowed-dir); retrying"
        )
    if event in (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL):
        return (
            f"CURVE handshake with the router at {endpoint} failed (error {value}): "
            "wrong --curve-server-key-file, or the router is not using CURVE; retrying"
        )
    return None


class Throttle:
    """Says whether to log about ``key`` now: at most once a minute per key.

    A refused worker retries every second; its reason is worth one line, not a flood.
    """

    def __init__(self, interval: float = _REFUSAL_LOG_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[object, float] = {}

    def ready(self, key: object) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            return False
        if len(self._last) > 10_000:  # many keys: an attacker's, not worth the memory
            self._last.clear()
        self._last[key] = now
        return True


class _Allowed:
    """The ZAP callback: is a worker's key in the allowed folder (read at every handshake)?"""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.throttle = Throttle()
        self.peer = ""  # the address of the connection being checked

    def callback(self, domain: str, key: bytes) -> bool:
        try:
            allowed = key in allowed_keys(self.directory)
        except ValueError as exc:
            log.error(
                "router: cannot read the allowed worker keys: %s",
                exc,
                extra={"event": "curve_keys_unreadable", "reason": str(exc)},
            )
            return False
        if not allowed and self.throttle.ready(key):
            log.warning(
                "router: refused a worker from %s: its CURVE key %s is not in %s",
                self.peer,
                key.decode(),
                self.directory,
                extra={"event": "worker_key_refused", "client": self.peer, "key": key.decode()},
            )
        return allowed


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, telling the callback who is asking (its address)."""

    allowed: _Allowed

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # version, request id, domain, address, ...: the routing id (worker name)
        # comes only after the handshake, so the address is all there is to say.
        if len(msg) >= 4:
            self.allowed.peer = msg[3].decode(errors="replace")
        await super().handle_zap_message(msg)


class RouterSecurity:
    """The router's CURVE server side: keys on its ROUTER socket and the ZAP thread.

    Usage::

        security = RouterSecurity.start(sock, keys, allowed_dir)  # before sock.bind()
        ...
        security.stop()
    """

    def __init__(self, authenticator: ThreadAuthenticator, allowed_dir: Path) -> None:
        self._authenticator = authenticator
        self.allowed_dir = allowed_dir

    @classmethod
    def start(cls, sock: zmq.Socket[Any], keys: KeyPair, allowed_dir: Path) -> RouterSecurity:
        allowed = _Allowed(allowed_dir)
        authenticator = _Authenticator(sock.context, log=logging.getLogger(__name__ + ".zap"))
        authenticator.allowed = allowed
        authenticator.start()
        authenticator.configure_curve_callback(domain="*", credentials_provider=allowed)
        sock.curve_server = True
        sock.curve_secretkey = keys.secret
        sock.curve_publickey = keys.public
        return cls(authenticator, allowed_dir)

    def stop(self) -> None:
        self._authenticator.stop()


def secure_router(
    sock: zmq.Socket[Any], secret_file: Path | None, allowed_dir: Path | None
) -> RouterSecurity | None:
    """Make ``sock`` (the router's ROUTER, before it binds) a CURVE server if keys are set."""
    if secret_file is None or allowed_dir is None:
        return None
    return RouterSecurity.start(sock, load_key_pair(secret_file), allowed_dir)


def describe_router_link(bind: str, allowed_dir: Path | None, insecure: bool) -> str:
    """How the router's link is protected, for its start log line."""
    if allowed_dir is not None:
        return f"CURVE on, workers' keys in {allowed_dir}"
    if insecure and needs_curve(bind):
        return "INSECURE: no CURVE"
    return "no CURVE: an ipc:// link is guarded by its folder's permissions"


def describe_router_failure(event: int, value: int) -> str | None:
    """One line about a failed handshake seen by the router, or ``None`` for other events."""
    # EVENT_HANDSHAKE_FAILED_AUTH: the ZAP callback has said which key, from where.
    if event in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
        return (
            f"router: a handshake failed (error {value}): a worker with the wrong "
            "--curve-server-key-file, or one not using CURVE"
        )
    return None


def default_key_name() -> str:
    """The name ``mcp-tornado keys`` gives a key pair by default: this host's name."""
    return socket.gethostname().split(".")[0] or "mcp-tornado"
