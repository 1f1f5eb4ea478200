"""One TLS context for the HTTP clients Stepline makes (``httpx``).

``httpx.AsyncClient()`` builds a new ``ssl.SSLContext`` for each client and loads the CA bundle
into it (certifi's, or the one ``SSL_CERT_FILE``/``SSL_CERT_DIR`` name): about 30 ms of CPU on
this machine, paid by every client made, including those that only ever speak plain ``http://``
(an SDK app's sync, each request of a remote CLI command, each look for SDK apps of ``stepline
dev``). Clients given ``verify=tls_context()`` share one, built by ``httpx`` as it builds its
default (the same certificates, the same environment variables), on first use; an
``ssl.SSLContext`` may be shared by connections of any thread."""

from __future__ import annotations

import functools
import ssl

import httpx

__all__ = ["tls_context"]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context for ``httpx`` clients (``verify=tls_context()``): what
    ``httpx`` makes for ``verify=True``, made once."""
    return httpx.create_ssl_context()
