"""``stepline server``: the production HTTP server (event API, REST API, dashboard) and a
worker, in one process (``--no-worker``: the APIs alone)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from stepline._urls import shown_url
from stepline.cli import _render as render
from stepline.cli._commands._http import access_options, http_options, server_settings
from stepline.cli._commands.worker import LOG_LEVELS, RunFormatter
from stepline.cli._common import (
    app_argument,
    concurrency_option,
    db_label,
    db_option,
    load_app,
    use_db,
)
from stepline.engine.worker import Worker, default_worker_id
from stepline.sdk.app import on_stop_signals
from stepline.server import HttpServer
from stepline.server.inngest_api import serve_sdk_apps
from stepline.server.serve import run_serving, serve_until

log = logging.getLogger("stepline.cli")


@click.command()
@app_argument
@db_option
@http_options
@access_options
@click.option(
    "--no-worker",
    is_flag=True,
    envvar="STEPLINE_NO_WORKER",
    show_envvar=True,
    help="Serve the APIs only; runs are executed by `stepline worker` processes elsewhere.",
)
@concurrency_option
@click.option(
    "--worker-id",
    metavar="ID",
    envvar="STEPLINE_WORKER_ID",
    show_envvar=True,
    help="The worker's identity (default: host name and a random suffix).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    envvar="STEPLINE_LOG_LEVEL",
    show_envvar=True,
    help="Level of the log lines written to stderr.",
)
def server(
    app_ref: str,
    db: str | None,
    host: str,
    port: int,
    event_keys: tuple[str, ...],
    api_tokens: tuple[str, ...],
    signing_key: str | None,
    signing_key_fallback: str | None,
    keys_file: Path | None,
    dashboard_password: str | None,
    dashboard_secret: str | None,
    no_worker: bool,
    concurrency: int,
    worker_id: str | None,
    log_level: str,
) -> None:
    """Serve MODULE:APP over HTTP (events, REST API, dashboard) with a worker, until
    SIGINT/SIGTERM.

    Listens on 127.0.0.1:8288 unless told otherwise; any other address needs event keys and
    API tokens (STEPLINE_EVENT_KEYS, STEPLINE_API_TOKENS, or a --keys-file, re-read when it
    changes: keys are revoked without a restart). The dashboard logs in with
    --dashboard-password or an API token. Several servers may share one database.
    """
    settings = server_settings(
        host,
        port,
        event_keys,
        api_tokens,
        dev=False,
        signing_key=signing_key,
        signing_key_fallback=signing_key_fallback,
        keys_file=keys_file,
        dashboard_password=dashboard_password,
        dashboard_secret=dashboard_secret,
    )
    app = load_app(app_ref)
    use_db(app, db, memory_ok=False)
    handler = logging.StreamHandler()
    handler.setFormatter(RunFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    if serve_sdk_apps(app, settings) is None:
        log.info("no --signing-key: Inngest SDK apps cannot register or run on this server")
    try:
        http = HttpServer(app.asgi(settings), settings.host, settings.port)
        worker: Worker | None = None
        if not no_worker:
            worker_id = worker_id or default_worker_id()
            worker = app.make_worker(concurrency=concurrency, worker_id=worker_id)
        log.info(
            "server %s: app %s (%s), db %s, %s",
            http.url,
            app.id,
            render.count(len(app.functions), "function"),
            shown_url(db_label(app)),
            f"worker {worker_id}, concurrency {concurrency}" if worker else "no worker",
        )
        run_serving(_serve(http, worker))
    finally:
        app.close()
    log.info("server %s: stopped", http.url)


async def _serve(http: HttpServer, worker: Worker | None) -> None:
    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), lambda _sig: stop.set())
    await serve_until(http, worker, stop)
