"""The guide's patterns on the official JS SDK (``examples/inngest-js/``) run by a real ``stepline
dev``, on inngest 3.x (the guide's ``createFunction(options, trigger, handler)``) and 4.x
(triggers in the options, async checkpointing): the example app syncs, every event of the
scenario below is sent, and each run's outcome, the bodies its steps ran (the app's stand-in
services record every call: each body exactly once, a retried one once per attempt) and the
flow control (cancelOn, waits fulfilled and timed out, idempotency, rate limit, debounce,
batching, singleton, concurrency per key, throttle per key, onFailure) are checked. Then, each
with a check that fails when the behaviour is missing: tickets queued behind a held one start in
priority order (concurrency 1); a second throttle key is not held back by the first;
RetryAfterError's 3 s are honoured (its retry is later than a dev server's first retry and within
1 s of it); a finish timeout and a start timeout cancel their runs; the crons fire (their
schedules made due in the database, as ``tests/integration/test_multiprocess.py`` arms them);
4.x reported steps to ``/v1/checkpoint/{run_id}/async`` (``/metrics`` counts the checkpoints
Stepline committed) and 3.x did not.

issue 10, "What it must show": the seed's own examples, in TypeScript (JS), on both majors.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _devproc import ROOT, dev_process, free_port, http_json, wait_for

import forkserver
from conftest import JS_DIR, _npm_ci
from stepline.store.records import FunctionSet
from stepline.store.sqlite import SQLiteStore

pytestmark = pytest.mark.timeout(300)
EXAMPLE = ROOT / "examples" / "inngest-js"
APP = "my-app"
FUNCTIONS = 36  # the example's 35 functions and the onFailure handler of charge-card
CRONS = ("onboard-user", "refresh-every-six-hours", "friday-noon-paris", "weekly-report")
DEV_APP = "stepline-dev"  # the app of `stepline dev` without MODULE:APP (its cron rows' app)
ENDED = ("COMPLETED", "FAILED", "CANCELLED")


def test_the_examples_lockfile_installs_the_sdks_the_tests_install() -> None:
    # the tests run the example on tests/inngest/js's node_modules: the same tree as the
    # example's own `npm ci` installs
    def packages(lockfile: Path) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(lockfile.read_text())["packages"]
        return {path: entry for path, entry in found.items() if path}

    assert packages(EXAMPLE / "package-lock.json") == packages(JS_DIR / "package-lock.json")
    example = json.loads((EXAMPLE / "package.json").read_text())["dependencies"]
    tests = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    assert example == tests


def _node_modules() -> None:
    """The SDKs, installed once in tests/inngest/js; the example finds them through a link
    (unless someone ran `npm ci` in the example: the same tree, see the test above)."""
    _npm_ci()
    link = EXAMPLE / "node_modules"
    if not link.exists():
        try:
            link.symlink_to(Path("..", "..", "tests", "inngest", "js", "node_modules"))
        except FileExistsError:  # another pytest worker made it
            pass


@contextmanager
def example_app(port: int, dev_url: str, major: str, directory: Path) -> Iterator[str]:
    """``node server.js`` as the README runs it; yields the app's base URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INNGEST_")}
    env.update(PORT=str(port), INNGEST_DEV="1", INNGEST_BASE_URL=dev_url, INNGEST_SDK_MAJOR=major)
    out = directory / f"example-{major}.out"
    with out.open("wb") as sink:  # executed by a fork server: it dies with this test process
        process = forkserver.popen(
            ["node", "server.js"],
            cwd=EXAMPLE,
            env=env,
            preload=forkserver.SDK_APPS,
            stdout=sink.fileno(),
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Scenario:
    """Reads of the running ``stepline dev`` at ``url`` and of the example app at ``app``."""

    def __init__(self, url: str, app: str) -> None:
        self.url, self.app = url, app

    def send(self, *events: tuple[str, dict[str, Any]]) -> list[str]:
        body = [{"name": name, "data": data} for name, data in events]
        status, reply = http_json("POST", f"{self.url}/e/NO_EVENT_KEY_SET", body)
        assert status == 200, reply
        ids: list[str] = reply["ids"]
        return ids

    def runs(self, fn: str) -> list[dict[str, Any]]:
        query = f"function={APP}-{fn}&steps=true&limit=100"
        status, reply = http_json("GET", f"{self.url}/api/v1/runs?{query}")
        assert status == 200, reply
        return sorted(reply["data"], key=lambda run: str(run["created_at"]))

    def runs_of_event(self, event_id: str) -> list[dict[str, Any]]:
        status, reply = http_json("GET", f"{self.url}/api/v1/runs?event={event_id}&steps=true")
        assert status == 200, reply
        found: list[dict[str, Any]] = reply["data"]
        return found

    def run_of(self, event_id: str, fn: str, *statuses: str) -> dict[str, Any]:
        """The run of ``fn`` that event started, once its status is one of ``statuses`` (by
        default once it ended)."""

        def check() -> dict[str, Any] | None:
            runs = [r for r in self.runs_of_event(event_id) if r["function_id"] == f"{APP}-{fn}"]
            assert len(runs) <= 1, runs
            return runs[0] if runs and runs[0]["status"] in (statuses or ENDED) else None

        found: dict[str, Any] = wait_for(check, f"the {fn} run of event {event_id}")
        return found

    def ended_runs(self, fn: str, count: int) -> list[dict[str, Any]]:
        """The runs of ``fn``, once ``count`` of them exist and all ended."""

        def check() -> list[dict[str, Any]] | None:
            runs = self.runs(fn)
            assert len(runs) <= count, runs
            return runs if len(runs) == count and all(r["status"] in ENDED for r in runs) else None

        found: list[dict[str, Any]] = wait_for(check, f"{count} ended runs of {fn}")
        return found

    def skipped(self, fn: str) -> list[dict[str, Any]]:
        status, reply = http_json("GET", f"{self.url}/api/v1/skipped?function={APP}-{fn}")
        assert status == 200, reply
        found: list[dict[str, Any]] = reply["data"]
        return found

    def calls(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.app}/calls", timeout=30) as response:
            found: list[dict[str, Any]] = json.loads(response.read())
            return found

    def calls_to(self, service: str) -> list[list[Any]]:
        return [call["args"] for call in self.calls() if call["service"] == service]


def step_ids(run: dict[str, Any]) -> list[str]:
    return [step["id"] for step in run["steps"]]


@pytest.mark.parametrize("major", ["3", "4"])
def test_the_guides_patterns_on_the_js_sdk_run_on_stepline_dev(major: str, tmp_path: Path) -> None:
    _node_modules()
    dev_port, app_port = free_port(), free_port()
    url = f"http://127.0.0.1:{dev_port}"
    serve_url = f"http://127.0.0.1:{app_port}/api/inngest"
    args = ("-u", serve_url, "--poll-interval", "0.2", "--no-discovery")
    with (
        dev_process(tmp_path, dev_port, *args),
        example_app(app_port, url, major, tmp_path) as app_url,
    ):
        s = Scenario(url, app_url)
        wait_for(
            lambda: len(http_json("GET", f"{url}/dev")[1]["functions"]) == FUNCTIONS,
            "the example's functions to sync",
        )
        _run_the_scenario(s)
        _priority_under_concurrency_1(s)
        _timeouts_fire(s)
        _crons_fire(s, tmp_path / "stepline.db")
        checkpoints = _metric(url, 'stepline_inngest_checkpoints_total{status="200"}')
        # steps run within a request are reported to /v1/checkpoint/{run_id}/async: on 4.x by
        # every function (62 checkpoints in a run of this test), on 3.x by the one function
        # that asks for it (real-time-function's `checkpointing` option: one checkpoint)
        if major == "4":
            assert checkpoints >= 20, checkpoints
        else:
            assert 1 <= checkpoints <= 3, checkpoints


def _run_the_scenario(s: Scenario) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    ids = s.send(
        ("data/received", {"n": 1}),
        ("order/created", {"orderId": "o-1", "amount": 5, "paymentDue": soon}),
        ("order/created", {"orderId": "o-2", "amount": 7, "paymentDue": "2099-01-01T00:00:00Z"}),
        ("purchase/submitted", {"userId": "u-1", "paymentId": "p-1", "amount": 3, "email": "e"}),
        ("user/signup", {"userId": "s-1"}),
        ("user/login", {"userId": "s-2", "firstLogin": True}),
        ("user/login", {"userId": "s-3", "firstLogin": False}),
        ("user/action", {"action": "purchase", "amount": 150, "userId": "a-1"}),
        ("user/action", {"action": "purchase", "amount": 50, "userId": "a-2"}),
        ("manual/report.requested", {"userId": "r-1"}),
        ("cart/checkout.completed", {"cartId": "c-1", "email": "c@example.com"}),
        ("cart/checkout.completed", {"cartId": "c-1", "email": "c@example.com"}),
        ("user/action.performed", {"userId": "u", "organizationId": "org-1"}),
        ("user/action.performed", {"userId": "u", "organizationId": "org-1"}),
        ("user/action.performed", {"userId": "u", "organizationId": "org-2"}),
        ("long/process.requested", {"jobId": "j-1"}),
        ("critical/task", {"taskId": "t-1"}),
        ("user/process.requested", {"userId": "missing"}),
        ("user/process.requested", {"userId": "g-1"}),
        ("api/call.requested", {"requestId": "q-1"}),
        ("data/process.requested", {"userId": "d-1"}),
        ("realtime/process", {"value": 1}),
        ("process/conditional", {"userId": "premium-1"}),
        ("process/conditional", {"userId": "basic-1"}),
        ("process/robust", {"job": "b-1"}),
        ("invoice/created", {"invoiceId": "i-1"}),
        ("message/sent", {"threadId": "th-1"}),
        ("users/imported", {"userIds": ["n-1", "n-2"]}),
        ("profile/enrich.requested", {"userId": "e-1"}),
        ("account/sync.requested", {"accountId": "A"}),
        ("account/sync.requested", {"accountId": "A"}),
        ("account/sync.requested", {"accountId": "A"}),
        ("account/sync.requested", {"accountId": "B"}),
        ("sms/requested", {"phone": "+1", "text": "one"}),
        ("sms/requested", {"phone": "+1", "text": "two"}),
        ("contacts/sync.requested", {"userId": "k-1"}),
        ("contacts/sync.requested", {"userId": "k-1"}),
        ("contacts/sync.requested", {"userId": "k-1"}),
        ("contacts/sync.requested", {"userId": "k-2"}),
        ("document/edited", {"documentId": "doc", "revision": 1}),
        ("document/edited", {"documentId": "doc", "revision": 2}),
        ("document/edited", {"documentId": "doc", "revision": 3}),
        ("rows/received", {"row": 1}),
        ("rows/received", {"row": 2}),
        ("rows/received", {"row": 3}),
        ("ticket/opened", {"ticketId": "tk-1", "plan": "enterprise"}),
        ("inbox/sync.requested", {"userId": "in-1"}),
        ("inbox/sync.requested", {"userId": "in-1"}),
        ("card/charge.requested", {"invoiceId": "v-1"}),
        ("sms/requested", {"phone": "+2", "text": "three"}),
    )
    e = dict(enumerate(ids))
    # the producer-side idempotency: the app sends the same event id twice
    for _ in range(2):
        status, reply = http_json("POST", f"{s.app}/checkout/k-9")
        assert status == 200, reply

    # -- the runs waiting on something, then the events they wait for. follow-up first: it
    # waits 3 s (from 1 s after the send), the others until 2099 or for 7 days (checked last,
    # its window was missed at load 16 and the run had ended when the poll came)
    s.run_of(e[26], "follow-up", "WAITING")
    s.send(("message/replied", {"threadId": "th-other"}))
    s.run_of(e[2], "process-order", "SLEEPING")
    s.send(("order/cancelled", {"orderId": "o-other"}), ("order/cancelled", {"orderId": "o-2"}))
    s.run_of(e[25], "approve-invoice", "WAITING")
    s.send(
        ("invoice/approved", {"invoiceId": "i-other", "by": "nobody"}),
        ("invoice/approved", {"invoiceId": "i-1", "by": "boss"}),
    )

    # -- the guide's functions
    run = s.run_of(e[0], "process-with-timestamp")
    assert run["status"] == "COMPLETED" and run["output"]["n"] == 1, run
    paid = s.run_of(e[1], "process-order")
    assert (paid["status"], paid["output"]) == ("COMPLETED", {"charged": 5}), paid
    assert step_ids(paid) == ["wait-for-payment", "charge-payment"], paid
    cancelled = s.run_of(e[2], "process-order")
    assert cancelled["status"] == "CANCELLED", cancelled
    [cleanup] = s.ended_runs("cleanup-cancelled-process", 1)
    assert cleanup["status"] == "COMPLETED" and step_ids(cleanup) == ["cleanup-resources"]

    purchase = s.run_of(e[3], "complete-purchase")
    assert purchase["status"] == "COMPLETED", purchase
    assert purchase["output"]["data"] == {"userId": "u-1", "name": "Ada"}
    assert len(purchase["steps"]) == 5, purchase  # the repeated "fetch-data" is a step of its own
    assert [i.split(":")[0] for i in step_ids(purchase)] == [
        "fetch-data",
        "fetch-data",
        "validate-payment",
        "charge-customer",
        "send-confirmation",
    ], purchase

    # triggers: one event, a filtered one, several (signup, first login), and via sendEvent
    assert s.run_of(e[4], "welcome-new-user")["status"] == "COMPLETED"
    assert s.run_of(e[4], "onboard-user")["status"] == "COMPLETED"
    assert s.run_of(e[5], "onboard-user")["status"] == "COMPLETED"
    assert s.run_of(e[7], "reward-big-purchase")["status"] == "COMPLETED"

    report = s.run_of(e[9], "weekly-report")
    assert (report["status"], report["output"]) == ("COMPLETED", {"processed": 3}), report
    assert step_ids(report) == ["generate-report", "process-report"], report
    # the invoked run (its output, the parent's step result) ended before its parent
    generated = [r for r in s.runs("generate-report") if r["output"]["userId"] == "r-1"]
    assert [r["status"] for r in generated] == ["COMPLETED"], generated

    assert s.run_of(e[15], "process-with-timeout")["status"] == "COMPLETED"
    reliable = s.run_of(e[16], "reliable-function")
    assert (reliable["status"], reliable["output"]) == ("COMPLETED", {"done": "t-1"}), reliable
    [step] = reliable["steps"]
    assert step["attempts"] == 3, reliable
    missing = s.run_of(e[17], "process-user")
    assert missing["status"] == "FAILED", missing
    # not retried (3.x names the error it rethrows "Error", 4.x "NonRetriableError")
    assert missing["error"]["message"] == "User not found, stopping execution", missing
    assert [step["attempts"] for step in missing["steps"]] == [1], missing
    # the same runs as Inngest's REST API lists an event's runs (what its "fetch run status and
    # output" recipe polls): the SDK's error is a failed run's output
    status, rest = http_json("GET", f"{s.url}/v1/events/{e[17]}/runs")
    assert status == 200, rest
    [failed] = rest["data"]
    assert (failed["run_id"], failed["function_id"], failed["status"]) == (
        missing["run_id"],
        f"{APP}-process-user",
        "Failed",
    )
    assert failed["output"]["message"] == "User not found, stopping execution", failed
    status, rest = http_json("GET", f"{s.url}/v1/events/{e[4]}/runs")  # user/signup: two runs
    assert sorted((r["function_id"], r["status"]) for r in rest["data"]) == [
        (f"{APP}-onboard-user", "Completed"),
        (f"{APP}-welcome-new-user", "Completed"),
    ], rest
    found = s.run_of(e[18], "process-user")
    assert found["status"] == "COMPLETED" and found["output"]["id"] == "g-1", found
    api = s.run_of(e[19], "api-call")
    assert (api["status"], api["output"]) == ("COMPLETED", {"requestId": "q-1"}), api
    # RetryAfterError("Rate limited", "3s"): retried not before 3 s (a dev server's first
    # retry comes after 1-2 s). The upper bound is loose on purpose: real time on a loaded
    # machine may add seconds; only a retry made far later than asked exceeds it
    first, second = [c["at"] for c in s.calls() if c["service"] == "externalAPI.call"]
    assert 2.9 <= (second - first) / 1000 <= 30.0, second - first
    logged = s.run_of(e[20], "process-data")
    assert (logged["status"], logged["output"]) == ("COMPLETED", {"resultCount": 1}), logged
    realtime = s.run_of(e[21], "real-time-function")
    assert realtime["output"] == {"result2": {"value": 4}}, realtime
    assert step_ids(realtime) == ["step-1", "step-2"], realtime
    premium = s.run_of(e[22], "conditional-process")
    assert step_ids(premium) == ["fetch-user", "premium-processing", "standard-processing"]
    basic = s.run_of(e[23], "conditional-process")
    assert step_ids(basic) == ["fetch-user", "standard-processing"], basic
    robust = s.run_of(e[24], "robust-process")
    assert robust["status"] == "COMPLETED", robust
    assert robust["output"] == {"result": {"from": "secondary", "job": "b-1"}}, robust

    # -- waits, sendEvent, parallel steps
    invoice = s.run_of(e[25], "approve-invoice")
    assert invoice["output"] == {"approved": True, "by": "boss"}, invoice
    follow_up = s.run_of(e[26], "follow-up")
    assert follow_up["output"] == {"replied": False}, follow_up
    fan_out = s.run_of(e[27], "welcome-batch")
    assert fan_out["output"] == {"sent": 2}, fan_out
    enriched = s.run_of(e[28], "enrich-profile")
    assert enriched["status"] == "COMPLETED", enriched
    assert sorted(enriched["output"]) == ["github", "gitlab", "mastodon"], enriched

    # -- flow control
    for i in (29, 30, 31, 32):
        assert s.run_of(e[i], "sync-account")["status"] == "COMPLETED"
    sms = [s.run_of(e[i], "send-sms") for i in (33, 34)]
    assert [r["status"] for r in sms] == ["COMPLETED", "COMPLETED"], sms
    # throttled to one start per second for the phone number: the second run is due a second
    # after the first was let through (at its creation), and starts no earlier (the bound the
    # throttle guarantees; the first run's own start may come late on a busy machine, so the
    # two starts may be closer: a gate saw 0.80 s)
    starts = sorted(datetime.fromisoformat(r["started_at"]) for r in sms)
    let_through = min(datetime.fromisoformat(r["created_at"]) for r in sms)
    assert starts[1] - let_through >= timedelta(seconds=0.9), (let_through, starts)
    # another number has a throttle of its own: its message did not wait for +1's second one
    other = s.run_of(e[49], "send-sms")
    assert other["status"] == "COMPLETED", other
    assert datetime.fromisoformat(other["started_at"]) < starts[1], (other, starts)
    contacts = s.ended_runs("sync-contacts", 2)  # one per user a minute: two of the four events
    assert sorted(r["event_ids"][0] for r in contacts) == sorted([e[35], e[38]]), contacts
    assert {skip["reason"] for skip in s.skipped("sync-contacts")} == {"rate_limit"}
    [indexed] = s.ended_runs("index-document", 1)  # debounced: the last edit only
    assert indexed["output"] == {"revision": 3} and indexed["event_ids"] == [e[41]], indexed
    [imported] = s.ended_runs("bulk-import", 1)  # one batch of the three rows
    assert imported["output"] == 3 and sorted(imported["event_ids"]) == sorted(
        [e[42], e[43], e[44]]
    ), imported
    assert s.run_of(e[45], "support-ticket")["status"] == "COMPLETED"
    [inbox] = s.ended_runs("sync-inbox", 1)  # the second request came while one was active
    assert inbox["status"] == "COMPLETED", inbox
    assert [skip["reason"] for skip in s.skipped("sync-inbox")] == ["singleton"]
    charge = s.run_of(e[48], "charge-card")
    assert charge["status"] == "FAILED", charge
    assert charge["error"]["message"] == "card declined", charge
    [failure] = s.ended_runs("charge-card-failure", 1)
    assert failure["status"] == "COMPLETED", failure

    # idempotency: one run per cart (the duplicates sent with the same id are one event), one
    # per user and organization
    emails = s.ended_runs("send-checkout-email", 2)
    assert all(r["status"] == "COMPLETED" for r in emails), emails
    # exactly one skip, c-1's second event: k-9's second event carried the first one's id, so it
    # was de-duplicated as an event (stored, starting nothing) and no idempotency skip was needed
    assert [skip["reason"] for skip in s.skipped("send-checkout-email")] == ["idempotency"]
    assert len(s.ended_runs("process-user-action", 2)) == 2
    assert len(s.ended_runs("welcome-new-user", 3)) == 3  # s-1, then n-1 and n-2 (sendEvent)

    # -- every step body ran exactly once (retried ones once per attempt)
    calls = s.calls()
    untimed = [
        c
        for c in calls
        # cron runs that may fire while the test runs
        if c["service"] != "sendTimedReport"
        and not (c["service"] == "startOnboarding" and c["args"][0] == "inngest/scheduled.timer")
        and not (c["service"] == "buildReport" and c["args"] == ["everyone"])
    ]
    assert Counter(c["service"] for c in untimed) == {
        "processData": 1,
        "processPayment": 1,
        "cleanupOrderResources": 1,
        "fetchUserData": 1,
        "fetchOrderData": 2,  # complete-purchase, process-data
        "validatePayment": 1,
        "chargeCustomer": 1,
        "sendEmail": 3,  # the confirmation and one per cart (c-1, k-9)
        "welcomeUser": 3,
        "startOnboarding": 4,
        "rewardPurchase": 1,
        "buildReport": 1,
        "processReport": 1,
        "recordUserAction": 2,
        "runLongProcess": 1,
        "callCriticalService": 3,  # fails twice, then works
        "db.users.findOne": 2,
        "updateUser": 1,
        "externalAPI.call": 2,  # a 429, then 200 after 3 seconds
        "process1": 1,
        "process2": 1,
        "getUserData": 2,
        "processPremiumFeatures": 1,
        "processStandardFeatures": 2,
        "callPrimaryService": 2,  # the first attempt and one retry, then the fallback
        "callSecondaryService": 1,
        "fileInvoice": 1,
        "sendReminder": 1,
        "loadNewUsers": 1,
        "fetchProfile": 3,
        "syncAccount": 4,
        "sendSms": 3,
        "syncContacts": 2,
        "indexDocument": 1,
        "importRows": 1,
        "answerTicket": 1,
        "syncInbox": 1,
        "chargeCard": 1,
        "notifyBilling": 1,
    }
    by_service: dict[str, list[list[Any]]] = {}
    for c in untimed:
        by_service.setdefault(c["service"], []).append(c["args"])
    assert by_service["cleanupOrderResources"] == [[cancelled["run_id"]]]
    assert by_service["processPayment"][0][0]["orderId"] == "o-1"
    assert [args[1] for args in by_service["callCriticalService"]] == [
        {"attempt": 0},
        {"attempt": 1},
        {"attempt": 2},
    ]
    assert sorted(by_service["sendEmail"]) == [
        ["c@example.com", "c-1"],
        ["e"],
        ["user@example.com", "k-9"],
    ]
    assert by_service["indexDocument"] == [["doc", 3]]
    assert sorted(by_service["importRows"][0][0]) == [1, 2, 3]
    assert by_service["fileInvoice"] == [["i-1", "boss"]]
    assert by_service["sendReminder"] == [["th-1"]]
    assert by_service["notifyBilling"] == [["v-1", "card declined"]]
    # one account's syncs never overlapped (concurrency 1 per account key)
    assert [c["running"] for c in calls if c["service"] == "syncAccount"] == [0, 0, 0, 0]


def _priority_under_concurrency_1(s: Scenario) -> None:
    """A ticket holds support-ticket's only slot; three tickets queue behind it, the lowest
    priority first: once the slot frees they start highest priority first."""
    [held] = s.send(("ticket/opened", {"ticketId": "tk-hold", "plan": "hold"}))
    wait_for(lambda: ["tk-hold", "hold"] in s.calls_to("answerTicket"), "the held ticket")
    queued = s.send(
        ("ticket/opened", {"ticketId": "tk-basic", "plan": "basic"}),
        ("ticket/opened", {"ticketId": "tk-pro", "plan": "pro"}),
        ("ticket/opened", {"ticketId": "tk-enterprise", "plan": "enterprise"}),
    )
    for event_id in queued:  # each waits for the slot
        s.run_of(event_id, "support-ticket", "QUEUED")
    status, reply = http_json("POST", f"{s.app}/gates/tickets")
    assert status == 200, reply
    for event_id in [held, *queued]:
        assert s.run_of(event_id, "support-ticket")["status"] == "COMPLETED"
    answered = [args[0] for args in s.calls_to("answerTicket") if args[0] != "tk-1"]
    assert answered == ["tk-hold", "tk-enterprise", "tk-pro", "tk-basic"], answered


def _timeouts_fire(s: Scenario) -> None:
    """timeouts.finish: a run still sleeping after 1 s is cancelled; timeouts.start: a run
    queued behind another (concurrency 1) for over 1 s is cancelled once the slot frees,
    without running (as Inngest's executor checks it when the run is dequeued)."""
    [slow] = s.send(("job/slow", {"jobId": "j-slow"}))
    [held] = s.send(("job/queued", {"jobId": "j-hold"}))
    wait_for(lambda: ["j-hold"] in s.calls_to("doJob"), "the held job to start")
    [late] = s.send(("job/queued", {"jobId": "j-late"}))
    queued = s.run_of(late, "start-in-time", "QUEUED")
    # the slot is freed only once the late run's start timeout has passed (the condition the
    # engine checks, read from the run itself)
    created = datetime.fromisoformat(queued["created_at"]).timestamp()
    wait_for(lambda: time.time() > created + 1.5, "the late job's start timeout to pass")
    status, reply = http_json("POST", f"{s.app}/gates/jobs")
    assert status == 200, reply
    assert s.run_of(held, "start-in-time")["status"] == "COMPLETED"
    late_run = s.run_of(late, "start-in-time")
    assert late_run["status"] == "CANCELLED" and late_run["steps"] == [], late_run
    assert s.calls_to("doJob") == [["j-hold"]]  # the late job never ran
    slow_run = s.run_of(slow, "finish-in-time")
    assert slow_run["status"] == "CANCELLED", slow_run
    assert "timeouts.finish" in slow_run["error"]["message"], slow_run
    # its sleep is recorded when the first pass ended within the 1 s; a first pass slower than
    # that (a gate at load 13 saw one) is cancelled before it: both are the timeout's rule
    assert step_ids(slow_run) in (["too-long"], []), slow_run
    assert ["j-slow"] not in s.calls_to("runLongProcess")


def _crons_fire(s: Scenario, db: Path) -> None:
    """The cron triggers' schedules made due in ``stepline dev``'s database (their next tick
    moved a week back, as test_multiprocess arms them): each fires its function."""
    functions = FunctionSet(DEV_APP, tuple(f"{APP}-{fn}" for fn in CRONS))
    store = SQLiteStore(db)
    try:

        def rows() -> list[Any]:
            with store.transaction() as tx:
                return tx.due_crons(float("inf"), functions)

        armed = wait_for(lambda: len(found := rows()) == len(CRONS) and found, "the cron rows")
        week_ago = time.time() - 8 * 86400  # every schedule of the example ticked since then
        with store.transaction() as tx:
            for row in armed:
                assert tx.advance_cron(row, week_ago), row
    finally:
        store.close()

    def fired() -> bool:
        calls = s.calls()
        return all(
            any(c["service"] == service and c["args"][: len(args)] == args for c in calls)
            for service, args in [
                ("startOnboarding", ["inngest/scheduled.timer"]),
                ("sendTimedReport", ["6h"]),
                ("sendTimedReport", ["friday"]),
                ("buildReport", ["everyone"]),  # weekly-report's cron run invoked generate-report
            ]
        )

    wait_for(fired, "every cron to fire")
    for fn in CRONS:
        runs = wait_for(
            lambda fn=fn: (r := s.runs(fn)) and all(x["status"] in ENDED for x in r) and r,
            f"{fn}'s runs to end",
        )
        assert {r["status"] for r in runs} == {"COMPLETED"}, runs


def _metric(url: str, name: str) -> int:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    found = re.search(rf"^{re.escape(name)} (\d+)$", text, re.MULTILINE)
    assert found is not None, text
    return int(found.group(1))
