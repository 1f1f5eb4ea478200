"""What ``stepline dev`` and ``stepline server`` share: where to listen and who may talk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from stepline.cli._common import CliUsageError
from stepline.errors import ConfigError
from stepline.server.settings import DEFAULT_HOST, DEFAULT_PORT, ServerSettings, is_loopback

F = TypeVar("F", bound=Callable[..., Any])


def http_options(fn: F) -> F:
    """``--host``, ``--port``, ``--event-key``, ``--api-token`` and the Inngest signing keys
    (each with its env var)."""
    options = [
        click.option(
            "--host",
            default=DEFAULT_HOST,
            show_default=True,
            envvar="STEPLINE_HOST",
            show_envvar=True,
            help="Address to listen on. Any address but a loopback one (127.0.0.1, ::1, "
            "localhost) needs --event-key and --api-token.",
        ),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=DEFAULT_PORT,
            show_default=True,
            envvar="STEPLINE_PORT",
            show_envvar=True,
            help="Port to listen on (0: any free port; the URL printed says which).",
        ),
        click.option(
            "--event-key",
            "event_keys",
            multiple=True,
            metavar="KEY",
            envvar="STEPLINE_EVENT_KEYS",
            show_envvar=True,
            help="A key accepted by the event API, POST /e/{KEY} (repeatable; in the "
            "variable, separated by spaces). Without any, the event API is open (loopback "
            "only). Prefer the variable: arguments are visible to other users of the machine.",
        ),
        click.option(
            "--api-token",
            "api_tokens",
            multiple=True,
            metavar="TOKEN",
            envvar="STEPLINE_API_TOKENS",
            show_envvar=True,
            help="A bearer token accepted by the REST API (repeatable; in the variable, "
            "separated by spaces). Without any, the REST API is open (loopback only).",
        ),
        click.option(
            "--signing-key",
            metavar="KEY",
            envvar="INNGEST_SIGNING_KEY",
            show_envvar=True,
            help="The Inngest signing key (signkey-...) shared with Inngest SDK apps: requests "
            "to them are signed, their replies and registrations checked. `stepline server` "
            "serves no SDK app without one; `stepline dev` drives them unsigned.",
        ),
        click.option(
            "--signing-key-fallback",
            metavar="KEY",
            envvar="INNGEST_SIGNING_KEY_FALLBACK",
            show_envvar=True,
            help="The previous signing key, still accepted while apps move to the new one.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def access_options(fn: F) -> F:
    """``--keys-file``, ``--dashboard-password``, ``--dashboard-secret`` (``stepline server``)."""
    options = [
        click.option(
            "--keys-file",
            type=click.Path(dir_okay=False, path_type=Path),
            metavar="PATH",
            envvar="STEPLINE_KEYS_FILE",
            show_envvar=True,
            help="A file of event keys and API tokens ('event-key KEY' / 'api-token TOKEN', "
            "one a line), re-read within a second of a change: add or revoke keys without a "
            "restart (replace the file atomically). Its keys add to --event-key/--api-token.",
        ),
        click.option(
            "--dashboard-password",
            metavar="PASSWORD",
            envvar="STEPLINE_DASHBOARD_PASSWORD",
            show_envvar=True,
            help="The dashboard's login password (an API token logs in too). Prefer the "
            "variable: arguments are visible to other users of the machine.",
        ),
        click.option(
            "--dashboard-secret",
            metavar="SECRET",
            envvar="STEPLINE_DASHBOARD_SECRET",
            show_envvar=True,
            help="The secret signing the dashboard's session cookies (default: random per "
            "process, so a restart logs everyone out); give the same one to every instance "
            "behind a load balancer.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def server_settings(
    host: str,
    port: int,
    event_keys: tuple[str, ...],
    api_tokens: tuple[str, ...],
    *,
    dev: bool,
    signing_key: str | None = None,
    signing_key_fallback: str | None = None,
    keys_file: Path | None = None,
    dashboard_password: str | None = None,
    dashboard_secret: str | None = None,
) -> ServerSettings:
    """Settings for a server the command line starts. Refuses (usage error) to listen on an
    address other machines can reach without both event keys and API tokens (given, or in
    the keys file), or with a keys file it cannot read."""
    keys = tuple(k for k in event_keys if k)
    tokens = tuple(t for t in api_tokens if t)
    loopback = is_loopback(host)
    extra: dict[str, Any] = {}
    if dashboard_secret:
        extra["dashboard_secret"] = dashboard_secret
    try:
        settings = ServerSettings(
            host=host,
            port=port,
            dev=dev,
            event_keys=keys,
            api_tokens=tokens,
            allow_unauthenticated=loopback,
            signing_key=signing_key or None,
            signing_key_fallback=signing_key_fallback or None,
            keys_file=None if keys_file is None else str(keys_file),
            dashboard_password=dashboard_password or None,
            **extra,
        )
    except ConfigError as exc:
        raise CliUsageError(f"--keys-file: {exc}") from None
    keys, tokens = settings.accepted_event_keys(), settings.accepted_api_tokens()
    if not loopback and not (keys and tokens):
        missing = " and ".join(
            name for name, given in (("--event-key", keys), ("--api-token", tokens)) if not given
        )
        raise CliUsageError(
            f"refusing to listen on {host}, an address other machines can reach, without "
            f"{missing} (STEPLINE_EVENT_KEYS, STEPLINE_API_TOKENS, or in --keys-file); or "
            "listen on 127.0.0.1"
        )
    return settings
