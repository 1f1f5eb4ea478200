"""Stepline's Inngest protocol layer against the real SDKs (npm ``inngest`` 4.x and 3.x, PyPI
``inngest`` 0.5.x): the SDKs accept Stepline's signed requests and refuse bad ones, Stepline
verifies their signed replies, reads their real sync bodies, and drives their multi-step
functions to completion with its request builder and op parser."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from _driving import drive, header, post, send

from conftest import FALLBACK_KEY, KEY, OTHER_KEY
from stepline.drivers.inngest import (
    ExecutionRequest,
    FunctionErrored,
    InvokeFunctionOp,
    OpsReported,
    RunCompleted,
    SigningKey,
    SigningKeys,
    StepErrorOp,
    StepFailedOp,
    StepRunOp,
    SyncRefused,
    WaitForEventOp,
    actions_body,
    batch_body,
    check_bearer,
    fit,
    hash_step_id,
    map_app,
    memo_data,
    parse_registration,
    parse_reply,
    request_headers,
    sync_request,
    trust_probe_request,
    verify_response,
)
from stepline.sdk.options import CancelOn, Concurrency

# the first test of a module may install the JS SDKs (npm ci, ~40 s) and start the apps
pytestmark = pytest.mark.timeout(600)
SDKS = ["js", "js3", "py", "pyflask"]
EVENT = {"name": "test/steps", "data": {"n": 2}, "id": "evt-1", "ts": 1_760_000_000_000}


def _child_event(op: InvokeFunctionOp) -> dict[str, Any]:
    return {"name": "inngest/function.invoked", "data": dict(op.data), "id": "evt-2", "ts": 1}


@pytest.mark.parametrize("kind", SDKS)
def test_the_sdk_accepts_a_signed_request_and_its_reply_verifies(start_app, kind: str) -> None:
    app = start_app(kind)
    keys = SigningKeys.parse(KEY)
    event = {"name": "test/child", "data": {"n": 21}, "id": "e", "ts": 1}
    exchange = post(
        app.function_url("child"),
        ExecutionRequest(run_id="01JRUN", event=event, events=[event]),
        step_id="step",
        key=keys.current,
        keys=keys,
    )
    assert exchange.status == 200
    assert exchange.reply.outcome == RunCompleted({"doubled": 42})
    assert exchange.signed_by == keys.current
    assert exchange.reply.sdk is not None and exchange.reply.sdk.startswith(f"inngest-{kind[:2]}")


@pytest.mark.parametrize("kind", SDKS)
def test_the_sdk_refuses_a_wrong_or_missing_signature(start_app, kind: str) -> None:
    app = start_app(kind)
    event = {"name": "test/child", "data": {"n": 1}, "id": "e", "ts": 1}
    request = ExecutionRequest(run_id="01JRUN", event=event)
    url = app.function_url("child")
    wrong = post(url, request, step_id="step", key=SigningKey.parse(OTHER_KEY), keys=None)
    missing = post(url, request, step_id="step", key=None, keys=None)
    assert (wrong.status, missing.status) == (401, 401)


@pytest.mark.parametrize("kind", SDKS)
def test_a_request_signed_with_the_sdks_fallback_key_is_accepted(start_app, kind: str) -> None:
    # Rotation: the server already signs with the new key, the app still has it as fallback.
    app = start_app(kind)
    server_keys = SigningKeys.parse(FALLBACK_KEY, KEY)
    event = {"name": "test/child", "data": {"n": 2}, "id": "e", "ts": 1}
    exchange = post(
        app.function_url("child"),
        ExecutionRequest(run_id="01JRUN", event=event, events=[event]),
        step_id="step",
        key=server_keys.current,
        keys=server_keys,
    )
    assert exchange.reply.outcome == RunCompleted({"doubled": 4})
    assert exchange.signed_by == server_keys.current  # the SDK replies with the key it verified


def _sync(app) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(app.serve_url, data=b"", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    registered = app.capture.find("/fn/register")[-1]
    return registered.body, registered.headers


@pytest.mark.parametrize("kind", SDKS)
def test_a_real_sync_body_maps_to_stepline_options(start_app, kind: str) -> None:
    app = start_app(kind, mode="dev")
    body, headers = _sync(app)
    assert check_bearer(headers, SigningKeys.parse(OTHER_KEY, KEY)).text == KEY
    registration = parse_registration(body)
    assert (registration.app_name, registration.url) == (app.app_id, app.serve_url)
    functions = {fn.config.slug: fn for fn in map_app(registration)}
    assert sorted(functions) == sorted(
        app.slug(f) for f in ("batch", "child", "failing", "flow", "flow-failure", "steps")
    )
    assert functions[app.slug("steps")].config.url == app.function_url("steps")
    assert functions[app.slug("failing")].definition.retries == 2
    assert functions[app.slug("steps")].definition.retries == 4

    flow = functions[app.slug("flow")]
    assert flow.config.name == "Flow control"
    fn, options = flow.definition, flow.definition.options
    assert fn.retries == 7
    assert [(t.name, t.if_) for t in fn.triggers] == [("test/flow", "event.data.ok == true")]
    assert [c.cron for c in fn.crons] == ["TZ=Europe/Paris 0 12 * * 5"]
    assert options.concurrency == (
        Concurrency(limit=2, key="event.data.account"),
        Concurrency(limit=5),
    )
    assert options.throttle is not None
    assert (options.throttle.limit, options.throttle.period_seconds) == (3, 60)
    assert (options.throttle.burst, options.throttle.key) == (2, "event.data.account")
    assert options.rate_limit is not None
    assert (options.rate_limit.limit, options.rate_limit.period_seconds) == (10, 3600)
    assert options.debounce is not None
    assert (options.debounce.period_seconds, options.debounce.timeout_seconds) == (5, 60)
    assert options.priority is not None and options.priority.run == "event.data.vip ? 60 : 0"
    assert options.singleton is not None
    assert (options.singleton.mode, options.singleton.key) == ("cancel", "event.data.user")
    assert options.idempotency is not None and options.idempotency.text == "event.data.order"
    assert options.cancel_on == (
        CancelOn("test/cancel", if_="event.data.user == async.data.user"),
        CancelOn("test/stop", if_="async.data.id == event.data.id", timeout="1d"),
    )
    assert options.timeouts is not None
    assert (options.timeouts.start_seconds, options.timeouts.finish_seconds) == (30, 3600)

    failure = functions[app.slug("flow-failure")].definition
    assert failure.on_failure_of == app.slug("flow")
    assert [t.name for t in failure.triggers] == ["inngest/function.failed"]

    batch = functions[app.slug("batch")].definition.options.batch_events
    assert batch is not None
    assert (batch.max_size, batch.timeout_seconds) == (50, 10)
    assert (batch.key, batch.if_) == ("event.data.user", "event.data.keep")


@pytest.mark.parametrize("kind", SDKS)
def test_a_real_sync_with_what_stepline_cannot_honour_is_refused(start_app, kind: str) -> None:
    app = start_app(kind, mode="dev")
    body, _ = _sync(app)
    raw = json.loads(body)
    flow = next(f for f in raw["functions"] if f["id"] == app.slug("flow"))
    flow["concurrency"][0]["scope"] = "env"
    flow["triggers"][1]["jitter"] = "30s"
    with pytest.raises(SyncRefused) as refused:
        map_app(parse_registration(raw))
    assert refused.value.problems[0][:2] == (app.slug("flow"), "triggers[1].jitter")
    assert refused.value.problems[1][:2] == (app.slug("flow"), "concurrency[0].scope")
    assert "'env'" in str(refused.value)


@pytest.mark.parametrize("kind", SDKS)
def test_a_multi_step_function_is_driven_to_completion(start_app, kind: str) -> None:
    app = start_app(kind)
    keys = SigningKeys.parse(KEY)
    child_url = app.function_url("child")

    def wait(op: WaitForEventOp) -> dict[str, Any]:
        assert (op.event, op.timeout, op.if_) == (
            "test/go",
            timedelta(hours=1),
            "async.data.n == event.data.n",
        )
        return {"name": "test/go", "data": {"n": 2, "ok": True}, "id": "evt-go", "ts": 5}

    def invoke(op: InvokeFunctionOp) -> dict[str, Any]:
        assert op.function_id == app.slug("child")
        child_event = _child_event(op)
        child = drive(child_url, child_event, key=keys.current, keys=keys, run_id="01JCHILD")
        return memo_data(child.output)

    started = datetime.now(UTC)
    run = drive(
        app.function_url("steps"),
        EVENT,
        key=keys.current,
        keys=keys,
        on_wait=wait,
        on_invoke=invoke,
    )
    assert run.error is None, run.error
    assert run.output == {
        "a": {"n": 3},
        "waited": {"n": 2, "ok": True},
        "p1": 30,
        "p2": 300,
        "called": {"doubled": 60},
    }
    assert run.ops() == [
        "StepRunOp:a",
        "SleepOp:nap",
        "WaitForEventOp:wait",
        "StepPlannedOp:p1",
        "StepPlannedOp:p2",
        "StepRunOp:p1",
        "StepRunOp:p2",
        "InvokeFunctionOp:call",
        "StepRunOp:announce",
    ]
    assert [e.step_id == "step" for e in run.exchanges].count(False) == 2  # p1, p2 targeted
    announce = next(
        op
        for e in run.exchanges
        if isinstance(e.reply.outcome, OpsReported)
        for op in e.reply.outcome.ops
        if isinstance(op, StepRunOp) and op.display_name == "announce"
    )
    assert announce.sent_event == kind.startswith("js")  # JS: step.sendEvent; Python: a step.run
    assert all(e.signed_by == keys.current for e in run.exchanges)
    sleep = next(
        op
        for e in run.exchanges
        if isinstance(e.reply.outcome, OpsReported)
        for op in e.reply.outcome.ops
        if type(op).__name__ == "SleepOp"
    )
    assert started + timedelta(seconds=1) <= sleep.until <= datetime.now(UTC) + timedelta(seconds=3)
    (sent,) = [r for r in app.capture.find("/e/") if r.json()[0]["name"] == "test/done"]
    assert [e["name"] for e in sent.json()] == ["test/done"]
    assert sent.json()[0]["data"] == {"p2": 300}


@pytest.mark.parametrize("kind", SDKS)
def test_a_failing_step_errors_then_fails_for_good(start_app, kind: str) -> None:
    app = start_app(kind)
    keys = SigningKeys.parse(KEY)
    event = {"name": "test/fail", "data": {"how": "step"}, "id": "e", "ts": 1}
    url = app.function_url("failing")
    first = post(
        url,
        ExecutionRequest(run_id="01JRUN", event=event, attempt=0, max_attempts=3),
        step_id="step",
        key=keys.current,
        keys=keys,
    )
    last = post(
        url,
        ExecutionRequest(run_id="01JRUN", event=event, attempt=2, max_attempts=3),
        step_id="step",
        key=keys.current,
        keys=keys,
    )
    assert isinstance(first.reply.outcome, OpsReported)
    (error,) = first.reply.outcome.ops
    assert isinstance(error, StepErrorOp)
    assert error.display_name == "boom" and error.error.message == "step went wrong"
    assert not first.reply.no_retry
    assert isinstance(last.reply.outcome, OpsReported)
    (failed,) = last.reply.outcome.ops
    assert isinstance(failed, StepFailedOp)
    assert failed.error.message == "step went wrong"

    # The failure memoized: the SDK raises it in the function, which fails for good.
    final = post(
        url,
        ExecutionRequest(
            run_id="01JRUN", event=event, steps={failed.id: failed.error.memo()}, stack=[failed.id]
        ),
        step_id="step",
        key=keys.current,
        keys=keys,
    )
    assert isinstance(final.reply.outcome, FunctionErrored)
    assert final.reply.outcome.error.message == "step went wrong"
    assert final.reply.no_retry


@pytest.mark.parametrize("kind", SDKS)
def test_retry_after_and_non_retriable_errors(start_app, kind: str) -> None:
    app = start_app(kind)
    keys = SigningKeys.parse(KEY)
    url = app.function_url("failing")

    def attempt(how: str):
        event = {"name": "test/fail", "data": {"how": how}, "id": "e", "ts": 1}
        request = ExecutionRequest(run_id="01JRUN", event=event, max_attempts=3)
        return post(url, request, step_id="step", key=keys.current, keys=keys).reply

    before = datetime.now(UTC)
    later = attempt("retry-after")
    never = attempt("non-retriable")
    plain = attempt("function")
    assert isinstance(later.outcome, FunctionErrored)
    assert later.outcome.error.message == "come back later"
    assert later.retry_at is not None and not later.no_retry
    assert (
        before + timedelta(seconds=28)
        <= later.retry_at
        <= datetime.now(UTC) + timedelta(seconds=31)
    )
    assert isinstance(never.outcome, FunctionErrored) and never.no_retry
    assert never.outcome.error.message == "never again"
    assert isinstance(plain.outcome, FunctionErrored)
    assert not plain.no_retry and plain.retry_at is None
    assert plain.outcome.error.message == "function went wrong"


@pytest.mark.parametrize("kind", SDKS)
def test_an_in_band_sync_reply_is_signed_and_maps(start_app, kind: str) -> None:
    app = start_app(kind)
    keys = SigningKeys.parse(KEY)
    body, headers = sync_request(
        app.serve_url, server_kind="cloud", key=keys.current, now=time.time(), in_band=True
    )
    status, reply_headers, reply = send("PUT", app.serve_url, body, headers)
    assert status == 200
    assert header(reply_headers, "X-Inngest-Sync-Kind") == "in_band"
    signed = header(reply_headers, "X-Inngest-Signature")
    assert verify_response(reply, signed, keys, time.time()) == keys.current
    registration = parse_registration(reply)
    assert (registration.app_name, registration.url) == (app.app_id, app.serve_url)
    assert len(map_app(registration)) == 6


@pytest.mark.parametrize("kind", SDKS)
def test_the_trust_probe_answers_only_to_our_key(start_app, kind: str) -> None:
    app = start_app(kind)
    keys = SigningKeys.parse(KEY)
    url, body, headers = trust_probe_request(app.serve_url, key=keys.current, now=time.time())
    status, reply_headers, reply = send("POST", url, body, headers)
    assert status == 200
    signed = header(reply_headers, "X-Inngest-Signature")
    assert verify_response(reply, signed, keys, time.time()) == keys.current
    url, body, headers = trust_probe_request(
        app.serve_url, key=SigningKey.parse(OTHER_KEY), now=time.time()
    )
    assert send("POST", url, body, headers)[0] == 401


@pytest.mark.parametrize("kind", SDKS)
def test_a_request_too_large_for_its_body_is_fetched_by_the_sdk(start_app, kind: str) -> None:
    # The memo of a finished run, over the request limit: the SDK gets the first event only
    # and fetches the events and the memo from the server (use_api), with its bearer token.
    app = start_app(kind)
    keys = SigningKeys.parse(KEY)
    event = {"name": "test/steps", "data": {"n": 2, "pad": "x" * 2000}, "id": "e", "ts": 1}
    run_id = f"01JUSEAPI{kind.upper()}"
    a = hash_step_id("a")
    full = ExecutionRequest(
        run_id=run_id, event=event, events=[event], steps={a: memo_data({"n": 3})}, stack=[a]
    )
    request, encoded = fit(full, max_bytes=1000)
    assert request.use_api and encoded == request.encode() and fit(full) == (full, full.encode())
    body = json.loads(encoded)
    assert (body["events"], body["steps"], body["ctx"]["use_api"]) == ([], {}, True)
    app.capture.runs[run_id] = {"batch": batch_body(request), "actions": actions_body(request)}
    exchange = post(app.function_url("steps"), request, step_id="step", key=keys.current, keys=keys)
    assert isinstance(exchange.reply.outcome, OpsReported)
    assert [type(op).__name__ for op in exchange.reply.outcome.ops] == ["SleepOp"]  # "a" memoized
    fetched = app.capture.find(f"/v0/runs/{run_id}/")
    assert {r.path.rsplit("/", 1)[1] for r in fetched} <= {"batch", "actions"}
    assert fetched
    assert all(check_bearer(r.headers, keys) == keys.current for r in fetched)


def test_a_streamed_reply_is_read_and_its_signature_covers_only_the_placeholder(
    start_app,
) -> None:
    # Python SDK, streaming="force": a 201 whose body is keep-alive spaces then the real reply
    # wrapped as {status, headers, body}. The 201 is signed before the body exists: over the
    # placeholder body ``null``, so the streamed reply itself is not covered by a signature.
    app = start_app("py")
    keys = SigningKeys.parse(KEY)
    url = app.serve_url.replace("/api/inngest", "/streamed/api/inngest")
    event = {"name": "test/child", "data": {"n": 5}, "id": "e", "ts": 1}
    request = ExecutionRequest(run_id="01JSTREAM", event=event, events=[event])
    body = request.encode()
    headers = request_headers(body, run_id="01JSTREAM", key=keys.current, now=time.time())
    status, reply_headers, raw = send(
        "POST", f"{url}?fnId={app.slug('child')}&stepId=step", body, headers
    )
    assert status == 201
    reply = parse_reply(status, reply_headers, raw, datetime.now(UTC))
    assert (reply.status, reply.outcome) == (200, RunCompleted({"doubled": 10}))
    signed = header(reply_headers, "X-Inngest-Signature")
    assert verify_response(b"null", signed, keys, time.time()) == keys.current
