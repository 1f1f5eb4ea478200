"""``stepline apps sync URL``: ask an Inngest SDK app to sync with the server it is set up for.

The app answers the ``PUT`` by posting its functions to ``/fn/register`` of the server in its
own configuration (``INNGEST_BASE_URL``, ``INNGEST_DEV=http://127.0.0.1:8288``, ...): point it
at ``stepline dev`` or ``stepline server``.
"""

from __future__ import annotations

import time

import click
import httpx

from stepline.cli._common import CliError
from stepline.drivers.inngest import SigningKey, sync_request
from stepline.drivers.inngest._sync import ServerKind


@click.group()
def apps() -> None:
    """Inngest SDK apps (served over HTTP, driven by Stepline)."""


@apps.command("sync")
@click.argument("url")
@click.option(
    "--signing-key",
    envvar="STEPLINE_SIGNING_KEY",
    show_envvar=True,
    help="Sign the request (an app in production mode requires it).",
)
@click.option(
    "--server-kind",
    type=click.Choice(["dev", "cloud"]),
    default="dev",
    show_default=True,
    help="The app's mode: an SDK refuses a sync from a server of the other kind.",
)
def sync(url: str, signing_key: str | None, server_kind: str) -> None:
    """Ask the SDK app served at URL (its serve endpoint, e.g. http://localhost:3000/api/inngest)
    to sync: it registers its functions with its Stepline server."""
    key = SigningKey.parse(signing_key) if signing_key else None
    kind: ServerKind = "cloud" if server_kind == "cloud" else "dev"
    body, headers = sync_request(url, server_kind=kind, key=key, now=time.time())
    try:
        response = httpx.put(url, content=body, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise CliError(f"could not reach {url}: {exc}") from exc
    if response.status_code >= 300:
        raise CliError(f"{url} answered {response.status_code}: {response.text[:500]}")
    click.echo(f"synced {url} ({response.status_code})")
