"""The Inngest SDK wire protocol, pure of I/O: signing and verification, canonical JSON, the
sync (``/fn/register``) body and its mapping to Stepline's function options, execution
requests, and SDK replies read into typed ops. The HTTP driver and the server build on it.
"""

from stepline.drivers.inngest._canonical import canonical_json, canonicalize_body
from stepline.drivers.inngest._errors import ProtocolError, SignatureError, SyncRefused
from stepline.drivers.inngest._execution import (
    DISCOVERY,
    ExecutionRequest,
    execution_url,
    hash_step_id,
    memo_data,
    memo_error,
    request_headers,
    sdk_event,
)
from stepline.drivers.inngest._mapping import (
    DEFAULT_RETRIES,
    SyncedFunction,
    map_app,
    map_function,
)
from stepline.drivers.inngest._opcodes import (
    AIGatewayOp,
    ErrorInfo,
    InvokeFunctionOp,
    Op,
    RunCompleteOp,
    SleepOp,
    StepErrorOp,
    StepFailedOp,
    StepPlannedOp,
    StepRunOp,
    UnsupportedOp,
    WaitForEventOp,
    read_op,
)
from stepline.drivers.inngest._register import AppRegistration, FunctionConfig, parse_registration
from stepline.drivers.inngest._responses import (
    FunctionErrored,
    OpsReported,
    RunCompleted,
    SdkReply,
    parse_reply,
    retry_at,
)
from stepline.drivers.inngest._signing import (
    SIGNATURE_HEADER,
    SigningKey,
    SigningKeys,
    check_bearer,
    hash_event_key,
    sign_request,
    signature,
    verify,
    verify_request,
    verify_response,
)
from stepline.drivers.inngest._state import memo_of, request_for
from stepline.drivers.inngest._sync import sync_request, trust_probe_request

__all__ = [
    "DEFAULT_RETRIES",
    "DISCOVERY",
    "SIGNATURE_HEADER",
    "AIGatewayOp",
    "AppRegistration",
    "ErrorInfo",
    "ExecutionRequest",
    "FunctionConfig",
    "FunctionErrored",
    "InvokeFunctionOp",
    "Op",
    "OpsReported",
    "ProtocolError",
    "RunCompleteOp",
    "RunCompleted",
    "SdkReply",
    "SignatureError",
    "SigningKey",
    "SigningKeys",
    "SleepOp",
    "StepErrorOp",
    "StepFailedOp",
    "StepPlannedOp",
    "StepRunOp",
    "SyncRefused",
    "SyncedFunction",
    "UnsupportedOp",
    "WaitForEventOp",
    "canonical_json",
    "canonicalize_body",
    "check_bearer",
    "execution_url",
    "hash_event_key",
    "hash_step_id",
    "map_app",
    "map_function",
    "memo_data",
    "memo_error",
    "memo_of",
    "parse_registration",
    "parse_reply",
    "read_op",
    "request_for",
    "request_headers",
    "retry_at",
    "sdk_event",
    "sign_request",
    "signature",
    "sync_request",
    "trust_probe_request",
    "verify",
    "verify_request",
    "verify_response",
]
