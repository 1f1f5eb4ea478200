"""``stepline worker``: a production worker."""

from __future__ import annotations

import logging

import click

from stepline._urls import shown_url
from stepline.cli import _render as render
from stepline.cli._common import (
    CliUsageError,
    app_argument,
    concurrency_option,
    db_label,
    db_option,
    load_app,
    use_db,
)
from stepline.engine.worker import default_worker_id

log = logging.getLogger("stepline.cli")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class RunFormatter(logging.Formatter):
    """Adds the function and run of ``ctx.logger`` records: ``... [process-order 01J…]``."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        run_id = getattr(record, "run_id", None)
        if run_id is None:
            return line
        return f"{line} [{getattr(record, 'function_id', '?')} {run_id}]"


@click.command()
@app_argument
@db_option
@concurrency_option
@click.option(
    "--worker-id",
    metavar="ID",
    envvar="STEPLINE_WORKER_ID",
    show_envvar=True,
    help="This worker's identity (default: host name and a random suffix). A worker restarted "
    "with the same id reclaims its predecessor's runs at once.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    envvar="STEPLINE_LEASE_TTL",
    show_envvar=True,
    help="How long a run stays leased without a heartbeat before another worker may take it.",
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
def worker(
    app_ref: str,
    db: str | None,
    concurrency: int,
    worker_id: str | None,
    lease_ttl: float,
    log_level: str,
) -> None:
    """Execute MODULE:APP's runs until SIGINT/SIGTERM (in-flight steps finish first).

    Any number of workers may share one database.
    """
    app = load_app(app_ref)
    use_db(app, db)
    if db_label(app).startswith("memory:"):
        # only this process could send it events, and it sends none: use `stepline dev`
        raise CliUsageError(
            "stepline worker: a worker on memory:// receives no events (only its own process "
            "could send them); use `stepline dev` to try an app in one process, or give a "
            "database file (--db sqlite:///path.db or STEPLINE_DB)"
        )
    handler = logging.StreamHandler()
    handler.setFormatter(RunFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=log_level.upper(), handlers=[handler])
    worker_id = worker_id or default_worker_id()
    log.info(
        "worker %s: app %s (%s), db %s, concurrency %d",
        worker_id,
        app.id,
        render.count(len(app.functions), "function"),
        shown_url(db_label(app)),
        concurrency,
    )
    try:
        app.run_worker(concurrency=concurrency, worker_id=worker_id, lease_ttl=lease_ttl)
    finally:
        app.close()
    log.info("worker %s: stopped", worker_id)
