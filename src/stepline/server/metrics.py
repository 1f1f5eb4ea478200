"""``/metrics``: Prometheus's text format (version 0.0.4).

From the database (every process sharing it sees the same): runs by state
(``stepline_runs{status=...}``), the queue's depth, the runs due and not leased, and the lag of
the oldest of them (``stepline_queue_oldest_due_seconds``: how long it has been due). From this
process: step attempts and their durations (``stepline_step_duration_seconds``, a histogram),
events accepted (``stepline_events_accepted_total``), the async checkpoints of Inngest JS SDK 4.x
apps answered (``stepline_inngest_checkpoints_total{status=...}``: 200 committed, 409 refused, 503
not driven here).
"""

from __future__ import annotations

from typing import get_args

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from stepline.drivers.inngest._apps import registered_sdk_apps
from stepline.errors import StoreError
from stepline.server._auth import require_api_token
from stepline.server._problems import Problem, store_failure_text
from stepline.server._state import stepline_app
from stepline.store.records import RunStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES: tuple[str, ...] = get_args(RunStatus)


def metrics_routes() -> list[BaseRoute]:
    return [Route("/metrics", metrics, methods=["GET"])]


async def metrics(request: Request) -> Response:
    """The metrics (behind the API token, like the REST API)."""
    require_api_token(request)
    app = stepline_app(request)
    engine = app.engine
    try:
        stats = await app.stats()
    except StoreError as exc:
        raise Problem(503, store_failure_text("database not readable", exc)) from None
    now = engine.clock.now()
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("stepline_runs", "gauge", "Runs in the database by status.")
    for status in STATUSES:
        lines.append(f'stepline_runs{{status="{status}"}} {stats.runs_by_status.get(status, 0)}')
    family(
        "stepline_queue_depth", "gauge", "Unfinished runs in the queue (due or not, leased or not)."
    )
    lines.append(f"stepline_queue_depth {stats.queue_depth}")
    family("stepline_queue_due", "gauge", "Runs due now and not leased by a worker.")
    lines.append(f"stepline_queue_due {stats.due_now}")
    family(
        "stepline_queue_oldest_due_seconds",
        "gauge",
        "How long the oldest run due and not leased has been due (0 when none is).",
    )
    lag = max(0.0, now - stats.oldest_due_at) if stats.oldest_due_at is not None else 0.0
    lines.append(f"stepline_queue_oldest_due_seconds {lag:.6f}")
    counts = engine.metrics
    family("stepline_events_accepted_total", "counter", "Events accepted by this process.")
    lines.append(f"stepline_events_accepted_total {counts.events_accepted}")
    family("stepline_step_attempts_total", "counter", "Step attempts ended in this process.")
    for outcome, count in counts.step_attempts.items():
        lines.append(f'stepline_step_attempts_total{{outcome="{outcome}"}} {count}')
    family(
        "stepline_step_duration_seconds", "histogram", "Duration of step attempts in this process."
    )
    cumulative, total, count = counts.step_seconds.snapshot()
    for bound, seen in zip(counts.step_seconds.bounds, cumulative, strict=False):
        lines.append(f'stepline_step_duration_seconds_bucket{{le="{bound:g}"}} {seen}')
    lines.append(f'stepline_step_duration_seconds_bucket{{le="+Inf"}} {cumulative[-1]}')
    lines.append(f"stepline_step_duration_seconds_sum {total:.6f}")
    lines.append(f"stepline_step_duration_seconds_count {count}")
    apps = registered_sdk_apps(app)
    if apps is not None:
        family(
            "stepline_inngest_checkpoints_total",
            "counter",
            "Async checkpoints of SDK apps (POST /v1/checkpoint/{run_id}/async) answered here.",
        )
        for code in (200, 409, 503):
            answered = apps.driver.checkpoint_replies[code]
            lines.append(f'stepline_inngest_checkpoints_total{{status="{code}"}} {answered}')
    return Response("\n".join(lines) + "\n", media_type=CONTENT_TYPE)
