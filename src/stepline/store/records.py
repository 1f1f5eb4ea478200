"""Plain records that cross the Store seam. No behaviour, no I/O.

Times are epoch seconds (floats). JSON payloads that the engine produced are carried as encoded
bytes (``*_json``) so they are encoded once, measured once, and stored as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from stepline.gcra import GcraSpec
from stepline.serde import dumps_exact
from stepline.store._quick_init import quick_init
from stepline.store.keys import stored_key

RunStatus = Literal[
    "QUEUED", "RUNNING", "SLEEPING", "WAITING", "RETRYING", "COMPLETED", "FAILED", "CANCELLED"
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
UNFINISHED_STATUSES: tuple[str, ...] = ("QUEUED", "RUNNING", "SLEEPING", "WAITING", "RETRYING")
# a run leased this many times in a row without a commit of its own is failed by ``lease_due``
# (passes that crash, or whose every commit fails, must not re-enter it without bound)
MAX_PASSES_WITHOUT_PROGRESS = 50

StepKind = Literal["run", "sleep", "wait", "invoke", "send"]
StepStatus = Literal["COMPLETED", "FAILED", "PENDING", "RETRYING", "RUNNING"]


@quick_init
@dataclass(frozen=True, slots=True)
class EventRecord:
    """A stored event. ``internal_id`` is Stepline's id; ``id`` the sender's de-duplication id;
    ``v`` the sender's version of the event's shape (Inngest's ``v``: kept and given back,
    never read). ``data_json``: ``data`` already encoded (by the validation at the edge, which
    measures it), so the store does not encode it again; None: encoded when stored."""

    internal_id: str
    name: str
    data: dict[str, Any]
    user: dict[str, Any]
    id: str | None
    ts: float
    data_json: bytes | None = field(default=None, compare=False, repr=False)
    v: str | None = None

    def encoded_data(self) -> bytes:
        """``data`` as the store keeps it (JSON bytes)."""
        return self.data_json if self.data_json is not None else dumps_exact(self.data)

    def dedup_key(self) -> str | None:
        """The sender's id as the de-duplication row keeps it (``keys.stored_key``: a long id
        by its digest); None without one."""
        return None if self.id is None else stored_key(self.id)

    def payload(self) -> dict[str, Any]:
        """The event as functions and expressions see it (``ts`` in milliseconds, as Inngest;
        ``v`` last, only when the sender gave one, as Inngest's ``Event.Map``)."""
        payload: dict[str, Any] = {
            "id": self.id if self.id is not None else self.internal_id,
            "name": self.name,
            "data": self.data,
            "user": self.user,
            "ts": int(self.ts * 1000),
        }
        if self.v is not None:
            payload["v"] = self.v
        return payload


@dataclass(frozen=True, slots=True)
class MatcherSpec:
    """A ``cancel_on`` matcher prepared for one run (its own event already substituted)."""

    event_name: str
    expression: str | None
    index_path: str | None
    index_value: str | None
    timeout: float | None


@dataclass(frozen=True, slots=True)
class Admission:
    """Flow-control decisions the store applies atomically when it creates a run.

    ``idempotency_key``: one run per key per 24 h. ``rate_limit``: skip the run when the bucket
    is full. ``throttle``: delay its start. ``priority``: seconds ahead in the queue.
    ``singleton_key``/``singleton_mode``: one active run per key ("skip" new or "cancel" old).
    ``concurrency``: (slot key, limit) pairs bounding leased (executing) runs. ``cancel_on``:
    matchers that cancel the run. ``start_timeout``/``finish_timeout``: seconds.
    ``not_before``: the run is not due before this time (an event ``ts`` in the future).
    """

    idempotency_key: str | None = None
    rate_limit: GcraSpec | None = None
    throttle: GcraSpec | None = None
    priority: float = 0.0
    singleton_key: str | None = None
    singleton_mode: str = "skip"
    concurrency: tuple[tuple[str, int], ...] = ()
    cancel_on: tuple[MatcherSpec, ...] = ()
    start_timeout: float | None = None
    finish_timeout: float | None = None
    not_before: float | None = None


NO_ADMISSION = Admission()


@quick_init
@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create: for a triggering event, an invoke, or a system event. ``app_id`` is
    the app whose function it runs: only workers of that app that registered the function lease
    it (``""``: a run recorded before runs carried their app, leased by any worker with the
    function)."""

    run_id: str
    function_id: str
    event_ids: tuple[str, ...]
    parent_run_id: str | None = None
    parent_step_hash: str | None = None
    admission: Admission = NO_ADMISSION
    app_id: str = ""


@dataclass(frozen=True, slots=True)
class Deferral:
    """An event held for a later run: ``kind`` "debounce" (the last event runs ``period`` after
    the latest, at most ``timeout`` after the first) or "batch" (up to ``max_size`` events run
    together, at most ``period`` after the first). ``run`` is the run to start (its event ids are
    filled in when it starts)."""

    kind: str
    function_id: str
    key: str
    period: float
    timeout: float | None
    max_size: int
    run: NewRun


@quick_init
@dataclass(frozen=True, slots=True)
class EventIngest:
    """An event to store with the runs it starts (or defers) unless it is a duplicate.

    ``sender``: the functions whose triggers the sender matched the event against itself (its
    app and function ids). The event is also handed to every other function of the trigger
    catalog listening to its name (other apps', and functions of the sender's app it does not
    have): an inbox row each, taken by that app's workers (``StoreTx.take_inbox``). None: an
    event made for the runs it carries only (a cron tick, an invoke), handed to no one."""

    event: EventRecord
    new_runs: tuple[NewRun, ...] = ()
    deferrals: tuple[Deferral, ...] = ()
    sender: FunctionSet | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class IngestResult:
    """What ingesting one event did. ``skipped`` lists (function id, reason) for runs that
    flow control did not start (rate limit, idempotency, singleton)."""

    internal_id: str
    duplicate: bool
    run_ids: tuple[str, ...]
    resumed_run_ids: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    cancelled: tuple[tuple[str, str], ...] = ()
    # (app id, function id) of the other apps' functions the event was handed to (their
    # workers plan and start those runs: ``StoreTx.take_inbox``)
    delivered: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SkipRecord:
    """A run that flow control did not start: ``reason`` is "rate_limit", "idempotency" or
    "singleton"."""

    event_id: str
    function_id: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class CronRow:
    """A cron schedule's state: the next tick to fire (of a function of app ``app_id``)."""

    function_id: str
    cron: str
    next_at: float
    app_id: str = ""


@dataclass(frozen=True, slots=True)
class FunctionSet:
    """The functions a worker has registered: it leases only their runs (by app and function
    id; runs recorded without an app id match any app)."""

    app_id: str
    function_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TriggerRow:
    """An entry of the trigger catalog: app ``app_id``'s function ``function_id`` starts runs
    on events named ``event_name``."""

    app_id: str
    function_id: str
    event_name: str


@dataclass(frozen=True, slots=True)
class AppRecord:
    """An app as the trigger catalog knows it (``Store.apps``): its functions' event triggers,
    its workers (``last_seen_at``: the latest sign of life of a registered worker of it, None
    when none is registered: a worker that stopped gracefully is removed), and the events
    handed to it that its workers have not taken yet (``waiting``)."""

    app_id: str
    triggers: tuple[TriggerRow, ...]
    live_workers: int
    last_seen_at: float | None
    waiting: int


@dataclass(frozen=True, slots=True)
class AppRemoval:
    """What ``StoreTx.remove_app`` did: ``refused`` (nothing done) when a worker of the app is
    alive and the removal was not forced; else the catalog rows, inbox rows and stored SDK
    apps (``sdk_apps``) it deleted."""

    app_id: str
    live_workers: int
    refused: bool
    triggers: int
    dropped: int
    sdk_apps: int = 0


@dataclass(frozen=True, slots=True)
class InboxItem:
    """An event handed to a function of another app (``EventIngest.sender``), taken by a
    worker of that app: ``event`` None when the event was purged meanwhile; ``received_at``
    when the event was ingested (its run is decided as of then)."""

    seq: int
    function_id: str
    event: EventRecord | None
    received_at: float


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A registered worker: its app, its functions, and until when it counts as alive
    (``expires_at``, extended while it runs; a worker that stopped gracefully is removed)."""

    worker_id: str
    app_id: str
    function_ids: tuple[str, ...]
    started_at: float
    seen_at: float
    expires_at: float


@dataclass(slots=True)
class RunRecord:
    """A run as stored."""

    run_id: str
    function_id: str
    status: str
    event_ids: list[str]
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    output_json: bytes | None = None
    error: dict[str, Any] | None = None
    attempt: int = 0
    parent_run_id: str | None = None
    parent_step_hash: str | None = None
    start_timeout: float | None = None
    finish_timeout: float | None = None
    app_id: str = ""
    worker_id: str | None = None  # the worker that leased its latest pass


# what an event did to a run (``Store.event_runs``)
STARTED, RESUMED, CANCELLED = "started", "resumed", "cancelled"
EFFECTS: tuple[str, ...] = (STARTED, RESUMED, CANCELLED)


@dataclass(frozen=True, slots=True)
class EventRunRecord:
    """A run event ``event_id`` acted on, and how (``effect``): STARTED (the event triggered it,
    alone or with others in a batch or a debounce; a replay of such a run too), RESUMED (the
    event resolved one of its waits) or CANCELLED (the event matched its ``cancel_on``, or
    started a singleton run that replaced it)."""

    event_id: str
    effect: str
    run: RunRecord


@dataclass(slots=True)
class StepRecord:
    """A step's memo row: its result once it has one, its pending state before; RUNNING while
    an attempt executes (``attempts`` made before it, ``started_at`` its start)."""

    run_id: str
    hash: str
    step_id: str
    kind: str
    position: int
    status: str
    output_json: bytes | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    due_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One line of a run's history: a transition, a step attempt, a warning."""

    run_id: str
    ts: float
    kind: str
    step_id: str | None = None
    attempt: int | None = None
    duration: float | None = None
    data: dict[str, Any] | None = None
    worker_id: str | None = None  # the worker whose pass wrote it (None: not written by a pass)


@quick_init
@dataclass(frozen=True, slots=True)
class WaitRecord:
    """A pending ``wait_for_event``: the expression has the run's own event already substituted.

    ``index_path``/``index_value`` is one equality the expression requires of the incoming event
    (``async.<path> == value``); waits without one are candidates for every event of the name.
    """

    wait_id: str
    run_id: str
    step_hash: str
    event_name: str
    expression: str | None
    index_path: str | None
    index_value: str | None
    expires_at: float | None
    created_at: float
    # the id of the wait's step (its WAIT_MATCHED history row names it); None: not stored
    # with the wait (a matcher, or a wait written before it was), read from the step
    step_id: str | None = None


def reentered_error(run_id: str, passes: int) -> dict[str, Any]:
    """The error of a run that ``lease_due`` failed after ``passes`` passes without progress."""
    return {
        "name": "LimitExceededError",
        "message": f"run {run_id} re-entered {passes} times without progress",
        "limit": "passes",
    }


@dataclass(frozen=True, slots=True)
class SpentRun:
    """A run leased ``max_passes`` times without progress, which ``lease_due`` fails instead
    of leasing it (its error: ``reentered_error``)."""

    run_id: str
    parent_run_id: str | None
    parent_step_hash: str | None
    function_id: str


@quick_init
@dataclass(frozen=True, slots=True)
class Lease:
    """A leased run: the pass that holds it commits with ``token``. ``taken_over_from`` names
    the worker whose lease had expired when this one was taken (a crashed or hung worker).
    ``due_at``: when the run is due, if that is after the lease (leased ahead with
    ``lease_due(..., due_by=)``: its pass must not execute before then). ``loaded``: the run
    as the lease's own transaction read it (``load_run`` without another read; PostgreSQL, and
    SQLite's leases a worker's lease attempt or an in-process send took: ``LoadsLeased``), to
    be called once that transaction committed; None: ask ``load_run``. ``function_id``: the
    run's function, when the lease says (``lease_due``'s: the worker starts a lease's runs of a
    function that has few of them first); None: not said."""

    run_id: str
    token: str
    taken_over_from: str | None = None
    due_at: float | None = None
    loaded: Callable[[], RunState | None] | None = field(default=None, compare=False, repr=False)
    function_id: str | None = field(default=None, compare=False)


@dataclass(slots=True)
class RunState:
    """Everything a pass needs to replay a run."""

    run: RunRecord
    events: list[EventRecord]
    steps: dict[str, StepRecord]
    waits: list[WaitRecord]


@dataclass(slots=True)
class RunEnd:
    """The end state a pass writes: terminal (queue row removed) or suspended until ``due_at``."""

    status: str
    due_at: float | None = None
    output_json: bytes | None = None
    error: dict[str, Any] | None = None
    attempt: int | None = None


@dataclass(slots=True)
class Wake:
    """Settle a pending step of another run (an invoke's parent) and make that run due now."""

    run_id: str
    step_hash: str
    status: str
    output_json: bytes | None
    error: dict[str, Any] | None


# what an invoking step fails with when its child run is cancelled: the error Inngest's
# finalize.go puts in the cancelled child's function.finished, which resumes the caller
INVOKED_CANCELLED = {"name": "Error", "message": "function cancelled"}


@dataclass(slots=True, init=False)
class PassCommit:
    """One transaction of a pass: fenced by the lease token, applied whole or not at all."""

    run_id: str
    lease_token: str
    steps: list[StepRecord] = field(default_factory=list)
    history: list[HistoryRecord] = field(default_factory=list)
    waits: list[WaitRecord] = field(default_factory=list)
    events: list[EventIngest] = field(default_factory=list)
    child_runs: list[NewRun] = field(default_factory=list)
    wakes: list[Wake] = field(default_factory=list)
    started_at: float | None = None
    end: RunEnd | None = None

    def __init__(
        self,
        run_id: str,
        lease_token: str,
        steps: list[StepRecord] | None = None,
        history: list[HistoryRecord] | None = None,
        waits: list[WaitRecord] | None = None,
        events: list[EventIngest] | None = None,
        child_runs: list[NewRun] | None = None,
        wakes: list[Wake] | None = None,
        started_at: float | None = None,
        end: RunEnd | None = None,
    ) -> None:
        """The generated ``__init__``'s, its lists made by a list display rather than a call
        of each ``default_factory`` (a commit is made per step: ~35 bytecodes fewer)."""
        self.run_id = run_id
        self.lease_token = lease_token
        self.steps = [] if steps is None else steps
        self.history = [] if history is None else history
        self.waits = [] if waits is None else waits
        self.events = [] if events is None else events
        self.child_runs = [] if child_runs is None else child_runs
        self.wakes = [] if wakes is None else wakes
        self.started_at = started_at
        self.end = end


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Filters for listing runs (all optional); newest first. ``event_id``: only the runs that
    event started (``Store.event_runs`` has all it did). ``waiting_for_worker_at``: only
    unfinished runs whose function no worker alive at that time has registered. ``app_id``:
    only that app's runs (and those recorded without an app id); None: every app's.
    ``created_after``/``created_before``: creation time bounds (inclusive). ``after``: the
    (created_at, run_id) of the last run of the previous page: only runs older than it (a
    cursor that stays exact while runs are added); ``newer_than``: a (created_at, run_id): only
    runs newer than it."""

    function_id: str | None = None
    status: str | None = None
    event_id: str | None = None
    limit: int = 100
    waiting_for_worker_at: float | None = None
    app_id: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    after: tuple[float, str] | None = None
    newer_than: tuple[float, str] | None = None


INTERNAL_PREFIX = "inngest/"  # Inngest's own events' names (``EventFilter.include_internal``)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters for listing events (all optional); newest first (by the time they were
    received). ``name``: of that name. ``received_after``/``received_before``: time bounds
    (inclusive). ``after``: the (received_at, internal_id) of the last event of the previous
    page: only events older than it. ``id_below``: only events whose internal id sorts below
    it (text order, that of the ids' times), listed by internal id, newest first, instead of by
    received time (Inngest's ``GET /v1/events``: its ``cursor``, the last id of the previous
    page; the greatest id for the first); not with ``after``. ``internal_id``: only that event.
    ``include_internal``: False leaves out Inngest's own events (names starting with
    ``inngest/``: ``inngest/function.finished``...), as Inngest's ``GET /v1/events`` does."""

    name: str | None = None
    received_after: float | None = None
    received_before: float | None = None
    after: tuple[float, str] | None = None
    limit: int = 100
    id_below: str | None = None
    internal_id: str | None = None
    include_internal: bool = True


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: when it was ``received_at``, whether its sender id had been seen in
    the 24 h before (``duplicate``: it started no run)."""

    event: EventRecord
    received_at: float
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Purged:
    """What one ``purge_before`` deleted: runs (with their steps and history), events, skips."""

    runs: int = 0
    events: int = 0
    skips: int = 0

    def full(self, limit: int) -> bool:
        """Whether a kind filled its batch: more may be left to delete."""
        return max(self.runs, self.events, self.skips) >= limit


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts for monitoring: runs per status, unfinished runs in the queue
    (``queue_depth``), those due now and not leased (``due_now``), and the due time of the
    oldest of those (``oldest_due_at``; None when nothing is due)."""

    runs_by_status: dict[str, int]
    queue_depth: int
    due_now: int
    oldest_due_at: float | None


WaitMatcher = Callable[[WaitRecord, EventRecord], bool]


@dataclass(frozen=True, slots=True)
class QueueState:
    """Where an unfinished run stands in the queue (what the dashboard's "waiting on" reads):
    ``due_at`` its next wake-up (None: none, e.g. a wait without timeout), ``leased`` whether a
    live lease holds it (a pass executes it), ``full_keys`` its concurrency keys that live
    leases of other runs fill to their limit (it is held until one frees), ``waits`` its
    pending ``wait_for_event`` waits."""

    run_id: str
    due_at: float | None
    leased: bool
    full_keys: tuple[str, ...]
    waits: tuple[WaitRecord, ...]


class TakeContended(Exception):
    """``StoreTx.events_received`` (PostgreSQL): an ingestion of events of those names is in
    flight, so events it may not have matched against the runs just started are not visible
    yet; the caller rolls the row's savepoint back and gives the row back to the inbox."""
