"""Inngest's dev-server read API on ``stepline dev`` (no Python app), read with the queries
Inngest's own SDK test helpers send (inngest-py ``test_core/helper.py``, inngest-js
``src/test/helpers.ts``): a real Python or JS SDK app's runs, their triggers, their steps as
trace spans and each span's output, the runs an event started, the event stream; ``GET
/v1/events?name=``. Then the GraphQL layer in-process: errors as GraphQL errors,
a native run's trace.

issue 10, "The dev server's read API".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _devproc import dev_process, free_port, gql, http_json, wait_for

from conftest import SdkApp
from stepline import App, BatchEvents, Context, Event, TriggerCron, TriggerEvent
from stepline.server import ServerSettings, create_app
from stepline.testing import MockClock, TestEngine

RUN_SOURCES = """query($id: String!) {
    run(runID: $id) { isBatch batchCreatedAt cronSchedule sourceID eventName }
    runTrigger(runID: $id) { eventName isBatch cron timestamp IDs }
}"""

pytestmark = pytest.mark.timeout(300)

# copied from inngest-py's test helpers (pkg/test_core/test_core/helper.py)
GET_RUN = """
query GetRun($run_id: String!) {
    run(runID: $run_id) {
        output
        status
    }
    runTrigger(runID: $run_id) {
        payloads
    }
}
"""
GET_STEPS = """
query GetHistory($run_id: String!) {
    run(runID: $run_id) {
        trace {
            childrenSpans {
                name
                outputID
            }
        }
    }
}
"""
GET_OUTPUT = """
query GetHistory($output_id: String!) {
    runTraceSpanOutputByID(outputID: $output_id) {
        data
        error {
            message
            name
            stack
        }
    }
}
"""
RUNS_OF_EVENT = """
query GetRunFromEventID($event_id: ID!) {
    event(query: {eventId: $event_id}) {
        functionRuns {
            id
        }
    }
}
"""
RUN_OUTPUT_ID = "query($id: String!) { run(runID: $id) { trace { outputID } } }"
# copied from inngest-js's test helpers (packages/inngest/src/test/helpers.ts)
JS_EVENTS = """query Events($query: EventsQuery!) {
  events(query: $query) {
    id
    name
    payload
  }
}"""
JS_STREAM = """query GetEventStream {
        stream(query: {limit: 999, includeInternalEvents: false}) {
          id
          trigger
          runs {
            id
            function {
              name
            }
          }
        }
      }"""
JS_TIMELINE = """query GetRunTimeline($runId: String!) {
          run(runID: $runId) {
            trace(preview: true) {
              name
              stepType
              attempts
              outputID
              status
              childrenSpans {
                name
                stepType
                attempts
                outputID
                status
                childrenSpans {
                  name
                  stepType
                  attempts
                  outputID
                  status
                }
              }
            }
          }
        }"""
JS_OUTPUT = """query GetRunTimelineOutput($outputId: String!) {
          runTraceSpanOutputByID(outputID: $outputId) {
            data
            error {
              name
              message
              stack
              cause
            }
          }
        }"""


def send(url: str, name: str, data: dict[str, Any]) -> str:
    status, reply = http_json("POST", f"{url}/e/NO_EVENT_KEY_SET", {"name": name, "data": data})
    assert status == 200, reply
    [event_id] = reply["ids"]
    return str(event_id)


def run_of(url: str, event_id: str) -> str:
    def started() -> list[str]:
        event = gql(url, RUNS_OF_EVENT, {"event_id": event_id})["event"]
        return [r["id"] for r in (event or {}).get("functionRuns") or []]

    [run_id] = wait_for(started, f"the run of event {event_id}")
    return run_id


def until_status(url: str, run_id: str, *statuses: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        data = gql(url, GET_RUN, {"run_id": run_id})
        return data if data["run"]["status"] in statuses else None

    found: dict[str, Any] = wait_for(ended, f"run {run_id} to be {statuses}")
    return found


def spans(url: str, run_id: str) -> list[dict[str, Any]]:
    data = gql(url, GET_STEPS, {"run_id": run_id})
    found: list[dict[str, Any]] = data["run"]["trace"]["childrenSpans"]
    return found


def output(url: str, output_id: str) -> dict[str, Any]:
    found: dict[str, Any] = gql(url, GET_OUTPUT, {"output_id": output_id})["runTraceSpanOutputByID"]
    return found


# failure of the step "boom" (3 attempts): (error name, run output's code, stack's mark)
FAILURES = {"py": ("ValueError", "step_errored", "Traceback"), "js": ("Error", None, "at ")}


@pytest.mark.parametrize("kind", ["py", "js"])
def test_the_read_api_answers_inngests_queries_about_an_sdk_app(
    tmp_path: Path, start_app: Callable[..., SdkApp], kind: str
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sdk = start_app(kind, "dev", base_url=url)
    # a retry every second (Inngest's --retry-interval): the failing step's 3 attempts took
    # 3-5 s after the default 1 s, 2 s (plus up to 1 s each)
    sync = ("-u", sdk.serve_url, "--no-poll", "--no-discovery", "--retry-interval", "1")
    with dev_process(tmp_path, port, *sync) as _:
        wait_for(
            lambda: any(
                f["id"] == sdk.slug("steps") for f in http_json("GET", f"{url}/dev")[1]["functions"]
            ),
            "the app to sync",
        )
        event_id = send(url, "test/steps", {"n": 1})
        run_id = run_of(url, event_id)
        # the run waits for test/go once its span "wait" is there (sleeping 2 s before)
        wait_for(lambda: any(s["name"] == "wait" for s in spans(url, run_id)), "the wait")
        assert gql(url, GET_RUN, {"run_id": run_id})["run"] == {"output": None, "status": "RUNNING"}
        send(url, "test/go", {"n": 1, "why": "go"})
        done = until_status(url, run_id, "COMPLETED", "FAILED", "CANCELLED")

        assert done["run"]["status"] == "COMPLETED"
        result = {
            "a": {"n": 2},
            "waited": {"n": 1, "why": "go"},
            "p1": 20,
            "p2": 200,
            "called": {"doubled": 40},
        }
        assert json.loads(done["run"]["output"]) == result
        payloads = [json.loads(p) for p in done["runTrigger"]["payloads"]]
        assert [(p["name"], p["data"], p["id"]) for p in payloads] == [
            ("test/steps", {"n": 1}, event_id)
        ]

        steps = spans(url, run_id)
        names = [s["name"] for s in steps]
        assert names[:3] == ["a", "nap", "wait"]
        assert sorted(names[3:5]) == ["p1", "p2"]
        assert names[5:] == ["call", "announce"]
        by_name = {s["name"]: output(url, s["outputID"]) for s in steps}
        assert by_name["a"] == {"data": json.dumps({"n": 2}, separators=(",", ":")), "error": None}
        assert json.loads(by_name["p2"]["data"]) == 200
        assert json.loads(by_name["call"]["data"]) == {"doubled": 40}
        waited = json.loads(by_name["wait"]["data"])
        assert (waited["name"], waited["data"]) == ("test/go", {"n": 1, "why": "go"})
        root = gql(url, RUN_OUTPUT_ID, {"id": run_id})["run"]["trace"]["outputID"]
        assert json.loads(output(url, root)["data"]) == result

        # a step that fails for good: the span's error, the run's output is the error
        name, code, stack_mark = FAILURES[kind]
        failing = run_of(url, send(url, "test/fail", {"how": "step"}))
        failed = until_status(url, failing, "COMPLETED", "FAILED", "CANCELLED")
        assert failed["run"]["status"] == "FAILED"
        error = json.loads(failed["run"]["output"])  # the SDK's error body, its code included
        assert (error["name"], error["message"], error.get("code")) == (
            name,
            "step went wrong",
            code,
        )
        [boom] = spans(url, failing)
        assert boom["name"] == "boom"
        got = output(url, boom["outputID"])
        assert got["data"] is None
        assert (got["error"]["name"], got["error"]["message"]) == (name, "step went wrong")
        assert stack_mark in got["error"]["stack"]

        # the queries of inngest-js's test helpers (packages/inngest/src/test/helpers.ts)
        events = gql(url, JS_EVENTS, {"query": {}})["events"]
        assert {"test/steps", "test/go", "test/fail"} <= {e["name"] for e in events}
        [sent] = [e for e in events if e["id"] == event_id]
        assert json.loads(sent["payload"])["data"] == {"n": 1}
        stream = gql(url, JS_STREAM)["stream"]
        [item] = [i for i in stream if i["id"] == event_id]
        assert item["trigger"] == "test/steps"
        # a function's name: its display name as synced (the SDKs default it to its id)
        assert [(r["id"], r["function"]["name"]) for r in item["runs"]] == [(run_id, "steps")]
        assert all(not i["trigger"].startswith("inngest/") for i in stream)
        trace = gql(url, JS_TIMELINE, {"runId": failing})["run"]["trace"]
        assert (trace["status"], trace["stepType"]) == ("FAILED", "")
        [span] = trace["childrenSpans"]
        assert (span["name"], span["stepType"], span["status"], span["attempts"]) == (
            "boom",
            "RUN",
            "FAILED",
            3,
        )
        timeline = gql(url, JS_OUTPUT, {"outputId": span["outputID"]})["runTraceSpanOutputByID"]
        assert timeline["error"]["message"] == "step went wrong"
        assert timeline["error"]["cause"] is None

        status, listed = http_json("GET", f"{url}/v1/events?name=test/steps")
        assert status == 200
        assert [(e["internal_id"], e["name"], e["data"]) for e in listed["data"]] == [
            (event_id, "test/steps", {"n": 1})
        ]


async def test_graphql_errors_and_a_native_runs_trace(tmp_path: Path) -> None:
    app = App("native")

    @app.function(id="twice", trigger=TriggerEvent("n/twice"))
    async def twice(ctx: Context) -> int:
        one = await ctx.step.run("add", lambda: 1)
        two = await ctx.step.run("add", lambda: one + 1)
        return int(two) * 10

    async with TestEngine(app, store="sqlite", path=tmp_path / "x.db", clock=MockClock()) as t:
        run = await t.trigger(Event("n/twice", {}))
        event_id = run.event_ids[0]
        settings = ServerSettings(dev=True, allow_unauthenticated=True)
        transport = httpx.ASGITransport(app=create_app(app, settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://dev") as client:

            async def query(text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
                reply = await client.post("/v0/gql", json={"query": text, "variables": variables})
                assert reply.status_code == 200, reply.text
                found: dict[str, Any] = reply.json()
                return found

            runs = await query(RUNS_OF_EVENT, {"event_id": event_id})
            [run_id] = [r["id"] for r in runs["data"]["event"]["functionRuns"]]
            traced = await query(
                "query($id: String!) { runTrace(runID: $id) { name status isRoot"
                " childrenSpans { name status stepOp outputID } } }",
                {"id": run_id},
            )
            trace = traced["data"]["runTrace"]
            assert (trace["name"], trace["status"], trace["isRoot"]) == ("twice", "COMPLETED", True)
            assert [(s["name"], s["status"], s["stepOp"]) for s in trace["childrenSpans"]] == [
                ("add", "COMPLETED", "RUN"),
                ("add:1", "COMPLETED", "RUN"),
            ]
            second = await query(GET_OUTPUT, {"output_id": trace["childrenSpans"][1]["outputID"]})
            assert second["data"]["runTraceSpanOutputByID"] == {"data": "2", "error": None}

            missing = await query(GET_RUN, {"run_id": "06NOSUCHRUN"})
            assert missing["data"] is None  # runTrigger is non-null: the error nulls the data
            assert "no run '06NOSUCHRUN'" in missing["errors"][0]["message"]
            assert (await query(RUNS_OF_EVENT, {"event_id": "nope"}))["data"] == {"event": None}
            bad = await query(GET_OUTPUT, {"output_id": "!!"})
            assert "unknown output id" in bad["errors"][0]["message"]
            unknown = await query('{ run(runID: "x") { noSuchField } }')
            assert "noSuchField" in unknown["errors"][0]["message"]
            invalid = await client.post("/v0/gql", json={"variables": {}})
            assert invalid.status_code == 400
            functions = await query("{ functions { id slug url triggers { type value } } }")
            assert functions["data"]["functions"] == [
                {
                    "id": "twice",
                    "slug": "twice",
                    "url": "",
                    "triggers": [{"type": "EVENT", "value": "n/twice"}],
                }
            ]


async def test_a_cron_run_and_a_batch_run_read_as_inngests_dev_server_answers(
    tmp_path: Path,
) -> None:
    app = App("native")

    @app.function(id="hourly", trigger=TriggerCron("TZ=Europe/Paris 0 * * * *"))
    async def hourly(ctx: Context) -> str:
        return "tick"

    @app.function(
        id="bulk", trigger=TriggerEvent("b/item"), batch_events=BatchEvents(2, timeout="1h")
    )
    async def bulk(ctx: Context) -> int:
        return len(ctx.events)

    @app.function(id="single", trigger=TriggerEvent("s/one"))
    async def single(ctx: Context) -> int:
        return 1

    start = datetime(2026, 5, 1, 0, 30, tzinfo=UTC).timestamp()
    clock = MockClock(start=start, autojump=False)
    async with TestEngine(app, store="sqlite", path=tmp_path / "x.db", clock=clock) as t:
        first_at = datetime(2026, 5, 1, 0, 40, tzinfo=UTC)
        clock.set(first_at.timestamp())
        await t.send(Event("b/item", {"i": 1}))
        clock.set(datetime(2026, 5, 1, 0, 50, tzinfo=UTC).timestamp())
        await t.send(Event("b/item", {"i": 2}))
        one = await t.trigger(Event("s/one", {}))
        clock.set(datetime(2026, 5, 1, 1, 0, 1, tzinfo=UTC).timestamp())  # the 1:00 tick
        await t.tick()
        [cron_run] = await t.runs(function_id="hourly")
        [batch_run] = await t.runs(function_id="bulk")
        settings = ServerSettings(dev=True, allow_unauthenticated=True)
        transport = httpx.ASGITransport(app=create_app(app, settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://dev") as client:

            async def sources(run_id: str) -> dict[str, Any]:
                reply = await client.post(
                    "/v0/gql", json={"query": RUN_SOURCES, "variables": {"id": run_id}}
                )
                assert reply.status_code == 200, reply.text
                found: dict[str, Any] = reply.json()["data"]
                return found

            cron = await sources(cron_run.run_id)
            batch = await sources(batch_run.run_id)
            plain = await sources(one.run_id)

            async def event_runs(event_id: str) -> dict[str, Any]:
                reply = await client.get(f"/v1/events/{event_id}/runs")
                assert reply.status_code == 200, reply.text
                assert reply.headers["cache-control"] == "private, max-age=15"
                [found] = reply.json()["data"]  # batch_id and cron: only when set (omitempty)
                return {k: found.get(k) for k in ("environment_id", "batch_id", "cron")}

            rest = {
                "cron": await event_runs(cron_run.event_ids[0]),
                "batch": await event_runs(batch_run.event_ids[1]),
                "plain": await event_runs(one.event_ids[0]),
            }
    zero = "00000000-0000-4000-b000-000000000000"  # its dev server's environment
    assert rest == {  # GET /v1/events/{id}/runs: Inngest's cqrs.FunctionRun fields
        "cron": {"environment_id": zero, "batch_id": None, "cron": "TZ=Europe/Paris 0 * * * *"},
        "batch": {"environment_id": zero, "batch_id": batch_run.event_ids[0], "cron": None},
        "plain": {"environment_id": zero, "batch_id": None, "cron": None},
    }
    assert cron["run"] == {
        "isBatch": False,
        "batchCreatedAt": None,
        "cronSchedule": "TZ=Europe/Paris 0 * * * *",
        "sourceID": cron_run.event_ids[0],  # the event that started it (its timer event)
        "eventName": "inngest/scheduled.timer",
    }
    assert (cron["runTrigger"]["eventName"], cron["runTrigger"]["cron"]) == (
        None,
        "TZ=Europe/Paris 0 * * * *",
    )
    assert batch["run"]["isBatch"] and batch["runTrigger"]["isBatch"]
    assert batch["run"]["sourceID"] == batch_run.event_ids[0]
    assert batch["run"]["batchCreatedAt"] == "2026-05-01T00:40:00.000Z"  # its first event
    assert batch["runTrigger"]["timestamp"] == "2026-05-01T00:40:00.000Z"
    assert (batch["run"]["cronSchedule"], batch["runTrigger"]["cron"]) == (None, None)
    assert (batch["runTrigger"]["eventName"], len(batch["runTrigger"]["IDs"])) == ("b/item", 2)
    assert plain["run"] == {
        "isBatch": False,
        "batchCreatedAt": None,
        "cronSchedule": None,
        "sourceID": one.event_ids[0],
        "eventName": "s/one",
    }
    assert (plain["runTrigger"]["eventName"], plain["runTrigger"]["isBatch"]) == ("s/one", False)
