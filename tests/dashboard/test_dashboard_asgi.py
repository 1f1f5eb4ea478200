"""The dashboard over ASGI: every page and action, with auth on (a server) and off (dev on
loopback), CSRF on every POST, no side effect through GET."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pytest
from starlette.applications import Starlette

import pgtest
from stepline import Event
from stepline.server import create_app
from stepline.server.dashboard import dashboard_routes
from stepline.server.settings import ServerSettings
from stepline.testing import MockClock, TestEngine

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from _polling import until  # noqa: E402


def _shop() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_shop_app", HERE / "shop_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _server(app: Any, settings: ServerSettings) -> Starlette:
    return Starlette(routes=dashboard_routes(app, settings))


DEV = ServerSettings(dev=True)
SERVER = ServerSettings(host="0.0.0.0", dashboard_password="hunter2", api_tokens=("tok-1",))


@pytest.fixture
async def shop(store_kind: str, tmp_path: Path) -> AsyncIterator[tuple[Any, TestEngine]]:
    module = _shop()
    clock = MockClock(autojump=False)
    async with TestEngine(
        module.app, store=pgtest.engine_store(store_kind), path=tmp_path / "db.sqlite", clock=clock
    ) as engine:
        yield module.app, engine


def _client(server: Starlette, base: str = "http://127.0.0.1:8288") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url=base)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def _settled(app: Any, run_id: str, statuses: set[str]) -> Any:
    async def check() -> Any:
        run = await app.get_run(run_id)
        return run if run is not None and run.status in statuses else None

    return await until(f"run {run_id} to be {statuses}", check)


async def test_dev_pages_open_without_login(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    [done] = await app.send_async(Event("order/created", {"amount": 12, "orderId": "o-1"}))
    [run] = await app.runs(event_id=done)
    await app.wait_for_run(run.run_id)
    async with _client(_server(app, DEV)) as client:
        for path in ("/functions", "/events", "/runs", "/send", f"/runs/{run.run_id}"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert "text/html" in response.headers["content-type"]
        page = (await client.get(f"/runs/{run.run_id}")).text
        assert "reserve-stock" in page and "charge-card" in page
        assert "&#34;charged&#34;: 12" in page or '"charged": 12' in page
        assert (await client.get("/")).status_code == 303
        functions = (await client.get("/functions")).text
        assert "process-order" in functions and "order/created if event.data.amount &gt; 0" in (
            functions
        )
        assert "concurrency" in functions
        events = (await client.get("/events")).text
        assert done in events and "process-order" in events
        static = await client.get("/static/dashboard.js")
        assert static.status_code == 200 and "EventSource" in static.text
        assert (
            (await client.get(f"/runs/{run.run_id}?fragment=1"))
            .text.lstrip()
            .startswith('<div class="head">')
        )
        assert (await client.get("/runs/nope")).status_code == 404


async def test_server_requires_login_and_logout_ends_it(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    async with _client(_server(app, SERVER), "https://dash.example") as client:
        for path in ("/functions", "/runs", "/events", "/send", "/live", "/runs/x/export"):
            response = await client.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"].startswith("/login?next=")
        login = await client.get("/login?next=/functions")
        assert login.status_code == 200
        csrf = _csrf(login.text)
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
        wrong = await client.post("/login", data={"csrf": csrf, "secret": "nope", "next": "/"})
        assert wrong.status_code == 401 and "Wrong password" in wrong.text
        no_csrf = await client.post("/login", data={"secret": "hunter2"})
        assert no_csrf.status_code == 403
        ok = await client.post(
            "/login", data={"csrf": csrf, "secret": "hunter2", "next": "/functions"}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/functions"
        assert (await client.get("/functions")).status_code == 200
        page = await client.get("/runs")
        csrf = _csrf(page.text)
        assert (await client.post("/logout")).status_code == 403  # CSRF on every form
        out = await client.post("/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert (await client.get("/runs")).status_code == 303


async def test_an_api_token_logs_in_and_an_offsite_next_is_refused(
    shop: tuple[Any, TestEngine],
) -> None:
    app, _ = shop
    async with _client(_server(app, SERVER), "https://dash.example") as client:
        csrf = _csrf((await client.get("/login")).text)
        ok = await client.post(
            "/login", data={"csrf": csrf, "secret": "tok-1", "next": "//evil.example/"}
        )
        assert ok.status_code == 303 and ok.headers["location"] == "/"


async def test_a_forged_session_cookie_is_not_a_login(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    async with _client(_server(app, SERVER), "https://dash.example") as client:
        client.cookies.set("stepline_session", "eyJzaWQiOiJ4IiwiYXV0aCI6dHJ1ZX0.abc")
        assert (await client.get("/runs")).status_code == 303


async def test_actions_need_post_and_csrf(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    [event_id] = await app.send_async(Event("reminder/scheduled", {"email": "x@example.com"}))
    [run] = await app.runs(event_id=event_id)
    run = await _settled(app, run.run_id, {"SLEEPING"})
    async with _client(_server(app, DEV)) as client:
        page = await client.get("/runs")
        csrf = _csrf(page.text)
        actions = [
            f"/runs/{run.run_id}/cancel",
            f"/runs/{run.run_id}/replay",
            "/functions/process-order/pause",
            "/functions/process-order/resume",
        ]
        for path in actions:
            assert (await client.get(path)).status_code == 405, path  # never through GET
            assert (await client.post(path)).status_code == 403, path
            forged = await client.post(path, data={"csrf": "x" * 64})
            assert forged.status_code == 403, path
        assert (await client.post("/send", data={"name": "a", "data": "{}"})).status_code == 403
        assert (await app.get_run(run.run_id)).status == "SLEEPING"
        assert app.paused_functions() == set()
        headers = {"X-CSRF-Token": csrf, "Accept": "application/json"}
        cancelled = await client.post(f"/runs/{run.run_id}/cancel", headers=headers)
        assert cancelled.status_code == 200 and cancelled.json()["cancelled"] == run.run_id
        assert (await app.get_run(run.run_id)).status == "CANCELLED"
        again = await client.post(f"/runs/{run.run_id}/cancel", headers=headers)
        assert again.status_code == 409


async def test_pause_and_resume_from_the_functions_page(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    async with _client(_server(app, DEV)) as client:
        csrf = _csrf((await client.get("/functions")).text)
        paused = await client.post("/functions/process-order/pause", data={"csrf": csrf})
        assert paused.status_code == 303 and paused.headers["location"] == "/functions"
        assert app.paused_functions() == {"process-order"}
        page = (await client.get("/functions")).text
        assert "/functions/process-order/resume" in page
        [event_id] = await app.send_async(Event("order/created", {"amount": 3}))
        runs = (await client.get("/runs?waiting=paused")).text
        assert "function process-order is paused" in runs
        resumed = await client.post("/functions/process-order/resume", data={"csrf": csrf})
        assert resumed.status_code == 303
        assert app.paused_functions() == set()
        missing = await client.post("/functions/nope/pause", data={"csrf": csrf})
        assert missing.status_code == 404
        [run] = await app.runs(event_id=event_id)
        await app.wait_for_run(run.run_id)


async def test_send_form_sends_and_prefills(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    async with _client(_server(app, DEV)) as client:
        form = await client.get("/send?function=process-order")
        assert 'value="order/created"' in form.text
        assert "&#34;amount&#34;" in form.text and "&#34;customer&#34;" in form.text
        csrf = _csrf(form.text)
        sent = await client.post(
            "/send",
            data={"csrf": csrf, "name": "order/created", "data": '{"amount": 5}'},
            headers={"Accept": "application/json"},
        )
        assert sent.status_code == 200
        body = sent.json()
        assert len(body["run_ids"]) == 1
        await app.wait_for_run(body["run_ids"][0])
        plain = await client.post(
            "/send", data={"csrf": csrf, "name": "order/created", "data": '{"amount": 6}'}
        )
        assert plain.status_code == 303 and plain.headers["location"].startswith("/runs?event=")
        for data, message in (("[1]", "JSON object"), ("{", "not JSON")):
            bad = await client.post("/send", data={"csrf": csrf, "name": "x", "data": data})
            assert bad.status_code == 400 and message in bad.json()["error"]
        unnamed = await client.post("/send", data={"csrf": csrf, "name": " ", "data": "{}"})
        assert unnamed.status_code == 400 and "name" in unnamed.json()["error"]


async def test_replay_from_a_step_and_export(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    [event_id] = await app.send_async(Event("inventory/sync", {}))
    [run] = await app.runs(event_id=event_id)
    failed = await app.wait_for_run(run.run_id)
    assert failed.status == "FAILED"
    async with _client(_server(app, DEV)) as client:
        page = (await client.get(f"/runs/{run.run_id}")).text
        assert "warehouse API refused 1 rows" in page and "Stack trace" in page
        assert 'name="from_step" value="push-rows"' in page
        csrf = _csrf(page)
        replay = await client.post(
            f"/runs/{run.run_id}/replay", data={"csrf": csrf, "from_step": "push-rows"}
        )
        assert replay.status_code == 303
        new_id = replay.headers["location"].rsplit("/", 1)[1]
        replayed = await app.wait_for_run(new_id)
        load = next(s for s in replayed.steps if s.id == "load-rows")
        assert load.output == [{"sku": "A-1", "qty": 3}]
        history = await app.history(new_id)
        assert not any(h.kind == "STEP_COMPLETED" and h.step_id == "load-rows" for h in history)
        unknown = await client.post(
            f"/runs/{run.run_id}/replay",
            data={"csrf": csrf, "from_step": "nope"},
            headers={"Accept": "application/json"},
        )
        assert unknown.status_code == 400 and "no step" in unknown.json()["error"]
        exported = await client.get(f"/runs/{run.run_id}/export")
        assert exported.status_code == 200
        assert "attachment" in exported.headers["content-disposition"]
        document = orjson.loads(exported.content)
        assert document["run"]["status"] == "FAILED"
        assert [s["id"] for s in document["steps"]] == ["load-rows", "push-rows"]
        assert document["events"][0]["name"] == "inventory/sync"
        assert any(h["kind"] == "RUN_FAILED" for h in document["history"])


async def test_runs_filters_waiting_on_and_search(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    [sleep_event] = await app.send_async(Event("reminder/scheduled", {}))
    [wait_event] = await app.send_async(Event("expense/submitted", {"expenseId": "e-7"}))
    [order_event] = await app.send_async(Event("order/created", {"amount": 250, "orderId": "o9"}))
    sleeping = (await app.runs(event_id=sleep_event))[0]
    waiting = (await app.runs(event_id=wait_event))[0]
    order = (await app.runs(event_id=order_event))[0]
    await _settled(app, sleeping.run_id, {"SLEEPING"})
    await _settled(app, waiting.run_id, {"WAITING"})
    await app.wait_for_run(order.run_id)
    async with _client(_server(app, DEV)) as client:
        listing = (await client.get("/runs")).text
        assert "sleeping until" in listing
        assert "waiting for event expense/approved" in listing
        only_sleep = (await client.get("/runs?waiting=sleep")).text
        assert sleeping.run_id in only_sleep and waiting.run_id not in only_sleep
        only_event = (await client.get("/runs?waiting=event")).text
        assert waiting.run_id in only_event and sleeping.run_id not in only_event
        assert 'async.data.expenseId == "e-7"' in only_event.replace("&#34;", '"')
        by_fn = (await client.get("/runs?function=send-reminder")).text
        assert sleeping.run_id in by_fn and order.run_id not in by_fn
        by_status = (await client.get("/runs?status=COMPLETED")).text
        assert order.run_id in by_status and sleeping.run_id not in by_status
        found = (await client.get("/runs", params={"q": "event.data.amount > 100"})).text
        assert order.run_id in found and sleeping.run_id not in found
        assert 'id="search-summary"' in found and "1 match " in found
        narrow = (await client.get("/runs", params={"q": "true", "scan": "1"})).text
        assert "among the 1 newest runs scanned" in narrow and "scan=10" in narrow
        by_output = (await client.get("/runs", params={"q": 'output.order == "o9"'})).text
        assert order.run_id in by_output
        empty = (await client.get("/runs", params={"q": "event.data.amount > 10000"})).text
        assert "No run matches this search." in empty and 'id="search-error"' not in empty
        error = await client.get("/runs", params={"q": "event.data.amount >"})
        assert error.status_code == 200
        assert 'id="search-error"' in error.text and "No run matches" not in error.text
        run_page = (await client.get(f"/runs/{waiting.run_id}")).text
        assert 'id="waiting-on"' in run_page and "times out at" in run_page


def _event_rows(html: str) -> dict[str, str]:
    """The events page's rows by event id."""
    rows = html.split('<tr data-event="')[1:]
    return {row.split('"', 1)[0]: row.split("</tr>", 1)[0] for row in rows}


async def test_the_event_stream_shows_the_runs_each_event_started_resumed_or_cancelled(
    shop: tuple[Any, TestEngine],
) -> None:
    # issue 9: read back from the store on every load, not only while the outcome is at hand
    app, _ = shop
    expenses = [Event("expense/submitted", {"expenseId": f"e-{i}"}) for i in (1, 2)]
    submitted = await app.send_async(expenses)
    runs = [(await app.runs(event_id=e))[0].run_id for e in submitted]
    for run_id in runs:
        await _settled(app, run_id, {"WAITING"})
    [approved] = await app.send_async(Event("expense/approved", {"expenseId": "e-1"}))
    [withdrawn] = await app.send_async(Event("expense/withdrawn", {"expenseId": "e-2"}))
    unrelated_event = Event("expense/approved", {"expenseId": "e-9"}, v="2026-12-01.1")
    [unrelated] = await app.send_async(unrelated_event)
    await _settled(app, runs[0], {"COMPLETED"})
    await _settled(app, runs[1], {"CANCELLED"})
    async with _client(_server(app, DEV)) as client:
        rows = _event_rows((await client.get("/events")).text)
    for event_id, effect, run_id in (
        (submitted[0], "started", runs[0]),
        (approved, "resumed", runs[0]),
        (withdrawn, "cancelled", runs[1]),
    ):
        row = rows[event_id]
        assert row.count("data-effect=") == 1, row
        assert f'data-effect="{effect}" data-run="{run_id}"' in row
        assert "await-approval" in row
    assert 'data-effect="resumed"' in rows[approved] and "↻ resumed" in rows[approved]
    assert "✕ cancelled" in rows[withdrawn]
    assert "data-effect" not in rows[unrelated] and "no run" in rows[unrelated]
    # each event's own page, linked from its row and from its runs' pages
    async with _client(_server(app, DEV)) as client:
        assert f'href="/events/{approved}"' in rows[approved]
        page = (await client.get(f"/events/{approved}")).text
        assert f'<tr data-effect="resumed" data-run="{runs[0]}">' in page
        assert "expense/approved" in page and "&#34;e-1&#34;" in page
        first = (await client.get(f"/events/{submitted[0]}")).text
        assert f'<tr data-effect="started" data-run="{runs[0]}">' in first
        alone = (await client.get(f"/events/{unrelated}")).text
        assert "It started, resumed and cancelled no run." in alone
        assert '<dt>Version</dt><dd class="mono">2026-12-01.1</dd>' in alone  # its v
        assert "<dt>Version</dt>" not in first
        missing = await client.get("/events/nope")
        assert missing.status_code == 404 and "There is no event nope" in missing.text
        run_page = (await client.get(f"/runs/{runs[1]}")).text
        assert f'href="/events/{submitted[1]}"' in run_page


async def test_waiting_on_names_a_function_no_worker_knows(
    shop: tuple[Any, TestEngine],
) -> None:
    app, engine = shop
    [event_id] = await app.send_async(Event("reminder/scheduled", {}))
    [run] = await app.runs(event_id=event_id)
    await _settled(app, run.run_id, {"SLEEPING"})
    assert engine.worker is not None
    engine.worker.stop()
    await engine._task  # type: ignore[misc]
    reasons = await app.waiting_on([await app.get_run(run.run_id)])
    assert reasons[run.run_id].kind == "worker"
    assert "no live worker knows function send-reminder" in reasons[run.run_id].text


async def test_create_app_mounts_the_dashboard_at_the_root(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    server = create_app(app, ServerSettings(dev=True, allow_unauthenticated=True))
    async with _client(server) as client:
        index = await client.get("/")
        assert index.status_code == 303 and index.headers["location"] == "/runs"
        assert (await client.get("/runs")).status_code == 200
        assert (await client.get("/static/dashboard.css")).status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_bulk_cancel_and_replay_from_a_filter(shop: tuple[Any, TestEngine]) -> None:
    app, _ = shop
    sleepers = await app.send_async([Event("reminder/scheduled", {"n": i}) for i in range(3)])
    for event_id in sleepers:
        [run] = await app.runs(event_id=event_id)
        await _settled(app, run.run_id, {"SLEEPING"})
    async with _client(_server(app, DEV)) as client:
        page = (await client.get("/runs?function=send-reminder")).text
        assert 'id="bulk"' in page and '<strong id="selected-count">3</strong>' in page
        assert 'id="bulk"' not in (await client.get("/runs")).text  # no filter: no bulk
        csrf = _csrf(page)
        headers = {"Accept": "application/json"}
        unfiltered = await client.post(
            "/runs/bulk", data={"csrf": csrf, "action": "cancel"}, headers=headers
        )
        assert unfiltered.status_code == 400  # never "everything" by accident
        fields = {"csrf": csrf, "action": "cancel", "function": "send-reminder"}
        cancelled = await client.post("/runs/bulk", data=fields, headers=headers)
        assert cancelled.status_code == 200
        assert cancelled.json()["done"] == 3 and cancelled.json()["selected"] == 3
        runs = await app.runs(function_id="send-reminder")
        assert {r.status for r in runs} == {"CANCELLED"}
        fields = {
            "csrf": csrf,
            "action": "replay",
            "status": "CANCELLED",
            "function": "send-reminder",
        }
        replayed = await client.post("/runs/bulk", data=fields)
        assert replayed.status_code == 303
        assert len(await app.runs(function_id="send-reminder")) == 6
        assert (await client.post("/runs/bulk", data={"action": "cancel"})).status_code == 403


async def test_steps_past_the_first_ones_load_when_opened(
    shop: tuple[Any, TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepline.server.dashboard import _pages

    monkeypatch.setattr(_pages, "EAGER_STEPS", 1)
    app, _ = shop
    [event_id] = await app.send_async(Event("order/created", {"amount": 7}))
    [run] = await app.runs(event_id=event_id)
    await app.wait_for_run(run.run_id)
    async with _client(_server(app, DEV)) as client:
        page = (await client.get(f"/runs/{run.run_id}")).text
        assert f'data-lazy="/runs/{run.run_id}/steps/charge-card"' in page
        assert page.count("step-output") == 1  # reserve-stock's only
        body = await client.get(f"/runs/{run.run_id}/steps/charge-card")
        assert body.status_code == 200 and "step-output" in body.text
        assert "&#34;charged&#34;: 7" in body.text
        assert (await client.get(f"/runs/{run.run_id}/steps/nope")).status_code == 404


async def test_the_runs_list_pages_with_a_cursor_in_the_url(
    shop: tuple[Any, TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    from stepline.server.dashboard import _pages

    monkeypatch.setattr(_pages, "PAGE_SIZE", 2)
    app, _ = shop
    await app.send_async([Event("reminder/scheduled", {"n": i}) for i in range(5)])
    newest_first = [r.run_id for r in await app.runs(function_id="send-reminder")]
    async with _client(_server(app, DEV)) as client:
        seen: list[str] = []
        path = "/runs?function=send-reminder"
        for _ in range(5):
            page = (await client.get(path)).text
            seen += [r for r in newest_first if f'data-run="{r}"' in page]
            found = re.search(r'href="(/runs\?[^"]*older=[^"]*)" id="older"', page)
            if found is None:
                break
            path = found.group(1).replace("&amp;", "&")
            assert "function=send-reminder" in path
        assert seen == newest_first
        assert 'id="newest"' in page and 'data-live="off"' in page


async def test_a_search_pages_with_older_matches(
    shop: tuple[Any, TestEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    # with a query the runs list links to older matches: below the page's last match when
    # the page is full, below the oldest run scanned when the scan bound stopped the search
    from stepline.server.dashboard import _pages

    monkeypatch.setattr(_pages, "PAGE_SIZE", 2)
    app, _ = shop
    await app.send_async(
        [Event("reminder/scheduled", {"n": i, "k": "ab"[i % 2]}) for i in range(7)]
    )
    await app.send_async(Event("order/created", {"amount": 5, "orderId": "o1"}))
    newest_first = [r.run_id for r in await app.runs(function_id="send-reminder")]
    expected = newest_first[::2]  # k == "a": i = 6, 4, 2, 0
    async with _client(_server(app, DEV)) as client:
        for query in ('event.data.k == "a"', 'event.data.k + "" == "a"'):
            for scan in ("", "3"):
                seen: list[str] = []
                path = "/runs?" + urlencode(
                    {k: v for k, v in {"q": query, "scan": scan}.items() if v}
                )
                for _ in range(10):
                    page = (await client.get(path)).text
                    assert 'id="search-summary"' in page and 'id="search-error"' not in page
                    seen += [r for r in newest_first if f'data-run="{r}"' in page]
                    found = re.search(
                        r'href="(/runs\?[^"]*older=[^"]*)" id="older">Older matches', page
                    )
                    if found is None:
                        break
                    path = found.group(1).replace("&amp;", "&")
                    assert "q=" in path and (not scan or "scan=3" in path)
                assert seen == expected, (query, scan)
                assert 'id="newest"' in page and "(all runs the filters select)" in page
