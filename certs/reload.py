"""A server TLS context that serves replaced certificate files to new connections.

The files are watched by their stat signature; a changed pair is loaded into a fresh
SSLContext off the event loop and swapped in through the SNI callback, which OpenSSL calls
for every handshake (with or without SNI). Connections already open keep their session. A
half-written or mismatched pair is ignored until it is whole, so rotation never breaks
handshakes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

log = logging.getLogger("stateful_guard.certs")

# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are all strong.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

_Signature = tuple[tuple[int, int, int], ...]


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ server context with strong ciphers, optionally requiring client certs."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


class ReloadingContext:
    """Owns the listening SSLContext and the newest certificate behind it."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._signature = self._stat()
        self._current = server_context(cert, key, client_ca)
        self.context = server_context(cert, key, client_ca)
        self.context.sni_callback = self._select
        self.reloads = 0

    def _select(
        self, sslobj: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        if self._current is not self.context:
            sslobj.context = self._current

    def _stat(self) -> _Signature:
        paths = [self.cert, self.key] + ([self.client_ca] if self.client_ca else [])
        signature = []
        for path in paths:
            st = path.stat()
            signature.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(signature)

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; blocking, so call it from a thread."""
        try:
            signature = self._stat()
            if signature == self._signature:
                return False
            context = server_context(self.cert, self.key, self.client_ca)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.warning("certificate files not loadable yet, keeping the current ones: %s", exc)
            return False
        self._current = context
        self._signature = signature
        self.reloads += 1
        log.info("reloaded serving certificate", extra={"cert": str(self.cert)})
        return True

    async def watch(self, interval: float) -> None:
        """Check the files every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.reload_if_changed)
