"""Compiling CEL expressions with Inngest's semantics, and evaluating them."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from cel_expr_python import cel

from stepline.errors import ExpressionError, SteplineError
from stepline.expressions._env import ERROR_TYPE, environment
from stepline.expressions._rewrite import null_safe
from stepline.expressions._values import canonical

_LOCATION = re.compile(r"ERROR: <input>:(\d+):(\d+): ")
_TRAILER = re.compile(r"\s*\[[A-Z_]+\]\s*$")


class ExpressionEvaluationError(SteplineError):
    """Evaluating an expression produced a CEL error (a type mismatch, a division by zero...).

    ``expression`` is the expression's text and ``reason`` what CEL reported.
    """

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"expression {expression!r} failed: {reason}")


def _error(text: str, exc: Exception) -> ExpressionError:
    """Turn a CEL compiler message into an ``ExpressionError`` for ``text``.

    The first reported problem is kept; its 1-based line and column become a 0-based column
    (and a ``line N`` note when the expression spans several lines).
    """
    message = str(exc)
    found = _LOCATION.search(message)
    if found is None:
        return ExpressionError(text, _TRAILER.sub("", message).strip() or type(exc).__name__)
    line, column = int(found.group(1)), int(found.group(2))
    reason = message[found.end() :]
    following = _LOCATION.search(reason)
    if following is not None:
        reason = reason[: following.start()]
    reason = _TRAILER.sub("", reason).rstrip()
    if line > 1:
        reason = f"(line {line}) {reason}"
    return ExpressionError(text, reason, column - 1)


def _compile_raw(text: str, variables: tuple[str, ...]) -> cel.Expression:
    """Compile ``text`` as it is; raise ``ExpressionError`` pointing into ``text``."""
    try:
        return environment(variables).compile(text)
    except Exception as exc:  # the binding raises RuntimeError
        raise _error(text, exc) from None


class Expression:
    """A compiled CEL expression with Inngest's semantics (missing fields are null).

    Evaluate it with an activation mapping each declared variable to a JSON-like value, e.g.
    ``{"event": {"name": "order/created", "data": {...}}}``. Instances are immutable and safe to
    share between threads and runs.
    """

    __slots__ = ("_null_safe", "_program", "_text", "_variables")

    def __init__(
        self, text: str, variables: tuple[str, ...], program: cel.Expression, null_safe: bool
    ) -> None:
        self._text = text
        self._variables = variables
        self._program = program
        self._null_safe = null_safe

    @property
    def text(self) -> str:
        """The expression as written."""
        return self._text

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables the expression may use."""
        return self._variables

    @property
    def null_safe(self) -> bool:
        """Whether missing fields evaluate as null (``False`` only if the rewrite failed)."""
        return self._null_safe

    def __repr__(self) -> str:
        return f"Expression({self._text!r})"

    def _eval(self, activation: Mapping[str, Any]) -> cel.Value:
        try:
            value = self._program.eval(data=activation)
        except Exception as exc:  # data CEL cannot convert (a tuple, a lone surrogate...)
            raise ExpressionEvaluationError(self._text, str(exc)) from exc
        if value.type() == ERROR_TYPE:
            raise ExpressionEvaluationError(self._text, str(value.value()))
        return value

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Evaluate and return the result as a plain Python value.

        Raises ``ExpressionEvaluationError`` when CEL reports an error (a missing field is not
        one: it is null) or the result has no Python form.
        """
        value = self._eval(activation)
        try:
            return value.plain_value()
        except Exception as exc:  # e.g. an optional value
            raise ExpressionEvaluationError(self._text, f"unsupported result: {exc}") from exc

    def matches(self, activation: Mapping[str, Any]) -> bool:
        """Evaluate as a boolean filter: ``True`` only for a ``true`` result; never raises.

        An error or a non-boolean result is ``False``, as in Inngest.
        """
        try:
            return self._program.eval(data=activation).value() is True
        except Exception:
            return False

    def key(self, activation: Mapping[str, Any]) -> str | None:
        """Evaluate as a key (concurrency, idempotency, rate limit...): its canonical string.

        A string is returned as it is, another value as compact JSON with sorted keys (an
        integral float as an integer); ``None`` on an error or a null result.
        """
        try:
            return canonical(self.evaluate(activation))
        except Exception:
            return None


def _validate(text: str, variables: tuple[str, ...]) -> None:
    if not isinstance(text, str):
        raise TypeError(f"an expression must be a string, not {type(text).__name__}")
    if not text.strip():
        raise ExpressionError(text, "the expression is empty")
    for name in variables:
        if not name.isidentifier():
            raise ValueError(f"invalid variable name {name!r}")


@lru_cache(maxsize=4096)
def _compile(text: str, variables: tuple[str, ...]) -> Expression:
    _compile_raw(text, variables)  # errors must point into the user's text
    rewritten = null_safe(text, variables)
    if rewritten == text:
        return Expression(text, variables, _compile_raw(text, variables), True)
    try:
        program = environment(variables).compile(rewritten)
    except Exception:  # pragma: no cover - a rewrite the compiler rejects: keep CEL semantics
        return Expression(text, variables, _compile_raw(text, variables), False)
    return Expression(text, variables, program, True)


def compile_expression(text: str, *, variables: Sequence[str] = ("event",)) -> Expression:
    """Compile a CEL expression once (at definition time) with Inngest's semantics.

    ``variables`` are the names the expression may use (``event`` for triggers' filters and keys).
    Raises ``ExpressionError`` with the reason and the 0-based column for a syntax error, an
    undeclared name, a type error the checker can see, or an empty text. Compiled expressions
    are cached by ``(text, variables)``.
    """
    names = tuple(variables)
    _validate(text, names)
    return _compile(text, names)
