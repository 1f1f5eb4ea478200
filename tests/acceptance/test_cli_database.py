"""What the command line says about the database it works on: short run ids, which database,
files that are not Stepline's, ``memory://``, and what ``stepline send`` did. In-process
(click's runner) on real SQLite files."""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import stepline
import stepline.sdk.app
from stepline import App, Context, Event
from stepline.cli import cli
from stepline.store import Store, open_store
from stepline.store.records import WorkerRecord

FULL_ID = 26


def invoke(*args: str) -> Result:
    """Run one command in this process; stdout and stderr apart."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A database URL in the test's folder."""
    return f"sqlite:///{tmp_path / 'x.db'}"


def queue_runs(db: str, n: int) -> list[str]:
    """Queue ``n`` runs (no worker executes them); their ids."""
    app = App("ids", db=db)

    @app.function(id="noop", trigger=stepline.TriggerEvent("noop/go"))
    async def noop(ctx: Context) -> None:
        return None

    try:
        ids = app.send([Event(name="noop/go") for _ in range(n)])
        return [r.run_id for i in ids for r in _runs_of(app, i)]
    finally:
        app.close()


def _runs_of(app: App, event_id: str) -> list[stepline.Run]:
    return asyncio.run(app.runs(event_id=event_id))


def rename_runs(db: str, renames: dict[str, str]) -> None:
    """Give runs chosen ids (in the runs table, which is what ``find_run`` searches)."""
    with closing(sqlite3.connect(db.removeprefix("sqlite:///"))) as conn, conn:
        for old, new in renames.items():
            conn.execute("UPDATE runs SET run_id = ? WHERE run_id = ?", (new, old))
    conn.close()


# -- short run ids --------------------------------------------------------------------------------
def test_a_short_run_id_error_says_how_many_characters_and_how_far_back(db: str) -> None:
    # issue 6 "Short run ids": the error says how many characters are needed and how far back
    # they are searched
    first, second = queue_runs(db, 2)
    a, b = "01AAAAAAAAAAAAAAAAAAQXY123", "01AAAAAAAAAAAAAAAAAARXY123"
    rename_runs(db, {first: a, second: b})

    too_short = invoke("runs", "show", "123", "--db", db)
    assert too_short.exit_code == 1
    assert "at least its last 4 characters" in too_short.stderr
    assert f"full {FULL_ID}-character id" in too_short.stderr

    ambiguous = invoke("runs", "show", "xy123", "--db", db)
    assert ambiguous.exit_code == 1
    assert "matches 2 of the newest 1000 runs" in ambiguous.stderr
    assert "give at least 6 characters" in ambiguous.stderr  # QXY123 / RXY123

    unknown = invoke("runs", "show", "ZZZZZ", "--db", db)
    assert unknown.exit_code == 1
    assert "no run whose id ends in 'ZZZZZ' among the newest 1000 runs" in unknown.stderr
    assert f"full {FULL_ID}-character id" in unknown.stderr

    found = invoke("runs", "show", "qxy123", "--db", db, "--json")
    assert found.exit_code == 0, found.stderr
    assert a in found.stdout


# -- which database -------------------------------------------------------------------------------
def test_errors_and_verbose_name_the_database_success_says_nothing_more(db: str) -> None:
    # issue 6 "Which database": nothing extra on success; the database named in errors and in
    # --verbose
    queue_runs(db, 1)
    path = str(Path(db.removeprefix("sqlite:///")).resolve())
    quiet = invoke("runs", "list", "--db", db)
    assert quiet.exit_code == 0
    assert quiet.stderr == ""
    assert path not in quiet.stdout
    verbose = invoke("runs", "list", "--db", db, "--verbose")
    assert verbose.exit_code == 0
    assert verbose.stderr == f"stepline: database {path} (from --db)\n"
    assert verbose.stdout == quiet.stdout
    failed = invoke("runs", "show", "01NOSUCHRUN0000000000000000", "--db", db)
    assert failed.exit_code == 1
    assert failed.stderr == f"Error: no run '01NOSUCHRUN0000000000000000' (database {path})\n"
    cancel = invoke("runs", "cancel", "01NOSUCHRUN0000000000000000", "--db", db)
    assert f"(database {path})" in cancel.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["send", "noop/go", "--app", "nowhere:app"],
        ["runs", "list"],
        ["runs", "show", "ABCDEF"],
        ["functions", "pause", "noop"],
    ],
)
def test_memory_is_refused_for_commands_that_end_with_the_process(command: list[str]) -> None:
    # issue 6 "Which database": memory:// is refused for commands that end with the process
    if command[0] == "send":  # the app is loaded first: give one that exists
        command = ["send", "noop/go", "--app", "examples.shop:app"]
    result = invoke(*command, "--db", "memory://")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "memory:// keeps nothing once the command ends" in line


def _foreign(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("name,amount\nada,12\n" * 200), "file is not a database"),
        (_foreign, "is not a Stepline database: it holds other tables (users)"),
        (lambda p: p.mkdir(), "unable to open database file"),
    ],
    ids=["not-sqlite", "foreign", "a-folder"],
)
def test_a_file_stepline_cannot_use_is_a_one_line_error(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    # issue 6 "Which database": a file that is not a Stepline database, or that cannot be
    # written, gives a one-line Error (never a traceback); a foreign SQLite database is refused
    path = tmp_path / "data.db"
    make(path)
    for command in (["runs", "list"], ["functions", "list"]):
        result = invoke(*command, "--db", str(path))
        assert result.exit_code == 1, result.output
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("Error: "), line
        assert message in line
        assert str(path) in line


def test_a_database_under_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    # issue 6 "Which database": an unusable path is one line, not a traceback
    (tmp_path / "plain.txt").write_text("not a folder")
    result = invoke(
        "send", "x/y", "--app", "examples.shop:app", "--db", str(tmp_path / "plain.txt" / "x.db")
    )
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: cannot create the folder of the database")


def test_an_empty_sqlite_file_is_taken_and_a_foreign_one_refused_by_the_library(
    tmp_path: Path,
) -> None:
    # issue 6 "Which database": a foreign SQLite database is refused unless it is empty
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    app = App("lib", db=str(empty))
    try:
        assert app.send(Event(name="x/y"))
    finally:
        app.close()
    foreign = tmp_path / "foreign.db"
    _foreign(foreign)
    other = App("lib", db=str(foreign))
    with pytest.raises(stepline.ConfigError, match="not a Stepline database"):
        other.send(Event(name="x/y"))
    other.close()
    with closing(sqlite3.connect(foreign)) as conn, conn:  # untouched
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert names == {"users"}


def test_the_store_of_a_refused_database_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the store an app opened for a database its engine refused is closed, not left to the
    # garbage collector (its connections, its checkpointer; a PostgreSQL pool's threads): an
    # app retrying a database that is not ready opened one more each time
    opened: list[Store] = []
    closes: list[Store] = []

    def opening(url: str) -> Store:
        store = open_store(url)
        opened.append(store)
        close = store.close

        def closing() -> None:
            closes.append(store)
            close()

        monkeypatch.setattr(store, "close", closing)
        return store

    monkeypatch.setattr(stepline.sdk.app, "open_store", opening)
    foreign = tmp_path / "foreign.db"
    _foreign(foreign)
    app = App("lib", db=str(foreign))
    for _ in range(2):
        with pytest.raises(stepline.ConfigError, match="not a Stepline database"):
            app.send(Event(name="x/y"))
    assert len(opened) == 2
    assert closes == opened


def test_an_engine_whose_driver_failed_to_attach_is_not_kept(pg_url: str) -> None:
    # a driver's on_attach that raises comes after the app kept its engine: the engine is
    # dropped with its store, and the next use opens both anew. Kept, it was an engine on a
    # closed store: on PostgreSQL every use failed (its pools closed) (review R5, twelfth stop)
    app = App("attach", db=pg_url)
    attached: list[object] = []

    def on_attach(engine: object) -> None:
        attached.append(engine)
        if len(attached) == 1:
            raise RuntimeError("the driver could not attach (first try)")

    app.add_driver("flaky", _NeverDriven(), on_attach)
    try:
        with pytest.raises(RuntimeError, match="could not attach"):
            _ = app.engine
        engine = app.engine
        assert engine is attached[1] is not attached[0]
        assert engine.store.load_run("no-such-run") is None
    finally:
        app.close()


class _NeverDriven:
    async def run_pass(self, engine: object, lease: object, state: object, fn: object) -> None:
        raise AssertionError("no pass is driven here")


# -- what stepline send did -----------------------------------------------------------------------
PAY_APP = """
import stepline
import stepline.sdk.app
from stepline import App, CancelOn, Context

app = App("pay")


@app.function(
    id="order",
    trigger=stepline.TriggerEvent("order/placed"),
    cancel_on=[CancelOn("order/withdrawn", match="data.orderId")],
)
async def order(ctx: Context) -> object:
    paid = await ctx.step.wait_for_event(
        "payment", event="order/paid", match="data.orderId", timeout="1d"
    )
    return paid is not None


@app.function(id="ping", trigger=stepline.TriggerEvent("ping"))
async def ping(ctx: Context) -> str:
    return "pong"

"""


@pytest.fixture
def pay_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """``MODULE:APP`` of an app whose runs wait for a payment (a module of its own per test)."""
    module = f"pay_{request.node.name.split('[')[0][-20:]}_{id(request)}"
    (tmp_path / f"{module}.py").write_text(PAY_APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{module}:app"


def waiting_runs(ref: str, db: str, order_ids: list[str]) -> list[str]:
    """Start an order run per id and let a worker bring each to its wait; the run ids."""
    app: App = importlib.import_module(ref.split(":")[0]).app
    app.db = db

    async def go() -> list[str]:
        async with app.worker():
            sent = await app.send_async(
                [Event(name="order/placed", data={"orderId": o}) for o in order_ids]
            )
            run_ids = [r.run_id for i in sent for r in await app.runs(event_id=i)]
            deadline = time.monotonic() + 30
            while True:
                runs = [await app.get_run(r) for r in run_ids]
                if all(r is not None and r.status == "WAITING" for r in runs):
                    break
                assert time.monotonic() < deadline, "the runs did not reach their wait"
                await asyncio.sleep(0.01)  # real time: the poll interval; the deadline bounds it
            return run_ids

    try:
        return asyncio.run(go())
    finally:
        app.close()


def test_send_says_which_waiting_run_it_resumed_and_which_it_cancelled(
    pay_app: str, db: str
) -> None:
    # issue 6 "Which database": send says so correctly when the event resumed a waiting run or
    # cancelled one (it used to say "started no runs")
    paid, withdrawn = waiting_runs(pay_app, db, ["o-1", "o-2"])
    resumed = invoke(
        "send", "order/paid", "--data", '{"orderId": "o-1"}', "--app", pay_app, "--db", db
    )
    assert resumed.exit_code == 0, resumed.output
    assert f"resumed run {paid} of order: it was waiting for this event" in resumed.stdout
    assert "started no runs" not in resumed.output
    assert "started nothing" not in resumed.stderr  # (no worker runs: that is warned)
    cancelled = invoke(
        "send", "order/withdrawn", "--data", '{"orderId": "o-2"}', "--app", pay_app, "--db", db
    )
    assert cancelled.exit_code == 0, cancelled.output
    assert f"cancelled run {withdrawn} of order" in cancelled.stdout
    assert "started no runs" not in cancelled.output


def test_send_warns_when_no_function_matched(pay_app: str, db: str) -> None:
    # issue 6 "Which database": send warns when the event started nothing because no function
    # matched
    result = invoke("send", "order/typo", "--app", pay_app, "--db", db)
    assert result.exit_code == 0
    assert result.stdout.startswith("event ")
    assert result.stderr.startswith(
        "Warning: the event started nothing: no function of app 'pay' is triggered by 'order/typo'"
    )


# -- stepline dev's worker id ---------------------------------------------------------------------
def test_a_restarted_dev_resumes_its_predecessors_runs_at_once(
    pay_app: str, db: str, tmp_path: Path
) -> None:
    # issue 6 "Crash recovery is announced": stepline dev reuses a stable worker id per
    # database and host, so a restarted dev resumes the runs it left at once (not after the
    # lease TTL); --worker-id sets it
    from stepline.cli._commands.dev import dev_worker_id

    with dev_worker_id(db) as stable:
        assert stable.startswith("dev-")
        with dev_worker_id(db) as second:  # another dev on the same database and host
            assert second != stable
    with dev_worker_id(db) as again, dev_worker_id(f"sqlite:///{tmp_path / 'other.db'}") as other:
        assert again == stable
        assert other != stable
    app: App = importlib.import_module(pay_app.split(":")[0]).app
    app.db = db
    try:  # a run of "ping" leased by a dev that was killed mid-pass
        [event_id] = app.send(Event(name="ping"))
        [left] = [r.run_id for r in _runs_of(app, event_id)]
    finally:
        app.close()
    with closing(sqlite3.connect(db.removeprefix("sqlite:///"))) as conn, conn:
        conn.execute(
            "UPDATE queue SET lease_owner = ?, lease_token = 'dead', lease_expires_at = ?",
            (stable, time.time() + 3600),
        )
    conn.close()
    result = invoke("dev", pay_app, "--db", db, "--send", "ping", "--exit-when-done")
    assert result.exit_code == 0, result.output
    assert f"worker {stable}" in result.stdout
    assert f"resuming 1 run of worker {stable}" in result.stdout
    shown = invoke("runs", "show", left, "--db", db, "--json")
    assert '"status": "COMPLETED"' in shown.stdout
    custom = invoke(
        "dev", pay_app, "--db", db, "--worker-id", "mine", "--send", "ping", "--exit-when-done"
    )
    assert custom.exit_code == 0, custom.output
    assert "worker mine" in custom.stdout


def _register_worker(ref: str, db: str, worker_id: str, function_ids: tuple[str, ...]) -> None:
    """Record a live worker of the app on the database (as a running worker registers)."""
    app: App = importlib.import_module(ref.split(":")[0]).app
    app.db = db
    now = time.time()
    me = WorkerRecord(worker_id, app.id, function_ids, now, now, now + 3600)
    try:
        app.engine.writer.submit_sync(lambda tx: tx.register_worker(me))
    finally:
        app.close()


def test_send_with_db_alone_warns_when_the_app_it_hands_to_has_no_live_worker(
    pay_app: str, db: str
) -> None:
    # review G6 of the sixteenth stop: an app's registration (its triggers) outlives its
    # workers, so an event sent with --db alone was "handed to ping of app 'pay'" with no
    # word that nothing would run it
    app: App = importlib.import_module(pay_app.split(":")[0]).app
    app.db = db

    async def registered_once() -> None:
        async with app.worker():  # registers app pay, then stops (and unregisters)
            pass

    try:
        asyncio.run(registered_once())
    finally:
        app.close()
    gone = invoke("send", "ping", "--db", db)
    assert gone.exit_code == 0, gone.output
    assert "handed to ping of app 'pay'" in gone.stdout
    assert gone.stderr.startswith(
        "Warning: no worker is running on this database (none seen recently)"
    )
    _register_worker(pay_app, db, "w-other", ("order",))
    other = invoke("send", "ping", "--db", db)
    assert other.stderr.startswith("Warning: no running worker has ping of app 'pay'")
    _register_worker(pay_app, db, "w-ping", ("order", "ping"))
    served = invoke("send", "ping", "--db", db)
    assert served.exit_code == 0
    assert "handed to ping of app 'pay'" in served.stdout
    assert served.stderr == ""


def test_send_warns_when_no_worker_runs_on_the_database(pay_app: str, db: str) -> None:
    # issue 6 "Which database": send warns when the database has no workers seen recently
    alone = invoke("send", "ping", "--app", pay_app, "--db", db)
    assert alone.exit_code == 0, alone.output
    assert " ping  QUEUED" in alone.stdout
    assert alone.stderr.startswith(
        "Warning: no worker is running on this database (none seen recently)"
    )
    assert f"stepline worker {pay_app}" in alone.stderr
    _register_worker(pay_app, db, "w-other", ("order",))
    other = invoke("send", "ping", "--app", pay_app, "--db", db)
    assert other.stderr.startswith("Warning: no running worker has ping (of app 'pay')")
    _register_worker(pay_app, db, "w-ping", ("order", "ping"))
    served = invoke("send", "ping", "--app", pay_app, "--db", db)
    assert served.exit_code == 0
    assert served.stderr == ""
