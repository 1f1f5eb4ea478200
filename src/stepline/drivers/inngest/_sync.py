"""The requests a server makes to an SDK app outside a run: the sync ``PUT`` and the trust
probe. Pure: each returns the body and headers to send (the time is a parameter).

* Sync: ``PUT <serve URL>`` with ``{"url": <serve URL>}``. Out-of-band (the default), the app
  answers by posting its configs to ``/fn/register`` (``parse_registration``); in-band
  (``in_band=True``, signed: cloud mode), it answers the ``PUT`` itself with its configs and
  ``app_id``, signed (``verify_response``, then ``parse_registration`` reads that body too).
  ``X-Inngest-Server-Kind`` must be the app's own mode (a mismatch is refused by the SDKs).
* Trust probe: ``POST <serve URL>?probe=trust``: 200 when the app verified the signature (its
  reply is signed). The body is ``{}``: the JS SDK refuses an empty or ``null`` body (401).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from stepline.drivers.inngest._canonical import canonical_json
from stepline.drivers.inngest._signing import SIGNATURE_HEADER, SigningKey, signature

ServerKind = Literal["dev", "cloud"]


def _headers(body: bytes, key: SigningKey | None, now: float) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers[SIGNATURE_HEADER] = signature(body, key, now)
    return headers


def sync_request(
    serve_url: str,
    *,
    server_kind: ServerKind,
    key: SigningKey | None = None,
    now: float = 0.0,
    in_band: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of the ``PUT`` that asks an app to sync (signed when ``key`` is
    given; ``in_band`` asks the app to answer with its configs)."""
    body = canonical_json({"url": serve_url})
    headers = _headers(body, key, now)
    headers["X-Inngest-Server-Kind"] = server_kind
    if in_band:
        headers["X-Inngest-Sync-Kind"] = "in_band"
    return body, headers


def trust_probe_request(
    serve_url: str, *, key: SigningKey | None = None, now: float = 0.0
) -> tuple[str, bytes, dict[str, str]]:
    """URL, body and headers of a trust probe (does the app hold our signing key?)."""
    parts = urlsplit(serve_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "probe"]
    url = urlunsplit(parts._replace(query=urlencode([*query, ("probe", "trust")])))
    body = canonical_json({})
    return url, body, _headers(body, key, now)
