"""Compiling CEL expressions with Inngest's semantics, and evaluating them."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from cel_expr_python import cel

from stepline._text import text_problem
from stepline.errors import ExpressionError, SteplineError
from stepline.expressions._env import (
    ERROR_TYPE,
    environment,
    is_true,
    to_python,
)
from stepline.expressions._lower import DYN, Path, lower, paths, static_type
from stepline.expressions._parse import Node, Unsupported, parse
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


_MAX_VARIANTS = 256
"""Programs kept per expression for combinations of missing fields (one compile each)."""


def _present(activation: Mapping[str, Any], path: Path) -> bool:
    """Whether the field walk ``path`` reaches a value (null included) in ``activation``: only
    maps are walked into by name and lists by index, as Inngest's ``Data.Get`` does."""
    current: Any = activation
    try:
        for key in path:
            if isinstance(key, int) and not isinstance(current, list):
                return False
            current = current[key]
    except (LookupError, TypeError):
        return False
    return True


class Expression:
    """A compiled CEL expression evaluated as Inngest's server evaluates it.

    A field the data does not have is *unknown* (see :mod:`._lower`): each combination of
    missing field walks gets its own CEL program, compiled on first use and kept. Evaluate it
    with an activation mapping each declared variable to a JSON-like value, e.g.
    ``{"event": {"name": "order/created", "data": {...}}}``. Instances are immutable in what
    they compute and safe to share between threads and runs.
    """

    __slots__ = (
        "_checks",
        "_null_safe",
        "_paths",
        "_program",
        "_programs",
        "_text",
        "_tree",
        "_type",
        "_variables",
    )

    def __init__(
        self,
        text: str,
        variables: tuple[str, ...],
        program: cel.Expression,
        null_safe: bool,
        tree: Node | None = None,
    ) -> None:
        self._text = text
        self._variables = variables
        self._program = program
        self._null_safe = null_safe
        self._tree = tree
        self._paths: tuple[Path, ...] = paths(tree, variables) if tree is not None else ()
        # (whether the path is names only, the path): names never index a list or a string
        self._checks = tuple((all(isinstance(k, str) for k in p), p) for p in self._paths)
        # by bit mask of the missing paths; None: the result is missing
        self._programs: dict[int, cel.Expression | None] = {}
        self._type = static_type(tree, variables) if tree is not None else DYN

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
        """Whether missing fields are handled (``False`` only if the rewrite failed)."""
        return self._null_safe

    @property
    def modeled(self) -> bool:
        """Whether missing fields follow Inngest's rules by rewriting the syntax tree (see
        :mod:`._lower`): then a top-level ``&&`` conjunct, compiled alone, evaluates on any
        data as it does inside the expression."""
        return self._tree is not None

    @property
    def result_type(self) -> str:
        """The CEL type of the result when it can be known before evaluation (``"bool"``,
        ``"string"``, ``"int"``...), ``"not-bool"`` when only that is known, else ``"dyn"``."""
        return self._type

    def __repr__(self) -> str:
        return f"Expression({self._text!r})"

    def _program_for(self, activation: Mapping[str, Any]) -> cel.Expression | None:
        """The program for the fields ``activation`` has; ``None`` when the result is missing
        (it depends on missing fields alone)."""
        if not self._paths:
            return self._program
        missing = 0
        bit = 1
        for by_name, path in self._checks:  # inlined: this runs for every event
            if by_name:
                current: Any = activation
                try:
                    for key in path:
                        current = current[key]
                except (LookupError, TypeError):
                    missing |= bit
            elif not _present(activation, path):
                missing |= bit
            bit <<= 1
        if not missing:
            return self._program
        try:
            return self._programs[missing]
        except KeyError:
            pass
        assert self._tree is not None
        absent = [path for bit, path in enumerate(self._paths) if missing >> bit & 1]
        lowered = lower(self._tree, self._variables, absent)
        program = None
        if lowered is not None:
            try:
                program = environment(self._variables).compile(lowered)
            except Exception as exc:  # pragma: no cover - a lowering CEL rejects
                raise ExpressionEvaluationError(self._text, str(exc)) from exc
        if len(self._programs) >= _MAX_VARIANTS:  # many paths, many shapes of events
            self._programs.clear()
        self._programs[missing] = program
        return program

    def _eval(self, activation: Mapping[str, Any]) -> cel.Value | None:
        program = self._program_for(activation)
        if program is None:
            return None
        try:
            value = program.eval(data=activation)
        except Exception as exc:  # data CEL cannot convert (a tuple, a lone surrogate...)
            raise ExpressionEvaluationError(self._text, str(exc)) from exc
        if value.type() == ERROR_TYPE:
            try:
                message = str(value.value())
            except Exception:  # an optional result is reported so too, with no Python form
                message = "unsupported result"
            raise ExpressionEvaluationError(self._text, message)
        return value

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        """Evaluate and return the result as a plain Python value.

        Raises ``ExpressionEvaluationError`` when CEL reports an error (a missing field is not
        one) or the result has no Python form. A result that is missing (``event.data.missing``
        alone) is ``False``, as in Inngest.
        """
        return self._result(activation, to_python)

    def holds(self, activation: Mapping[str, Any]) -> bool:
        """Whether the result is ``true`` (what ``evaluate(...) is True`` says, without
        converting another result to Python); raises ``ExpressionEvaluationError`` when CEL
        reports an error or the result has no Python form."""
        return self._result(activation, is_true) is True

    def _result(self, activation: Mapping[str, Any], read: Callable[[cel.Value], Any]) -> Any:
        """The result ``read`` gives (``False`` when missing)."""
        value = self._eval(activation)
        if value is None:
            return False
        try:
            return read(value)
        except Exception as exc:  # e.g. an optional value
            raise ExpressionEvaluationError(self._text, f"unsupported result: {exc}") from exc

    def matches(self, activation: Mapping[str, Any]) -> bool:
        """Evaluate as a boolean filter: ``True`` only for a ``true`` result; never raises.

        An error or a non-boolean result is ``False``, as in Inngest.
        """
        try:
            program = self._program_for(activation)
            if program is None:
                return False
            return is_true(program.eval(data=activation))
        except Exception:
            return False

    def key(self, activation: Mapping[str, Any]) -> str | None:
        """Evaluate as a key (concurrency, idempotency, rate limit...): its canonical string.

        A string is returned as it is, another value as compact JSON with sorted keys (an
        integral float as an integer); ``None`` on an error, a null or a missing result (so
        events without the field share one key).
        """
        try:
            value = self._eval(activation)
            return None if value is None else canonical(to_python(value))
        except Exception:
            return None


def _validate(text: str, variables: tuple[str, ...]) -> None:
    if not isinstance(text, str):
        raise TypeError(f"an expression must be a string, not {type(text).__name__}")
    if not text.strip():
        raise ExpressionError(text, "the expression is empty")
    problem = text_problem(text)
    if problem is not None:  # stored as text (a wait's, a trigger's): no store can hold it
        raise ExpressionError(text, f"it {problem[0]}", problem[1])
    for name in variables:
        if not name.isidentifier():
            raise ValueError(f"invalid variable name {name!r}")


def _syntax(text: str, variables: tuple[str, ...]) -> None:
    """Raise ``ExpressionError`` pointing into ``text`` if it is not CEL syntax."""
    try:
        environment(variables).compile(text, disable_check=True)
    except Exception as exc:  # the binding raises RuntimeError
        raise _error(text, exc) from None


@lru_cache(maxsize=4096)
def _compile(text: str, variables: tuple[str, ...]) -> Expression:
    _syntax(text, variables)
    try:
        tree = parse(text)
    except Unsupported:
        tree = None
    if tree is not None:
        try:
            program = environment(variables).compile(lower(tree, variables) or "false")
        except Exception:  # a type error or an unknown name: reported on the text below
            program = None
        if program is not None:
            return Expression(text, variables, program, True, tree)
    # Syntax the parser does not model: CEL's own semantics, with missing fields as null.
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


def compile_condition(text: str, *, variables: Sequence[str] = ("event",)) -> Expression:
    """Compile a boolean condition (an ``if_``): as :func:`compile_expression`, and also raise
    ``ExpressionError`` when the result is known not to be a boolean (``"event.data.x + 1"``,
    a string literal). A condition whose type depends on the data (``event.data.flag``) is
    accepted; at run time a non-boolean result is simply false."""
    expression = compile_expression(text, variables=variables)
    kind = expression.result_type
    if kind not in ("bool", DYN):
        shown = "a value that is not a boolean" if kind == "not-bool" else f"a {kind}"
        raise ExpressionError(text, f"a condition must give true or false, this gives {shown}")
    return expression
