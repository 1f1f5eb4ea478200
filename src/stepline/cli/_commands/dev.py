"""``stepline dev``: a worker with a live log of runs, for development.

Without ``MODULE:APP`` it serves Inngest SDK apps alone, as a drop-in for Inngest's dev server
(``stepline dev --port 8288 -u http://localhost:3000/api/inngest``): the apps started with
``INNGEST_DEV=1`` and ``INNGEST_BASE_URL`` pointing at it sync (``-u``, discovery on the usual
local ports, ``stepline apps sync`` or their own ``POST /fn/register``) and run. Their functions
live in an app named ``SDK_ONLY_APP`` (its database keeps them, and their runs, across
restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stepline import _loops
from stepline._urls import shown_url
from stepline.cli import _render as render
from stepline.cli._commands._http import http_options, server_settings
from stepline.cli._common import (
    JSON_OBJECT,
    CliUsageError,
    concurrency_option,
    db_label,
    db_option,
    load_app,
    make_console,
    paused_functions,
    sqlite_path,
    use_db,
)
from stepline.cli._live import LiveLog, LiveLogHandler, RunTracker, RunWatcher
from stepline.drivers.inngest import SdkApps
from stepline.engine.worker import default_worker_id
from stepline.sdk.app import App, on_stop_signals
from stepline.sdk.backoff import RetryBackoff
from stepline.sdk.event import Event
from stepline.server import HttpServer
from stepline.server._discovery import discovery_ports
from stepline.server.inngest_api import keep_synced, serve_sdk_apps

POLL_INTERVAL = 0.2
TICK_MS = 250  # the worker's poll interval by default (Worker(poll_interval=0.25))
SDK_ONLY_APP = "stepline-dev"  # the app of `stepline dev` without MODULE:APP


def _concurrency_or_queue_workers(fn: Any) -> Any:
    """``--concurrency``, also named ``--queue-workers`` as in Inngest's dev server."""
    return concurrency_option(fn, "--queue-workers")


@click.command()
@click.argument("app_ref", metavar="[MODULE:APP]", envvar="STEPLINE_APP", required=False)
@db_option
@click.option(
    "--send",
    "names",
    multiple=True,
    metavar="NAME",
    envvar="STEPLINE_SEND",
    show_envvar=True,
    help="Send an event with this name once the worker runs (repeatable).",
)
@click.option(
    "--data",
    "datas",
    multiple=True,
    type=JSON_OBJECT,
    envvar="STEPLINE_DATA",
    show_envvar=True,
    help="The data of the event sent by the --send in the same position (a JSON object).",
)
@click.option(
    "--exit-when-done",
    is_flag=True,
    envvar="STEPLINE_EXIT_WHEN_DONE",
    show_envvar=True,
    help="Exit once the runs the sent events started (and the runs they started) have ended: "
    "exit code 0 if all COMPLETED, 1 otherwise.",
)
@_concurrency_or_queue_workers
@click.option(
    "--worker-id",
    metavar="ID",
    envvar="STEPLINE_WORKER_ID",
    show_envvar=True,
    help="This worker's identity. Default: one id per database and host, so a restarted "
    "`stepline dev` resumes the runs its predecessor left at once (not after their lease "
    "expires); a second `stepline dev` on the same database gets an id of its own.",
)
@http_options
@click.option(
    "--sdk-url",
    "-u",
    "sdk_urls",
    multiple=True,
    metavar="URL",
    envvar="STEPLINE_SDK_URLS",
    show_envvar=True,
    callback=lambda _ctx, _param, urls: tuple(_sdk_url(u) for u in urls),
    help="The serve URL of an Inngest SDK app to sync (repeatable; in the variable, separated "
    "by spaces), e.g. http://localhost:3000/api/inngest: asked until it syncs, then at every "
    "poll.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    envvar="STEPLINE_POLL_INTERVAL",
    show_envvar=True,
    help="Seconds between two syncs of the --sdk-url apps.",
)
@click.option(
    "--no-poll",
    is_flag=True,
    envvar="STEPLINE_NO_POLL",
    show_envvar=True,
    help="Sync each --sdk-url app until it has synced once, then no more.",
)
@click.option(
    "--discovery/--no-discovery",
    default=None,
    envvar="STEPLINE_DISCOVERY",
    show_envvar=True,
    help="Look for SDK apps on this machine's usual development ports (3000-3010, 5000, 5173, "
    "8000, 8080, 8888, $PORT, ...) at their usual paths (/api/inngest, ...) at every poll, and "
    "sync those found, as Inngest's dev server does. Default: on without MODULE:APP.",
)
@click.option(
    "--retry-interval",
    type=click.IntRange(min=1),
    default=None,
    metavar="SECONDS",
    envvar="STEPLINE_RETRY_INTERVAL",
    show_envvar=True,
    help="Retry every failed step (or function) after this many seconds, the same wait each "
    "time (linear backoff, no jitter), as Inngest's dev server's --retry-interval. Default: the "
    "app's retry_backoff, or 1 s, 2 s, 4 s ... (plus up to 1 s).",
)
@click.option(
    "--tick",
    type=click.IntRange(min=1),
    default=TICK_MS,
    show_default=True,
    metavar="MS",
    envvar="STEPLINE_TICK",
    show_envvar=True,
    help="Milliseconds between two looks of the worker for work it was not told about (runs "
    "other processes on the database started or woke), as Inngest's dev server's --tick (the "
    "interval at which its executor polls the queue).",
)
def dev(
    app_ref: str | None,
    db: str | None,
    names: tuple[str, ...],
    datas: tuple[dict[str, Any], ...],
    exit_when_done: bool,
    concurrency: int,
    worker_id: str | None,
    host: str,
    port: int,
    event_keys: tuple[str, ...],
    api_tokens: tuple[str, ...],
    signing_key: str | None,
    signing_key_fallback: str | None,
    sdk_urls: tuple[str, ...],
    poll_interval: float,
    no_poll: bool,
    discovery: bool | None,
    retry_interval: int | None,
    tick: int,
) -> None:
    """Run MODULE:APP's functions with a live log of every run, step and retry, and serve the
    dashboard, the event API and the REST API on http://127.0.0.1:8288.

    Without MODULE:APP, serve Inngest SDK apps alone (a drop-in for Inngest's dev server): start
    them with INNGEST_DEV=1 INNGEST_BASE_URL=http://127.0.0.1:8288 and name them with -u URL.

    Runs until Ctrl-C (in-flight steps finish first), or with --exit-when-done until the runs
    started by the --send events have ended.

    \b
    stepline dev examples.shop:app --send order/created \\
        --data '{"orderId": "o-1", "amount": 120}' --exit-when-done
    """
    events = _events(names, datas)
    if exit_when_done and not events:
        raise CliUsageError("--exit-when-done needs at least one --send NAME")
    settings = server_settings(
        host,
        port,
        event_keys,
        api_tokens,
        dev=True,
        signing_key=signing_key,
        signing_key_fallback=signing_key_fallback,
    )
    app = load_app(app_ref) if app_ref else App(SDK_ONLY_APP)
    use_db(app, db)
    sdk_apps = serve_sdk_apps(app, settings)  # the SDK apps synced before run again
    assert sdk_apps is not None  # a dev server always serves them
    if retry_interval is not None:  # Inngest's linear backoff (pkg/backoff GetLinearBackoffFunc)
        app.retry_backoff = RetryBackoff((retry_interval,))
    elif app.retry_backoff is None:  # a failing step is retried within seconds while developing
        app.retry_backoff = RetryBackoff.FAST
    console = make_console()
    live = LiveLog(console, [fn.id for fn in app.functions])
    handler = LiveLogHandler(live)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    # httpx logs every request at INFO: the polls of --sdk-url apps and each request of an SDK
    # app's run (the live log shows the run's steps) would drown the log
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with contextlib.ExitStack() as held:
        held.callback(app.close)
        held.callback(root.removeHandler, handler)
        http = HttpServer(app.asgi(settings), settings.host, settings.port)
        if worker_id is None:
            worker_id = held.enter_context(dev_worker_id(db_label(app)))
        try:
            discover = discovery if discovery is not None else not app_ref
            ports = discovery_ports() if discover else ()
            syncing = _Syncing(sdk_apps, sdk_urls, poll_interval, not no_poll, ports)
            code = _loops.run(  # uvloop's loop unless STEPLINE_LOOP=asyncio (stepline._loops)
                _serve(
                    app,
                    console,
                    live,
                    events,
                    exit_when_done,
                    concurrency,
                    worker_id,
                    http,
                    syncing,
                    tick / 1000,
                )
            )
        except KeyboardInterrupt:  # a second SIGINT while stopping: stop now, not "Aborted!"
            console.print(
                "[yellow]SIGINT again: stopped at once[/]; the steps in flight did not finish "
                "(their runs resume from their last commit at the next start)",
                soft_wrap=True,
            )
            code = 130
    raise SystemExit(code)


def _sdk_url(url: str) -> str:
    """An ``--sdk-url`` as given, once it is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{url!r} is not an app's serve URL (http://host:port/path, e.g. "
            "http://localhost:3000/api/inngest)",
            param_hint="'--sdk-url'",
        )
    return url


@contextlib.contextmanager
def dev_worker_id(db: str) -> Iterator[str]:
    """The default worker id of ``stepline dev``: one per database and host, held (a lock file
    in the temporary folder) while this process runs; if another ``stepline dev`` on this host
    holds it, a fresh id (two workers must never share an id)."""
    path = sqlite_path(db)
    where = str(path.resolve()) if path is not None else db
    host = socket.gethostname()
    digest = hashlib.sha1(f"{host}\0{where}".encode()).hexdigest()[:10]
    stable = f"dev-{host}-{digest}"
    if sys.platform == "win32":
        yield stable
        return
    import fcntl

    lock = Path(tempfile.gettempdir()) / f"stepline-dev-{digest}.lock"
    with lock.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another stepline dev on this database and host
            yield default_worker_id()
            return
        try:
            yield stable
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _events(names: tuple[str, ...], datas: tuple[dict[str, Any], ...]) -> list[Event]:
    if datas and len(datas) != len(names):
        raise CliUsageError(
            f"got {len(names)} --send and {len(datas)} --data: give one --data per --send "
            "(in the same order), or none"
        )
    return [Event(name=name, data=datas[i] if datas else {}) for i, name in enumerate(names)]


def _banner(
    app: App, console: Console, concurrency: int, tick: float, worker_id: str, url: str
) -> None:
    functions = render.count(len(app.functions), "function")
    console.print(
        f"[bold]stepline dev[/] · app [bold]{escape(app.id)}[/] · {functions} · "
        f"db {escape(shown_url(db_label(app)))} · worker {escape(worker_id)} · "
        f"concurrency {concurrency} · "
        f"tick {round(tick * 1000)} ms · Ctrl-C to stop",
        soft_wrap=True,
    )
    console.print(f"  [bold]{url}[/] · events: POST {url}/e/{{key}}", soft_wrap=True)
    width = max((len(fn.id) for fn in app.functions), default=0)
    paused = paused_functions(app)
    for fn in app.functions:
        triggers = ", ".join(render.function_triggers(fn))
        line = Text(f"  {fn.id:<{width}}  ← {triggers or 'invoke only'}")
        options = render.function_options(fn)
        if options:
            line.append(f"  · {' · '.join(options)}", style="dim")
        if fn.id in paused:
            line.append("  paused: its runs are held (stepline functions resume)", style="yellow")
        console.print(line, soft_wrap=True)


@dataclass(frozen=True)
class _Syncing:
    """The ``--sdk-url`` apps to keep synced, and how; the ports to look for apps on."""

    apps: SdkApps
    urls: tuple[str, ...]
    interval: float
    poll: bool
    discover_on: tuple[int, ...]

    def start(self) -> asyncio.Task[None] | None:
        if not self.urls and not self.discover_on:
            return None
        return asyncio.create_task(
            keep_synced(
                self.apps,
                self.urls,
                interval=self.interval,
                poll=self.poll,
                discover_on=self.discover_on,
            )
        )


async def _serve(
    app: App,
    console: Console,
    live: LiveLog,
    events: list[Event],
    exit_when_done: bool,
    concurrency: int,
    worker_id: str,
    http: HttpServer,
    syncing: _Syncing,
    tick: float,
) -> int:
    stop = _stop_on_signals(console)
    _banner(app, console, concurrency, tick, worker_id, http.url)
    watcher = RunWatcher(app)
    await watcher.start()
    worker = app.make_worker(concurrency=concurrency, worker_id=worker_id, poll_interval=tick)
    serving = asyncio.create_task(worker.run())
    http_serving = asyncio.create_task(http.run())
    sync_task = syncing.start()
    tracker: RunTracker | None = None
    try:
        if events:
            event_ids = await app.send_async(events)
            for event, event_id in zip(events, event_ids, strict=True):
                line = f"[dim]sent {escape(event.name)} · event {event_id}[/]"
                console.print(line, soft_wrap=True)
            tracker = RunTracker(app, event_ids) if exit_when_done else None
        while not serving.done() and not http_serving.done():
            live.show(await watcher.poll(tracker.run_ids if tracker is not None else ()))
            if tracker is not None:
                await tracker.discover(watcher)
                if tracker.done(watcher):
                    break
            if stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), POLL_INTERVAL)
    finally:
        if sync_task is not None:
            sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync_task
        http.stop()
        worker.stop()
        await http_serving
        await serving  # in-flight passes finish; a crashed worker raises here
        live.show([])  # log records of the last moments
    if tracker is None:
        return 0
    return _summary(console, watcher, tracker, interrupted=stop.is_set())


def _stop_on_signals(console: Console) -> asyncio.Event:
    """An event set by the first SIGINT/SIGTERM; a second signal acts as usual (stops at once)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set() and sig == signal.SIGINT:
            # the second SIGINT: raised here, in a callback of the loop, KeyboardInterrupt ends
            # asyncio.run at once; the default handler would raise it wherever the main thread
            # is, and inside _serve it only ran _serve's `finally`, which waits for the steps
            # in flight (the stop hung until they ended)
            raise KeyboardInterrupt
        if sig != signal.SIGINT:
            loop.remove_signal_handler(sig)  # a second SIGTERM kills the process at once
        stop.set()
        console.print(f"[dim]{sig.name}: stopping once the steps in flight finish…[/]")

    on_stop_signals(loop, on_signal)
    return stop


def _summary(console: Console, watcher: RunWatcher, tracker: RunTracker, interrupted: bool) -> int:
    if not tracker.run_ids:
        console.print(
            "[yellow]The sent events started no runs[/]: no function's trigger matched them.",
            soft_wrap=True,
        )
        return 1
    table = Table(title="Runs", title_justify="left")
    table.add_column("FUNCTION", style="bold")
    table.add_column("RUN", no_wrap=True, min_width=26)
    table.add_column("STATUS")
    table.add_column("OUTPUT / ERROR", overflow="fold")
    ok = True
    for run_id in tracker.run_ids:
        run = watcher.runs.get(run_id)
        if run is None:
            ok = False
            continue
        ok = ok and run.status == "COMPLETED"
        outcome = render.compact_json(run.output) if run.status == "COMPLETED" else ""
        table.add_row(
            run.function_id,
            run.run_id,
            render.status_text(run.status),
            Text(outcome or render.error_text(run.error)),
        )
    console.print(table)
    if interrupted and not all(watcher.ended(r) for r in tracker.run_ids):
        console.print("[yellow]Interrupted before every run ended.[/]")
        return 1
    return 0 if ok else 1
