"""Lowering an expression to CEL text that evaluates as Inngest's server does.

Inngest's server (``pkg/expressions/data.go``, ``unknown.go``) treats a field that the data does
not have as *unknown*, which is not null: the walk ``event.data.issue.field`` is unknown when
``issue`` is missing, null or a scalar. A call with an unknown argument does not fail, it has a
fixed answer: ``unknown == null`` is true, ``unknown == x`` false, ``unknown != x`` the reverse,
``unknown < x`` true and ``x < unknown`` false (``>`` the other way), ``unknown + x`` is ``x``,
``size(unknown)`` is 0, and every other call (``in``, ``!``, ``contains``...) is false. An
expression whose result is unknown evaluates to false.

Which fields are missing is known before CEL runs (a dictionary walk per field path), so each
combination of missing paths gets its own CEL text, compiled once, where those answers are
constants: :func:`lower` writes the text for one combination. Present values keep CEL's
semantics, except where Inngest loosens them: ordering with a null operand, ``+`` of mismatched
types, and ``||``/``&&`` over non-booleans, which go through the ``_inngest_*`` functions.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from stepline.expressions._env import MISSING, constant
from stepline.expressions._functions import FUNCTION_TYPES, ORDERINGS
from stepline.expressions._parse import (
    Binary,
    Call,
    Cond,
    Ident,
    Index,
    ListLit,
    Lit,
    MapLit,
    Node,
    Select,
    Unary,
)

Path = tuple[str | int, ...]

DYN = "dyn"
NOT_BOOL = "not-bool"  # a type that is known not to be bool, though not which one
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_SIZES = frozenset({"size"})
_NUMBERS = frozenset({"int", "uint", "double"})
_ORDERED = frozenset({"int", "uint", "double", "string", "bytes", "bool", "timestamp", "duration"})
_ADDABLE = frozenset({"int", "uint", "double", "string", "bytes", "list"})
_BOOL_RESULTS = frozenset(
    {"has", "contains", "startsWith", "endsWith", "matches", "all", "exists", "exists_one", "bool"}
)
_CALL_TYPES = {
    "size": "int",
    "int": "int",
    "uint": "uint",
    "double": "double",
    "string": "string",
    "bytes": "bytes",
    "duration": "duration",
    "timestamp": "timestamp",
    "type": "type",
    "map": "list",
    "filter": "list",
    "charAt": "string",
    "indexOf": "int",
    "lastIndexOf": "int",
    "lowerAscii": "string",
    "upperAscii": "string",
    "replace": "string",
    "split": "list",
    "substring": "string",
    "trim": "string",
    "join": "string",
    "format": "string",
    "quote": "string",
    "reverse": "string",
    "getFullYear": "int",
    "getMonth": "int",
    "getDate": "int",
    "getDayOfMonth": "int",
    "getDayOfWeek": "int",
    "getDayOfYear": "int",
    "getHours": "int",
    "getMinutes": "int",
    "getSeconds": "int",
    "getMilliseconds": "int",
}


def _function_type(name: str) -> str:
    declared = FUNCTION_TYPES.get(name)
    if declared is not None:
        return declared
    if name in _BOOL_RESULTS:
        return "bool"
    return _CALL_TYPES.get(name, DYN)


def chain_path(node: Node, variables: Collection[str]) -> Path | None:
    """The path of a static field walk from a variable (``event.data["id"]`` is
    ``("event", "data", "id")``), or ``None`` when ``node`` is not one."""
    keys: list[str | int] = []
    while True:
        if isinstance(node, Select) and not node.optional:
            keys.append(node.field)
            node = node.operand
        elif isinstance(node, Index) and not node.optional and isinstance(node.index, Lit):
            key = constant(node.index.text) if node.index.type in ("string", "int") else MISSING
            if key is MISSING or isinstance(key, bool) or not isinstance(key, str | int):
                return None
            keys.append(key)
            node = node.operand
        elif isinstance(node, Ident) and node.name in variables and keys:
            keys.append(node.name)
            return tuple(reversed(keys))
        else:
            return None


def paths(node: Node, variables: Collection[str]) -> tuple[Path, ...]:
    """Every static field walk in ``node`` (each once, in order of appearance)."""
    found: dict[Path, None] = {}

    def visit(current: Node) -> None:
        path = chain_path(current, variables)
        if path is not None:
            found[path] = None
            return
        match current:
            case Select(operand=operand) | Unary(operand=operand):
                visit(operand)
            case Index(operand=operand, index=index):
                visit(operand)
                visit(index)
            case Call(args=args, target=target):
                if target is not None:
                    visit(target)
                for arg in args:
                    visit(arg)
            case ListLit(items=items):
                for item in items:
                    visit(item)
            case MapLit(entries=entries):
                for key, value in entries:
                    visit(key)
                    visit(value)
            case Binary(left=left, right=right):
                visit(left)
                visit(right)
            case Cond(cond=cond, then=then, otherwise=otherwise):
                visit(cond)
                visit(then)
                visit(otherwise)

    visit(node)
    return tuple(found)


@dataclass(frozen=True, slots=True)
class Lowered:
    """CEL text (``None`` when the value is unknown) and its static type (``"dyn"`` if not
    known)."""

    text: str | None
    type: str


_UNKNOWN = Lowered(None, DYN)


def _known(text: str, type_: str) -> Lowered:
    return Lowered(text, type_)


def _dyn(part: Lowered) -> str:
    assert part.text is not None
    return part.text if part.type == DYN else f"dyn({part.text})"


def _same_or_dyn(left: Lowered, right: Lowered) -> tuple[str, str]:
    """Operand texts, wrapped in ``dyn()`` when CEL's checker would refuse the pairing."""
    assert left.text is not None and right.text is not None
    if DYN in (left.type, right.type) or (
        left.type == right.type and left.type not in ("list", "map")
    ):
        return left.text, right.text
    return _dyn(left), _dyn(right)


class _Lowering:
    def __init__(self, variables: Collection[str], missing: Collection[Path]) -> None:
        self.variables = variables
        self.missing = missing

    def __call__(self, node: Node) -> Lowered:
        path = chain_path(node, self.variables)
        if path is not None:
            return _UNKNOWN if path in self.missing else _known(_plain(node), DYN)
        match node:
            case Lit(text=text, type=type_):
                return _known(text, type_)
            case Ident(name=name):
                return _known(name, DYN)
            case Select(operand=operand, text=text, optional=optional):
                inner = self(operand)
                if inner.text is None:
                    return _UNKNOWN
                return _known(f"{inner.text}.{'?' if optional else ''}{text}", DYN)
            case Index(operand=operand, index=index, optional=optional):
                inner, key = self(operand), self(index)
                if inner.text is None:
                    return _UNKNOWN
                if key.text is None:
                    return _known("false", "bool")
                return _known(f"{inner.text}[{'?' if optional else ''}{key.text}]", DYN)
            case Call():
                return self.call(node)
            case ListLit(items=items):
                parts = [self(item) for item in items]
                return _known("[" + ", ".join(_or_false(p) for p in parts) + "]", "list")
            case MapLit(entries=entries):
                pairs = [(self(k), self(v)) for k, v in entries]
                text = ", ".join(f"{_or_false(k)}: {_or_false(v)}" for k, v in pairs)
                return _known("{" + text + "}", "map")
            case Unary(op=op, operand=operand):
                inner = self(operand)
                if inner.text is None:
                    return _known("false", "bool")
                return _known(f"{op}({inner.text})", "bool" if op == "!" else inner.type)
            case Binary():
                return self.binary(node)
            case Cond(cond=cond, then=then, otherwise=otherwise):
                c = self(cond)
                if c.text is None:
                    return _UNKNOWN
                a, b = self(then), self(otherwise)
                if a.text is None and b.text is None:
                    return _UNKNOWN
                a = a if a.text is not None else _known("false", "bool")
                b = b if b.text is not None else _known("false", "bool")
                left, right = _same_or_dyn(a, b)
                type_ = a.type if a.type == b.type else DYN
                return _known(f"({c.text} ? {left} : {right})", type_)
        raise AssertionError(f"unexpected node {node!r}")  # pragma: no cover

    def call(self, node: Call) -> Lowered:
        if node.target is None and node.name == "has" and len(node.args) == 1:
            return self.has(node.args[0])
        target = self(node.target) if node.target is not None else None
        if target is not None and node.name in _MACROS:
            if target.text is None:
                return _UNKNOWN  # a comprehension over an unknown range is unknown
            body = ", ".join(_or_false(self(arg)) for arg in node.args)
            return _known(f"{target.text}.{node.name}({body})", _function_type(node.name))
        args = [self(arg) for arg in node.args]
        if any(p.text is None for p in (*args, *([target] if target else []))):
            return _known("0", "int") if node.name in _SIZES else _known("false", "bool")
        joined = ", ".join(p.text or "" for p in args)
        if target is not None:
            return _known(f"{target.text}.{node.name}({joined})", _function_type(node.name))
        return _known(f"{node.name}({joined})", _function_type(node.name))

    def has(self, arg: Node) -> Lowered:
        if isinstance(arg, Select) and not arg.optional:
            parent = chain_path(arg.operand, self.variables)
            if parent is not None and parent in self.missing:
                return _known("false", "bool")
            inner = self(arg.operand) if parent is None else _known(_plain(arg.operand), DYN)
            if inner.text is None:
                return _known("false", "bool")
            return _known(f"has({inner.text}.{arg.text})", "bool")
        return _known("false", "bool")  # pragma: no cover - CEL only accepts has(a.b)

    def binary(self, node: Binary) -> Lowered:
        op = node.op
        left, right = self(node.left), self(node.right)
        if op in ("||", "&&"):
            return self.logical(op, left, right)
        if op in ("==", "!="):
            if left.text is None or right.text is None:
                other = right if left.text is None else left
                if other.text is None:
                    return _known("false" if op == "==" else "true", "bool")
                return _known(f"({_dyn(other)} {op} null)", "bool")
            a, b = _same_or_dyn(left, right)
            return _known(f"({a} {op} {b})", "bool")
        if op in ORDERINGS:
            if left.text is None or right.text is None:
                first_unknown = left.text is None
                answer = first_unknown if op in ("<", "<=") else not first_unknown
                return _known("true" if answer else "false", "bool")
            if left.type == right.type and left.type in _ORDERED:
                return _known(f"({left.text} {op} {right.text})", "bool")
            if left.type in _NUMBERS and right.type in _NUMBERS:
                return _known(f"({_dyn(left)} {op} {_dyn(right)})", "bool")
            guarded = _guarded_ordering(op, node, left, right)
            if guarded is not None:
                return _known(guarded, "bool")
            return _known(f"{ORDERINGS[op]}({left.text}, {right.text})", "bool")
        if op == "+":
            if left.text is None or right.text is None:
                other = right if left.text is None else left
                return other if other.text is not None else _known("false", "bool")
            if left.type == right.type and left.type in _ADDABLE:
                return _known(f"({left.text} + {right.text})", left.type)
            if {left.type, right.type} <= {"timestamp", "duration"}:
                timed = "timestamp" if "timestamp" in (left.type, right.type) else "duration"
                return _known(f"({left.text} + {right.text})", timed)
            guarded = _guarded_concatenation(left, right)
            if guarded is not None:
                return _known(guarded, "string")
            return _known(f"_inngest_add({left.text}, {right.text})", _sum_type(left, right))
        if left.text is None or right.text is None:
            return _known("false", "bool")  # in, -, *, /, % with an unknown operand
        if op == "in":
            a = _dyn(left) if DYN not in (left.type, right.type) else left.text
            return _known(f"({a} in {right.text})", "bool")
        if left.type == right.type:
            type_ = left.type
        else:
            type_ = NOT_BOOL if {left.type, right.type} & _NUMBERS else DYN
        return _known(f"({left.text} {op} {right.text})", type_)

    def logical(self, op: str, left: Lowered, right: Lowered) -> Lowered:
        if left.type == right.type == "bool":
            return _known(f"({left.text} {op} {right.text})", "bool")
        if op == "||":
            if left.text is None:
                return right  # unknown is falsy: the result is the last operand
            if right.text is None:
                # the first truthy operand, else the unknown one (which evaluates as false)
                return _known(f"_inngest_or({left.text}, false)", _either(left.type, "bool"))
            return _known(f"_inngest_or({left.text}, {right.text})", _either(left.type, right.type))
        if left.text is None:
            return _UNKNOWN  # unknown is falsy: it is the result
        if right.text is None:
            return _known(f"_inngest_and({left.text}, false)", _either(left.type, "bool"))
        return _known(f"_inngest_and({left.text}, {right.text})", _either(left.type, right.type))


_ZEROS: dict[str, Any] = {"int": 0, "uint": 0, "double": 0.0, "string": ""}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _literal(node: Node) -> Lit | None:
    """The literal ``node`` is, also under ``dyn(...)`` (what substituted matchers contain)."""
    if (
        isinstance(node, Call)
        and node.name == "dyn"
        and node.target is None
        and len(node.args) == 1
    ):
        node = node.args[0]
    return node if isinstance(node, Lit) else None


def _guarded_ordering(op: str, node: Binary, left: Lowered, right: Lowered) -> str | None:
    """``x < 5`` as native CEL guarded for a null ``x`` (then it is ``0 < 5``, decided here):
    cheaper than the ``_inngest_lt`` call when one side is a number or text literal."""
    for value_side, literal_side, literal_node in (
        (left, right, _literal(node.right)),
        (right, left, _literal(node.left)),
    ):
        if literal_node is None or literal_node.type not in _ZEROS:
            continue
        if value_side.type not in (DYN, NOT_BOOL):
            continue
        literal = constant(literal_node.text)
        if literal is MISSING or isinstance(literal, bool):
            return None
        zero = _ZEROS[literal_node.type]
        pair = (zero, literal) if value_side is left else (literal, zero)
        when_null = "true" if _COMPARE[op](*pair) else "false"
        x, lit = value_side.text, literal_side.text
        compared = f"{x} {op} {lit}" if value_side is left else f"{lit} {op} {x}"
        return f"({x} == null ? {when_null} : {compared})"
    return None


def _guarded_concatenation(left: Lowered, right: Lowered) -> str | None:
    """``text + x`` (or ``x + text``) as native CEL when ``x`` is text at run time, the common
    case of a composite key; ``_inngest_add`` only for the other types."""
    if left.type == "string" and right.type == DYN:
        x = right.text
    elif right.type == "string" and left.type == DYN:
        x = left.text
    else:
        return None
    native = f"{left.text} + {right.text}"
    return f"(type({x}) == string ? {native} : _inngest_add({left.text}, {right.text}))"


def _sum_type(left: Lowered, right: Lowered) -> str:
    """The type of a loosely typed ``+``: text when either side is text or when the sides'
    types are known and differ (they are then written out and concatenated); some non-boolean
    when one side's type is known; unknown otherwise."""
    types = {left.type, right.type}
    if "string" in types or DYN not in types:
        return "string"
    return NOT_BOOL if types != {DYN} else DYN


def _either(a: str, b: str) -> str:
    return a if a == b else DYN


def _or_false(part: Lowered) -> str:
    return part.text if part.text is not None else "false"


def _plain(node: Node) -> str:
    """The CEL text of a static field walk."""
    match node:
        case Select(operand=operand, text=text):
            return f"{_plain(operand)}.{text}"
        case Index(operand=operand, index=index):
            return f"{_plain(operand)}[{_plain(index)}]"
        case Lit(text=text):
            return text
        case Ident(name=name):
            return name
    raise AssertionError(f"not a field walk: {node!r}")  # pragma: no cover


def lower(node: Node, variables: Collection[str], missing: Collection[Path] = ()) -> str | None:
    """CEL text for ``node`` when exactly the field walks in ``missing`` are absent; ``None``
    when the result is then missing (Inngest evaluates it as false)."""
    return _Lowering(variables, missing)(node).text


def static_type(node: Node, variables: Collection[str]) -> str:
    """The type of ``node``'s value when every field is present: ``"bool"``, another CEL type
    name, or ``"dyn"`` when it depends on the data."""
    return _Lowering(variables, ())(node).type
