"""``str.isdigit`` holds for ``"²"`` (and ``"¹"``, ``"³"``: Latin-1 characters an HTTP header
can carry), which ``int`` refuses: every place that read a number that way raised
``ValueError`` instead of treating the text as not a number (lead, nineteenth stop): the REST
API answered 500 to ``?limit=²`` or ``?since=²``, the dashboard's runs page to ``?scan=²``, a
signature header ``t=²`` made a 500 instead of a refused signature, an SDK's
``Retry-After: ²`` or ``X-Inngest-Req-Version: ²`` failed the pass, ``RetryAfterError("²")``
failed the engine's retry instead of falling back to the backoff. ``_text.is_digits`` is the
one test now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from stepline import App, RetryAfterError
from stepline._text import is_digits
from stepline.drivers.inngest import SigningKey, verify
from stepline.drivers.inngest._errors import SignatureError
from stepline.drivers.inngest._responses import parse_reply, retry_at
from stepline.engine.retry import retry_after_time
from stepline.expressions._env import MISSING, lookup
from stepline.sdk.backoff import RetryBackoff
from stepline.server._discovery import PORTS, discovery_ports

SUPERSCRIPT = "\u00b2"  # "²": str.isdigit() is True, int() refuses it
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def test_is_digits_is_what_int_reads() -> None:
    assert is_digits("0123") and not is_digits("") and not is_digits("-1")
    for text in (SUPERSCRIPT, "\u0661", "1\u00b2"):  # "²", an Arabic-Indic one, "1²"
        assert text.isdigit() and not is_digits(text)


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/runs?limit={SUPERSCRIPT}",
        f"/api/v1/runs?created_after={SUPERSCRIPT}",
        f"/api/v1/runs?q=x&scan={SUPERSCRIPT}",
        f"/api/v1/events?received_before={SUPERSCRIPT}",
    ],
)
async def test_the_rest_api_refuses_a_superscript_number_with_400(
    serve: Any, app: App, path: str
) -> None:
    async with serve() as (client, _):
        reply = await client.get(path)
    assert reply.status_code == 400, reply.text
    assert SUPERSCRIPT in reply.json()["error"]


def test_a_signature_header_with_a_superscript_time_is_refused_as_malformed() -> None:
    key = SigningKey.parse("signkey-test-" + "ab" * 32)
    with pytest.raises(SignatureError, match="malformed"):
        verify(b"{}", f"t={SUPERSCRIPT}&s=abc", [key], now=0)


def test_an_sdks_superscript_retry_after_or_version_is_unreadable_not_an_error() -> None:
    assert retry_at(SUPERSCRIPT, NOW) is None
    headers = {"X-Inngest-SDK": "js:v3", "X-Inngest-Req-Version": SUPERSCRIPT}
    assert parse_reply(200, headers, b"1", NOW).request_version is None


def test_a_superscript_retry_after_falls_back_to_the_backoff() -> None:
    backoff = RetryBackoff((7.0,), jitter=0)
    assert retry_after_time(RetryAfterError("later", SUPERSCRIPT), 100.0, backoff) == 107.0


def test_a_superscript_port_or_list_index_is_no_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", SUPERSCRIPT)
    assert discovery_ports() == PORTS
    assert lookup({"items": ["a"]}, ["items", SUPERSCRIPT]) is MISSING
