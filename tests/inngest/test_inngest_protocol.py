"""The Inngest protocol layer on its own (pure functions): signatures (checked against the
Python SDK's own helpers), canonical JSON, sync refusals, execution bodies, reply parsing."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st
from inngest._internal import net, transforms

from stepline._text import MAX_ID_CHARS
from stepline.drivers.inngest import (
    AIGatewayOp,
    ErrorInfo,
    ExecutionRequest,
    FunctionConfig,
    FunctionErrored,
    OpsReported,
    ProtocolError,
    RunCompleted,
    RunCompleteOp,
    SignatureError,
    SigningKey,
    SigningKeys,
    SleepOp,
    StepErrorOp,
    StepFailedOp,
    StepPlannedOp,
    StepRunOp,
    SyncRefused,
    UnsupportedOp,
    canonical_json,
    canonicalize_body,
    check_bearer,
    execution_url,
    fit,
    hash_step_id,
    map_function,
    parse_registration,
    parse_reply,
    read_op,
    sign_request,
    signature,
    sync_request,
    trust_probe_request,
    verify_request,
    verify_response,
)
from stepline.engine.engine import Engine
from stepline.errors import ConfigError
from stepline.sdk.limits import Limits
from stepline.serde import dumps
from stepline.store.memory import MemoryStore
from stepline.testing import MockClock

KEY = "signkey-test-8f3c2a6b0d9e4f17a5b3c8d2e1f0a9b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1"
FALLBACK = "signkey-test-0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab"
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SDK = {"X-Inngest-SDK": "inngest-py:v0.5.19"}


# -- signing -------------------------------------------------------------------------------------
def test_a_request_signature_is_the_python_sdks_own() -> None:
    body = b'{"b": [1, 2.0, "\\u00e9"], "a": {"z": null, "y": 10000000000}}'
    expected = net.sign_request(body, KEY, unix_ms=1_760_000_000)
    assert sign_request(body, SigningKey.parse(KEY), now=1_760_000_000.7) == expected


def test_a_response_signature_is_the_python_sdks_own() -> None:
    body = b'{"not": "canonical",  "x": 1}'
    expected = net.sign_response(body, KEY, unix_ms=1_760_000_000)
    assert signature(body, SigningKey.parse(KEY), now=1_760_000_000) == expected


def test_the_key_hash_and_prefix_handling_match_the_sdk() -> None:
    key = SigningKey.parse(KEY)
    assert key.hashed == transforms.hash_signing_key(KEY)
    assert key.secret == transforms.remove_signing_key_prefix(KEY)
    assert key.prefix == "signkey-test-"
    assert KEY not in repr(key)


@pytest.mark.parametrize(
    "bad", ["", "signkey-test-", "signkey-test-abc", "xyz0", "signkey-prod-zz"]
)
def test_a_malformed_signing_key_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid signing key"):
        SigningKey.parse(bad)


def test_verification_accepts_current_or_fallback_and_says_which() -> None:
    keys = SigningKeys.parse(KEY, FALLBACK)
    body = b'{"x":1}'
    by_fallback = signature(body, SigningKey.parse(FALLBACK), now=1000)
    assert verify_response(body, by_fallback, keys, now=1010) == keys.fallback
    assert verify_response(body, signature(body, keys.current, 1000), keys, 1000) == keys.current
    with pytest.raises(SignatureError, match="does not match"):
        verify_response(body, by_fallback, SigningKeys.parse(KEY), now=1000)


def test_verification_refuses_stale_malformed_or_missing_signatures() -> None:
    keys = SigningKeys.parse(KEY)
    body = b"{}"
    with pytest.raises(SignatureError, match="too far"):
        verify_response(body, signature(body, keys.current, 1000), keys, now=1000 + 301)
    assert verify_response(body, signature(body, keys.current, 1000), keys, 5000, max_age=None)
    for header in (None, "", "t=abc&s=1", "s=abcd", "t=1000"):
        with pytest.raises(SignatureError):
            verify_response(body, header, keys, now=1000)


def test_request_verification_canonicalizes_as_the_sdks_do() -> None:
    keys = SigningKeys.parse(KEY)
    loose = b'{ "b": 1, "a": 2 }'
    header = sign_request(loose, keys.current, 1000)
    assert verify_request(b'{"a":2,"b":1}', header, keys, now=1000) == keys.current
    with pytest.raises(SignatureError):
        verify_response(loose, header, keys, now=1000)  # raw bytes differ from the JCS form


def test_bearer_tokens_of_both_sdks_are_accepted() -> None:
    keys = SigningKeys.parse(KEY, FALLBACK)
    fallback = SigningKey.parse(FALLBACK)
    python = {"Authorization": f"Bearer {keys.current.hashed}"}
    js = {"authorization": f"Bearer signkey-test-{fallback.hashed}"}
    raw = {"Authorization": f"Bearer {KEY}"}
    assert check_bearer(python, keys) == keys.current
    assert check_bearer(js, keys) == keys.fallback
    assert check_bearer(raw, keys) == keys.current
    for headers in ({}, {"Authorization": "Bearer undefined"}, {"Authorization": KEY}):
        with pytest.raises(SignatureError):
            check_bearer(headers, keys)


# -- canonical JSON ------------------------------------------------------------------------------
def test_canonical_json_matches_the_python_sdks_jcs() -> None:
    value = {"é": "\u2028", "b": [1.0, 1e21, 5e-7, -0.0], "a": {"y": None}, "big": 2**60 + 1}
    assert canonical_json(value) == transforms.canonicalize(json.dumps(value).encode())
    assert canonicalize_body(b"") == b""
    with pytest.raises(ProtocolError):
        canonical_json({"x": float("nan")})
    with pytest.raises(ProtocolError):
        canonicalize_body(b"{not json")


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_canonical_json_writes_what_rfc8785_writes(value: Any) -> None:
    # the walk is ours (rfc8785 escapes strings through a Python callback a character): the
    # same bytes for any JSON value, keys of any plane, control characters, -0.0, 1e21
    assert canonical_json(value) == rfc8785.dumps(value)


def test_canonical_json_refuses_what_jcs_cannot_write() -> None:
    for bad in ({"x": "\ud800"}, {1: "a"}, {"x": float("inf")}, {"x": {1, 2}}):
        with pytest.raises(ProtocolError):
            canonical_json(bad)
    # a tuple is an array; an integer beyond 2**53 - 1 is the double nearest to it
    assert canonical_json(("a", 2**52, 2**60)) == b'["a",4503599627370496,1152921504606847000]'


# -- execution requests --------------------------------------------------------------------------
def test_an_execution_body_has_what_the_sdks_validate() -> None:
    a, b = hash_step_id("a"), hash_step_id("a", 1)
    request = ExecutionRequest(
        run_id="01JRUN",
        event={"name": "x/y", "data": None, "ts": 1.0, "id": None},
        steps={a: {"data": 1}, b: None, "unfinished": {"data": 3}},
        stack=[a, b],
        attempt=2,
        max_attempts=3,
    )
    body = json.loads(request.encode())
    assert body["event"] == {"name": "x/y", "data": {}, "id": "", "ts": 1, "user": {}}
    assert body["events"] == [body["event"]]
    assert body["steps"] == {a: {"data": 1}, b: None}
    assert body["ctx"] == {
        "run_id": "01JRUN",
        "attempt": 2,
        "max_attempts": 3,
        "disable_immediate_execution": False,
        "use_api": False,
        "stack": {"stack": [a, b], "current": 2},
    }
    assert (body["version"], body["use_api"]) == (-1, False)
    assert request.encode() == canonical_json(body)
    assert b == transforms.hash_step_id("a:1")


def test_a_request_body_is_encoded_once_unless_it_must_shrink(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[object] = []

    def counting(value: object) -> bytes:
        encoded.append(value)
        return canonical_json(value)

    monkeypatch.setattr("stepline.drivers.inngest._execution.canonical_json", counting)
    event = {"name": "x/y", "data": {"pad": "x" * 2000}, "id": "e", "ts": 1}
    request = ExecutionRequest(run_id="01JRUN", event=event)
    assert fit(request) == (request, request.encode())
    encoded.clear()
    fit(request)
    assert len(encoded) == 1  # measured and sent: the same bytes
    encoded.clear()
    smaller, body = fit(request, max_bytes=1000)
    assert len(encoded) == 2  # the full body measured, then the use_api body sent
    assert smaller.use_api and body == smaller.encode()


def test_an_execution_url_targets_a_step() -> None:
    url = "http://h:3/api/inngest?fnId=app-fn&stepId=step"
    assert execution_url(url, "abc") == "http://h:3/api/inngest?fnId=app-fn&stepId=abc"
    assert execution_url("http://h/x?fnId=f") == "http://h/x?fnId=f&stepId=step"


def test_sync_and_trust_probe_requests() -> None:
    key = SigningKey.parse(KEY)
    body, headers = sync_request("http://h/api", server_kind="dev")
    assert body == b'{"url":"http://h/api"}'
    assert headers == {"Content-Type": "application/json", "X-Inngest-Server-Kind": "dev"}
    body, headers = sync_request("http://h/api", server_kind="cloud", key=key, now=7, in_band=True)
    assert headers["X-Inngest-Signature"] == signature(body, key, 7)
    assert headers["X-Inngest-Sync-Kind"] == "in_band"
    url, body, headers = trust_probe_request("http://h/api?probe=x&a=1", key=key, now=7)
    assert (url, body) == ("http://h/api?a=1&probe=trust", b"{}")
    assert headers["X-Inngest-Signature"] == signature(b"{}", key, 7)


# -- sync: refusals ------------------------------------------------------------------------------
def _config(**fields: Any) -> FunctionConfig:
    config: dict[str, Any] = {
        "id": "app-fn",
        "name": "fn",
        "triggers": [{"event": "app/go"}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "runtime": {"type": "http", "url": "http://h/api?fnId=app-fn&stepId=step"},
            }
        },
        **fields,
    }
    return FunctionConfig("app-fn", "fn", "http://h/api?fnId=app-fn&stepId=step", config)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        (
            {"concurrency": {"limit": 3, "key": "event.data.a", "scope": "account"}},
            "concurrency[0].scope",
            "'account'",
        ),
        ({"concurrency": 0}, "concurrency[0].limit", "positive integer"),
        ({"triggers": [{"event": "app/*"}]}, "triggers[0].event", "wildcard"),
        ({"triggers": [{"cron": "* * * * *", "jitter": "5s"}]}, "triggers[0].jitter", "jitter"),
        ({"batchEvents": {"maxSize": 10}}, "batchEvents.timeout", "required"),
        ({"throttle": {"limit": 1, "period": "8d"}}, "throttle", "at most 7 days"),
        ({"rateLimit": {"limit": 1, "period": "1h", "burst": 2}}, "rateLimit.burst", "support"),
        ({"debounce": {"period": "soon"}}, "debounce", "invalid duration"),
        ({"singleton": {"mode": "queue"}}, "singleton", "'skip' or 'cancel'"),
        ({"priority": {"run": "event.data.x +"}}, "priority", "invalid expression"),
        ({"optimizeParallelism": True}, "optimizeParallelism", "does not support"),
        ({"steps": {"a": {}, "b": {}}}, "steps", "one entry step"),
        (
            {"batchEvents": {"maxSize": 10, "timeout": "5s"}, "idempotency": "event.data.id"},
            "(function)",
            "batch_events cannot be combined",
        ),
    ],
)
def test_what_stepline_cannot_honour_is_refused_naming_the_field(
    fields: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(SyncRefused) as refused:
        map_function(_config(**fields))
    ((fn, where, why),) = refused.value.problems
    assert (fn, where) == ("app-fn", field)
    assert reason in why
    assert f"function 'app-fn': {field}: " in str(refused.value)


def test_a_connect_runtime_is_refused() -> None:
    config = _config()
    steps = {"step": {"id": "step", "name": "step", "runtime": {"type": "ws", "url": "wss://x"}}}
    refused_config = FunctionConfig("app-fn", "fn", "wss://x", {**config.config, "steps": steps})
    with pytest.raises(SyncRefused, match="only the 'http' runtime"):
        map_function(refused_config)


def test_every_problem_of_a_function_is_listed() -> None:
    with pytest.raises(SyncRefused) as refused:
        map_function(_config(concurrency={"limit": 1, "scope": "env"}, extra=1, timeouts={"x": 1}))
    assert [p[1] for p in refused.value.problems] == [
        "extra",
        "concurrency[0].scope",
        "timeouts.x",
    ]


def test_invoke_only_and_js_forms_are_accepted() -> None:
    synced = map_function(_config(triggers=[], concurrency=4, priority={}, timeouts={}))
    fn = synced.definition
    assert fn.triggers == () and fn.retries == 4
    assert [c.limit for c in fn.options.concurrency] == [4]
    assert fn.options.priority is None and fn.options.timeouts is None


def test_a_synced_function_is_driven_only_by_the_inngest_driver(tmp_path: Any) -> None:
    fn = map_function(_config()).definition
    assert fn.driver == "inngest"
    engine = Engine("app", MemoryStore(), MockClock(), Limits(), logging.getLogger("t"))
    with pytest.raises(ConfigError, match="needs the driver 'inngest'"):
        engine.register(fn)
    engine.close()


def test_a_register_body_needs_an_app_name_and_url() -> None:
    with pytest.raises(ProtocolError, match="appName"):
        parse_registration(b'{"url": "http://h", "functions": []}')
    with pytest.raises(ProtocolError, match="not JSON"):
        parse_registration(b"<html>")
    app = parse_registration({"appName": "a", "url": "http://h/api", "functions": []})
    assert (app.app_name, app.functions) == ("a", ())


@pytest.mark.parametrize("bad", ["\x00", "\\ud800"], ids=["nul", "surrogate"])
def test_a_register_bodys_names_must_be_storable_text(bad: str) -> None:
    # JSON may spell a lone surrogate ("\ud800"), which no store can encode; PostgreSQL's text
    # cannot hold a NUL: both reached the stores' text columns (lead, eighteenth stop)
    step = {"id": "step", "runtime": {"type": "http", "url": "http://h/api"}}
    function = {"id": "fn", "name": "f", "triggers": [{"event": "e"}], "steps": {"step": step}}
    for field in ("appName", "id", "name"):
        body = {"appName": "a", "url": "http://h/api", "functions": [dict(function)]}
        if field == "appName":
            body["appName"] = f"a{bad}b"
        else:
            body["functions"][0][field] = f"a{bad}b"  # type: ignore[index]
        raw = json.dumps(body).replace("\\\\ud800", "\\ud800").encode()
        with pytest.raises(ProtocolError, match=r"NUL character|not valid Unicode"):
            parse_registration(raw)


def test_a_register_bodys_app_name_is_bounded_as_an_app_id() -> None:
    # kept in index entries: PostgreSQL refused a long one there (lead, nineteenth stop)
    body = {"appName": "a" * MAX_ID_CHARS, "url": "http://h/api", "functions": []}
    assert parse_registration(body).app_name == "a" * MAX_ID_CHARS
    body["appName"] = "a" * (MAX_ID_CHARS + 1)
    with pytest.raises(ProtocolError, match=rf"appName: 'a+\u2026' is {MAX_ID_CHARS + 1} char"):
        parse_registration(body)


# -- replies and ops -----------------------------------------------------------------------------
def test_a_200_is_the_output_and_a_206_is_ops() -> None:
    done = parse_reply(200, {**SDK, "X-Inngest-Req-Version": "2"}, b'{"ok": 1}', NOW)
    assert done.outcome == RunCompleted({"ok": 1}) and done.request_version == 2
    ops = parse_reply(206, SDK, b'{"op": "StepPlanned", "id": "h1", "name": "p"}', NOW)
    assert ops.outcome == OpsReported((StepPlannedOp("h1", "p"),))
    assert parse_reply(206, SDK, b"[]", NOW).outcome == OpsReported(())


def test_a_reply_without_the_sdk_header_is_not_from_an_sdk() -> None:
    with pytest.raises(ProtocolError, match="not from an SDK"):
        parse_reply(200, {}, b"{}", NOW)


def test_a_streamed_reply_is_unwrapped() -> None:
    inner = json.dumps([{"op": "StepRun", "id": "h", "displayName": "a", "data": 5}])
    wrapper = b"    \n  " + json.dumps({"status": 206, "headers": SDK, "body": inner}).encode()
    reply = parse_reply(201, {}, wrapper, NOW)
    assert reply.status == 206
    assert reply.outcome == OpsReported((StepRunOp("h", "a", 5),))


def test_function_errors_with_retry_headers() -> None:
    body = b'{"name": "RetryAfterError", "message": "later", "stack": "s", "code": "retry"}'
    reply = parse_reply(500, {**SDK, "Retry-After": "2026-12-05T12:00:30.500Z"}, body, NOW)
    assert isinstance(reply.outcome, FunctionErrored)
    assert (reply.outcome.error.name, reply.outcome.error.code) == ("RetryAfterError", "retry")
    assert reply.retry_at == NOW + timedelta(seconds=30.5)
    assert parse_reply(500, {"Retry-After": "0"}, b"", NOW).retry_at == NOW + timedelta(seconds=1)
    far = parse_reply(500, {"retry-after": "9999999"}, b"", NOW).retry_at
    assert far == NOW + timedelta(hours=24)
    no_retry = parse_reply(400, {"x-inngest-no-retry": "true"}, b"<html>", NOW)
    assert no_retry.no_retry and isinstance(no_retry.outcome, FunctionErrored)
    assert no_retry.outcome.error.message == "invalid status code: 400"


def test_sleeps_in_every_sdks_form() -> None:
    python = read_op({"op": "Sleep", "id": "h", "name": "2026-12-05T13:00:00.000Z"}, NOW)
    js = read_op({"op": "Sleep", "id": "h", "name": "2s", "displayName": "nap"}, NOW)
    go = read_op({"op": "Sleep", "id": "h", "opts": {"duration": "1m"}}, NOW)
    assert python == SleepOp("h", "h", NOW + timedelta(hours=1))
    assert js == SleepOp("h", "nap", NOW + timedelta(seconds=2))
    assert isinstance(go, SleepOp) and go.until == NOW + timedelta(minutes=1)
    with pytest.raises(ProtocolError):
        read_op({"op": "Sleep", "id": "h", "name": "whenever"}, NOW)


@pytest.mark.parametrize(
    ("bad", "said"),
    [("\x00", "contains a NUL character"), ("\ud800", "is not valid Unicode")],
    ids=["nul", "surrogate"],
)
def test_a_nul_or_surrogate_in_an_ops_id_or_wait_name_is_refused_and_in_its_shown_name_replaced(
    bad: str, said: str
) -> None:
    # PostgreSQL's text cannot hold NUL: a pass commit that carried one was refused there (the
    # run failed on PostgreSQL alone, after its attempts); no store can encode a lone surrogate
    # (JSON may spell one, "\ud800"; lead, eighteenth stop): the same on every store now
    with pytest.raises(ProtocolError, match=said):
        read_op({"op": "StepRun", "id": f"a{bad}b", "data": 1}, NOW)
    wait = {"op": "WaitForEvent", "id": "h", "opts": {"event": f"a{bad}b", "timeout": "1h"}}
    with pytest.raises(ProtocolError, match=said):
        read_op(wait, NOW)
    ran = read_op({"op": "StepRun", "id": "h", "displayName": f"a{bad}b", "data": 1}, NOW)
    assert ran == StepRunOp("h", "a\ufffdb", 1)


def test_an_sdks_error_with_a_lone_surrogate_is_kept_with_it_escaped() -> None:
    # JSON's "\ud800" decodes to one: the stored error could not be serialized (the pass
    # failed, not the step), as for an in-process error (test_unencodable_errors.py)
    raw = {"name": "E\ud800", "message": "no file a\udcffb", "stack": "at f (a\udcffb)"}
    failed = read_op({"op": "StepError", "id": "h", "error": raw}, NOW)
    assert isinstance(failed, StepErrorOp)
    memo = failed.error.memo()
    assert memo == {
        "error": {"name": "E\\ud800", "message": "no file a\\udcffb", "stack": "at f (a\\udcffb)"}
    }
    assert json.loads(dumps(memo)) == memo  # stored as JSON
    assert ErrorInfo.read("a\ud800").message == "a\\ud800"


def test_other_ops() -> None:
    failed = read_op({"op": "StepFailed", "id": "h", "data": {"name": "E", "message": "m"}}, NOW)
    assert isinstance(failed, StepFailedOp) and failed.error.memo() == {
        "error": {"name": "E", "message": "m"}
    }
    ai = read_op(
        {
            "op": "AIGateway",
            "id": "h",
            "displayName": "ask",
            "opts": {
                "type": "step.ai.infer",
                "url": "http://m",
                "format": "openai-chat",
                "auth_key": "k",
                "headers": {"x": "1"},
                "body": {"q": 1},
            },
        },
        NOW,
    )
    assert ai == AIGatewayOp("h", "ask", "http://m", "openai-chat", {"q": 1}, "k", {"x": "1"})
    assert read_op({"op": "RunComplete", "data": 7}, NOW) == RunCompleteOp("", 7)
    signal = read_op({"op": "WaitForSignal", "id": "h", "name": "sig"}, NOW)
    assert isinstance(signal, UnsupportedOp) and signal.op == "WaitForSignal"
    for bad in ({"id": "h"}, {"op": "StepRun"}, [1], {"op": "InvokeFunction", "id": "h"}):
        with pytest.raises(ProtocolError):
            read_op(bad, NOW)
