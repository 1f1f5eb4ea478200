"""A run's stored state as an SDK reads it: memo rows become the ``steps`` of an execution
request, trigger events its ``event``/``events``.

Stepline and the Inngest SDKs key a step's memo the same way (SHA-1 of the step id, or of
``"<id>:<n>"`` for its n-th repeat), so a memo row's ``hash`` is the SDK's step id. What each
settled row is sent as:

* a completed ``run``, ``send`` or ``invoke`` step: ``{"data": <output>}``;
* a completed ``sleep``: ``null``; a completed ``wait``: the matching event, or ``null`` when
  it timed out;
* a step failed for good: ``{"error": {"name", "message", "stack"?}}``.

Rows still pending, retrying or running are not sent (the SDK meets those steps again). The
stack lists the settled ids in the order they settled.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from stepline.drivers.inngest._canonical import canonical_json
from stepline.drivers.inngest._execution import (
    MAX_REQUEST_BYTES,
    ExecutionRequest,
    fit,
    memo_data,
    memo_error,
    sdk_event,
)
from stepline.serde import loads
from stepline.store.records import RunState, StepRecord

SETTLED = ("COMPLETED", "FAILED")
_SAFE = 2**53 - 1  # larger integers: RFC 8785 writes them as doubles


def memo_of(step: StepRecord) -> Any:
    """The memo an SDK is sent for a settled step (``StepRecord.status`` COMPLETED or FAILED).

    Raises ``ValueError`` for a step that has not settled."""
    if step.status == "FAILED":
        error = step.error or {}
        return memo_error(
            str(error.get("name") or "Error"), str(error.get("message") or ""), error.get("stack")
        )
    if step.status != "COMPLETED":
        raise ValueError(f"step {step.step_id!r} has not settled ({step.status})")
    output = loads(step.output_json) if step.output_json is not None else None
    if step.kind == "sleep":
        return None
    if step.kind == "wait":
        return sdk_event(output) if isinstance(output, dict) else None
    return memo_data(output)


def request_for(
    state: RunState,
    *,
    attempt: int = 0,
    max_attempts: int | None = None,
    disable_immediate_execution: bool = False,
    version: int = -1,
) -> ExecutionRequest:
    """The execution request that resumes ``state`` in an SDK (``max_attempts`` defaults to
    the run's function retries + 1 as Inngest counts them, 5)."""
    settled = _settled(state)
    events = [e.payload() for e in state.events]
    if not events:
        raise ValueError(f"run {state.run.run_id} has no trigger event")
    return ExecutionRequest(
        run_id=state.run.run_id,
        event=events[0],
        events=events,
        steps={s.hash: memo_of(s) for s in settled},
        stack=[s.hash for s in settled],
        attempt=attempt,
        max_attempts=max_attempts if max_attempts is not None else 5,
        disable_immediate_execution=disable_immediate_execution,
        version=version,
    )


class RequestBuilder:
    """The bodies of the requests of one run (``state``, its memo updated as steps settle),
    each as ``fit(request_for(state, ...))`` would encode it, built from parts kept from one
    request to the next: a settled step's memo and the events do not change, so each is
    decoded and written as canonical JSON once (RFC 8785 is compositional: an object is its
    members' canonical forms in key order), not once a request."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self._memos: dict[str, bytes] = {}  # step hash -> its member of steps, canonical
        self._events: tuple[bytes, bytes] | None = None  # the first event, all of them

    def body(
        self,
        *,
        attempt: int,
        max_attempts: int,
        disable_immediate_execution: bool,
        version: int,
        checkpoint: tuple[str, str] | None,
    ) -> bytes:
        """The body of the next request (``use_api`` past ``MAX_REQUEST_BYTES``, as ``fit``).
        Raises ``ValueError`` for a run without a trigger event."""
        settled = _settled(self.state)
        if self._events is None:
            payloads = [sdk_event(e.payload()) for e in self.state.events]
            if not payloads:
                raise ValueError(f"run {self.state.run.run_id} has no trigger event")
            self._events = canonical_json(payloads[0]), canonical_json(payloads)
        stack = [s.hash for s in settled]
        for step in settled:
            if step.hash not in self._memos:  # the member of ``steps``: "<hash>":<memo>
                self._memos[step.hash] = b"%s:%s" % (
                    orjson.dumps(step.hash),
                    canonical_json(memo_of(step)),
                )
        ctx: dict[str, Any] = {
            "run_id": self.state.run.run_id,
            "attempt": attempt,
            "max_attempts": max_attempts,
            "disable_immediate_execution": disable_immediate_execution,
            "use_api": False,
            "stack": {"stack": stack, "current": len(stack)},
        }
        if checkpoint is not None:
            ctx["fn_id"], ctx["qi_id"] = checkpoint
        memos = b",".join([self._memos[h] for h in sorted(stack)])
        first, events = self._events
        body = b'{"ctx":%s,"event":%s,"events":%s,"steps":{%s},"use_api":false,"version":%s}' % (
            _ctx_json(ctx, attempt, max_attempts),
            first,
            events,
            memos,
            b"%d" % version if abs(version) <= _SAFE else canonical_json(version),
        )
        if len(body) <= MAX_REQUEST_BYTES:
            return body
        request = request_for(
            self.state,
            attempt=attempt,
            max_attempts=max_attempts,
            disable_immediate_execution=disable_immediate_execution,
            version=version,
        )
        return fit(replace(request, checkpoint=checkpoint))[1]


def _ctx_json(ctx: dict[str, Any], *numbers: int) -> bytes:
    """``ctx`` as canonical JSON, written by orjson (the pure-Python RFC 8785 encoder took
    about 0.1 ms a request for the stack's ids alone). The same bytes: ``ctx`` holds ASCII
    keys, strings (orjson escapes exactly the characters RFC 8785 escapes, in the same form:
    checked for every code point), booleans and integers within +-(2**53 - 1)."""
    if any(abs(n) > _SAFE for n in numbers):
        return canonical_json(ctx)
    return orjson.dumps(ctx, option=orjson.OPT_SORT_KEYS)


def _settled(state: RunState) -> list[StepRecord]:
    """The settled steps of ``state`` in the order they settled (the request's stack)."""
    return sorted(
        (s for s in state.steps.values() if s.status in SETTLED),
        key=lambda s: (s.ended_at if s.ended_at is not None else float("inf"), s.position),
    )
