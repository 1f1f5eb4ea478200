"""The errors of the Inngest protocol layer."""

from __future__ import annotations

from stepline.errors import ConfigError, SteplineError


class ProtocolError(SteplineError, ValueError):
    """A message that does not follow the Inngest wire protocol: a register body, an execution
    request or an SDK response that cannot be read. The text names the offending field."""


class SignatureError(SteplineError):
    """A signature (``X-Inngest-Signature``) or bearer token that is missing, malformed,
    expired or made with none of the configured signing keys."""


class SyncRefused(ConfigError):
    """An app's sync asks for something Stepline cannot honour. ``problems`` lists each one as
    ``(function slug, field, reason)``; the message names them all, so nothing is silently
    ignored."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = list(problems)
        lines = [f"function {fn!r}: {field}: {reason}" for fn, field, reason in self.problems]
        noun = "problem" if len(lines) == 1 else "problems"
        super().__init__(f"sync refused ({len(lines)} {noun}):\n  " + "\n  ".join(lines))


class UnsupportedOpError(Exception):
    """An SDK asked for an op Stepline does not drive."""
