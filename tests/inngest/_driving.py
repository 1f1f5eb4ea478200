"""A minimal Inngest executor for the protocol tests: it builds signed execution requests with
Stepline's protocol layer, sends them to a real SDK app and turns the replies' ops into memos,
as the HTTP driver will (without persistence: sleeps end at once, waits get a given event)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stepline.drivers.inngest import (
    DISCOVERY,
    ExecutionRequest,
    FunctionErrored,
    InvokeFunctionOp,
    OpsReported,
    RunCompleted,
    SdkReply,
    SigningKey,
    SigningKeys,
    SleepOp,
    StepFailedOp,
    StepPlannedOp,
    StepRunOp,
    WaitForEventOp,
    execution_url,
    memo_data,
    parse_reply,
    request_headers,
    verify_response,
)


@dataclass
class Exchange:
    """One request/reply of a run, as seen by the executor."""

    step_id: str
    status: int
    reply: SdkReply
    signed_by: SigningKey | None


def send(
    method: str, url: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request: status, headers, body (an error status is returned, not raised)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def post(
    url: str,
    request: ExecutionRequest,
    *,
    step_id: str,
    key: SigningKey | None,
    keys: SigningKeys | None,
) -> Exchange:
    """Send one execution request; verify the reply's signature with ``keys`` when given."""
    body = request.encode()
    headers = request_headers(
        body, run_id=request.run_id, step_id=step_id, key=key, now=time.time()
    )
    status, reply_headers, raw = send("POST", execution_url(url, step_id), body, headers)
    signed_by = None
    if keys is not None and status != 401:
        signature = header(reply_headers, "X-Inngest-Signature")
        signed_by = verify_response(raw, signature, keys, time.time())
    reply = parse_reply(status, reply_headers, raw, datetime.now(UTC))
    return Exchange(step_id, status, reply, signed_by)


@dataclass
class Run:
    """A run driven to its end: every exchange, the ops in order, the output or the error."""

    exchanges: list[Exchange] = field(default_factory=list)
    steps: dict[str, Any] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    output: Any = None
    error: FunctionErrored | None = None

    def ops(self) -> list[str]:
        names = []
        for exchange in self.exchanges:
            if isinstance(exchange.reply.outcome, OpsReported):
                names += [
                    f"{type(op).__name__}:{getattr(op, 'display_name', '')}"
                    for op in exchange.reply.outcome.ops
                ]
        return names


def drive(
    url: str,
    event: Mapping[str, Any],
    *,
    key: SigningKey | None = None,
    keys: SigningKeys | None = None,
    on_wait: Callable[[WaitForEventOp], Any] = lambda op: None,
    on_invoke: Callable[[InvokeFunctionOp], Any] = lambda op: None,
    run_id: str = "01JTESTRUN0000000000000000",
    max_requests: int = 50,
) -> Run:
    """Drive a run through discovery and targeted requests until the SDK answers 200 or fails."""
    run = Run()
    version = -1
    force_plan = False
    queue = [DISCOVERY]
    while queue:
        if len(run.exchanges) >= max_requests:
            raise AssertionError(f"no end after {max_requests} requests: {run.ops()}")
        step_id = queue.pop(0)
        request = ExecutionRequest(
            run_id=run_id,
            event=event,
            events=[event],
            steps=dict(run.steps),
            stack=list(run.stack),
            max_attempts=3,
            disable_immediate_execution=force_plan,
            version=version,
        )
        exchange = post(url, request, step_id=step_id, key=key, keys=keys)
        run.exchanges.append(exchange)
        reply = exchange.reply
        if reply.request_version is not None:
            version = reply.request_version
        if isinstance(reply.outcome, RunCompleted):
            run.output = reply.outcome.output
            return run
        if isinstance(reply.outcome, FunctionErrored):
            run.error = reply.outcome
            return run
        ops = reply.outcome.ops
        planned = [op for op in ops if isinstance(op, StepPlannedOp)]
        for op in ops:
            if isinstance(op, StepRunOp):
                run.steps[op.id] = memo_data(op.data)
            elif isinstance(op, SleepOp):
                run.steps[op.id] = None
            elif isinstance(op, WaitForEventOp):
                run.steps[op.id] = on_wait(op)
            elif isinstance(op, InvokeFunctionOp):
                run.steps[op.id] = on_invoke(op)
            elif isinstance(op, StepFailedOp):
                run.steps[op.id] = op.error.memo()
            elif isinstance(op, StepPlannedOp):
                continue
            else:
                raise AssertionError(f"unexpected op {op!r}")
            run.stack.append(op.id)
        queue += [op.id for op in planned]
        if planned:
            force_plan = len(ops) > 1  # Go: a reply of several ops forces step planning
        if not queue:  # one discovery once every planned step is done (wait mode)
            queue.append(DISCOVERY)
            force_plan = False
    return run
