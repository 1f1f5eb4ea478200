"""The part of Inngest's dev-server GraphQL schema (``pkg/coreapi/gql.*.graphql``) Stepline
answers: the queries tools built for Inngest's dev server send to ``POST /v0/gql`` (its SDKs'
test helpers, scripts, CI checks). Type, field and enum names are Inngest's, so a query written
for Inngest validates here; fields Stepline has no value for are left out (a query asking for
one gets a GraphQL validation error naming it, never a made-up value).

Scalars are serialized as Inngest's are: ``Bytes`` (JSON documents: outputs, event payloads) as
strings holding JSON, ``Time`` as RFC 3339 in UTC, ``ULID``/``UUID`` as strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLScalarType, GraphQLSchema, build_schema

SDL = """
scalar Time
scalar ULID
scalar UUID
scalar Bytes

type Query {
  "A run by id (null when there is none)."
  run(runID: String!): FunctionRunV2
  "The events that started a run."
  runTrigger(runID: String!): RunTraceTrigger!
  "A run's trace: the run as the root span, one child span per step in execution order."
  runTrace(runID: String!): RunTraceSpan!
  "The output of a span (an ``outputID`` of a trace)."
  runTraceSpanOutputByID(outputID: String!): RunTraceSpanOutput!
  "An event by its id (the id the event API returned), with the runs it started."
  event(query: EventQuery!): Event
  "The latest events (100), newest first."
  events(query: EventsQuery!): [Event!]
  "The latest events with the runs each started, newest first."
  stream(query: StreamQuery!): [StreamItem!]!
  "Every function registered (native and of SDK apps)."
  functions: [Function!]
}

input EventQuery {
  workspaceId: ID! = "local"
  eventId: ID!
}

input EventsQuery {
  workspaceId: ID! = "local"
  lastEventId: ID
}

input StreamQuery {
  after: ID
  before: ID
  limit: Int! = 20
  includeInternalEvents: Boolean
}

enum StreamType {
  EVENT
  CRON
}

type StreamItem {
  id: ID!
  trigger: String!
  type: StreamType!
  createdAt: Time!
  runs: [FunctionRun]
  inBatch: Boolean!
}

enum FunctionRunStatus {
  COMPLETED
  FAILED
  CANCELLED
  RUNNING
  QUEUED
}

enum FunctionTriggerTypes {
  EVENT
  CRON
}

type FunctionTrigger {
  type: FunctionTriggerTypes!
  value: String!
}

type Function {
  id: String!
  name: String!
  slug: String!
  "The config as the SDK app synced it (JSON); {} for a native function."
  config: String!
  concurrency: Int!
  triggers: [FunctionTrigger!]
  "The function's URL (SDK app) or empty (native)."
  url: String!
  appID: String!
}

type Event {
  id: ULID!
  externalID: String
  name: String
  createdAt: Time
  payload: String
  raw: String
  totalRuns: Int
  functionRuns: [FunctionRun!]
}

type FunctionRun {
  id: ID!
  functionID: String!
  function: Function
  status: FunctionRunStatus
  startedAt: Time
  finishedAt: Time
  output: String
  eventID: ID!
}

type FunctionRunV2 {
  id: ULID!
  appID: UUID!
  functionID: UUID!
  function: Function!
  traceID: String!
  queuedAt: Time!
  startedAt: Time
  endedAt: Time
  status: FunctionRunStatus!
  sourceID: String
  triggerIDs: [ULID!]!
  eventName: String
  isBatch: Boolean!
  "A batch run's: when its batch began (its first event)."
  batchCreatedAt: Time
  "A cron run's: the schedule that fired it, as configured."
  cronSchedule: String
  output: Bytes
  trace(preview: Boolean): RunTraceSpan
  hasAI: Boolean!
}

enum RunTraceSpanStatus {
  FAILED
  QUEUED
  RUNNING
  COMPLETED
  WAITING
  CANCELLED
}

enum StepOp {
  INVOKE
  RUN
  SLEEP
  WAIT_FOR_EVENT
  AI_GATEWAY
}

type RunTraceSpan {
  appID: UUID!
  functionID: UUID!
  runID: ULID!
  spanID: String!
  traceID: String!
  name: String!
  status: RunTraceSpanStatus!
  attempts: Int
  duration: Int
  outputID: String
  queuedAt: Time!
  startedAt: Time
  endedAt: Time
  childrenSpans: [RunTraceSpan!]!
  stepOp: StepOp
  "The step's kind (RUN, INVOKE, SLEEP, WAIT_FOR_EVENT, AI_GATEWAY); empty for the run's span."
  stepType: String!
  stepID: String
  isRoot: Boolean!
  parentSpanID: String
  isUserland: Boolean!
}

type RunTraceSpanOutput {
  input: Bytes
  data: Bytes
  error: StepError
}

type StepError {
  message: String!
  name: String
  stack: String
  "The error's cause as the SDK reported it (JSON), when it did."
  cause: Bytes
}

type RunTraceTrigger {
  eventName: String
  IDs: [ULID!]!
  payloads: [Bytes!]!
  timestamp: Time!
  isBatch: Boolean!
  cron: String
}
"""


def _time(value: Any) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, str):
        return value
    raise TypeError(f"Time cannot represent {value!r}")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {value!r}")


def build() -> GraphQLSchema:
    """The schema, its custom scalars serialized as Inngest's."""
    schema = build_schema(SDL)
    scalars: dict[str, Any] = {"Time": _time, "ULID": _text, "UUID": _text, "Bytes": _text}
    for name, serialize in scalars.items():
        scalar = schema.type_map[name]
        assert isinstance(scalar, GraphQLScalarType)
        scalar.serialize = serialize  # type: ignore[method-assign]
        scalar.parse_value = _text  # type: ignore[method-assign]
    return schema


SCHEMA = build()
