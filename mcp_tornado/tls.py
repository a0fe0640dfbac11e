"""Native TLS for a worker's port: the server's ``SSLContext``, loaded from files and reloaded.

Usage::

    check_pair(certfile, keyfile)            # at start: ValueError (one line) if unusable
    certificate = Certificate(certfile, keyfile)
    certificate.context                      # for each new connection
    certificate.reload()                     # on SIGHUP: new connections get the new files

The context has modern defaults: ``ssl.create_default_context(Purpose.
CLIENT_AUTH)`` (Python's curated ciphers, no compression, no renegotiation),
TLS 1.2 at least, and ALPN ``http/1.1`` (the only HTTP this server speaks).
The key file must not be encrypted: a passphrase would have to live somewhere
the server can read it anyway, and OpenSSL would otherwise prompt on a
terminal; keep the key file readable by the server's user only.

A reload that fails (a missing file, a key that does not match, a half-copied
certificate) logs one line and keeps the context in use: open connections
are never touched, new ones keep working with the old certificate.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import NoReturn

log = logging.getLogger(__name__)

ALPN: tuple[str, ...] = ("http/1.1",)
_SSL_REASONS = {
    "KEY_VALUES_MISMATCH": "the key does not belong to the certificate",
    "PEM lib": "not a PEM certificate chain and its PEM private key",
}


def _no_passphrase() -> NoReturn:
    # Called by OpenSSL for an encrypted key instead of prompting on the terminal.
    raise ValueError("the key is encrypted; give an unencrypted key file (mode 0600)")


def load_context(certfile: Path, keyfile: Path) -> ssl.SSLContext:
    """A server context for ``certfile`` (the chain, leaf first) and ``keyfile``.

    Raises ``ValueError`` with one line naming the files and the reason.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(ALPN)
    for flag, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if not path.is_file():
            raise ValueError(f"{flag} {path}: no such file")
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_passphrase)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason: object = getattr(exc, "strerror", None) or exc
        if isinstance(exc, ssl.SSLError):
            reason = _SSL_REASONS.get(exc.reason or "PEM lib", exc.reason)
        raise ValueError(
            f"--certfile {certfile} / --keyfile {keyfile}: cannot use them: {reason}"
        ) from None
    return context


def check_pair(certfile: Path | None, keyfile: Path | None) -> None:
    """Raise ``ValueError`` (one line) unless both or neither are given and they load."""
    if certfile is None and keyfile is None:
        return
    if certfile is None or keyfile is None:
        given, missing = (
            ("--certfile", "--keyfile") if keyfile is None else ("--keyfile", "--certfile")
        )
        raise ValueError(f"{given}: needs {missing} too (give both, or neither)")
    load_context(certfile, keyfile)


class Certificate:
    """The context new TLS connections get; :meth:`reload` swaps it for one from the files."""

    __slots__ = ("certfile", "context", "keyfile")

    def __init__(self, certfile: Path, keyfile: Path) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.context = load_context(certfile, keyfile)

    def reload(self) -> bool:
        """Load the files again; on failure log one line and keep the current context."""
        try:
            self.context = load_context(self.certfile, self.keyfile)
        except ValueError as exc:
            log.error(
                "TLS reload failed, still serving the previous certificate: %s",
                exc,
                extra={"event": "tls_reload_failed", "reason": str(exc)},
            )
            return False
        log.info(
            "TLS certificate reloaded from %s",
            self.certfile,
            extra={"event": "tls_reloaded", "path": str(self.certfile)},
        )
        return True
