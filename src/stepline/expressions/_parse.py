"""A CEL parser into a small syntax tree, and its printer.

It runs only on text the CEL compiler has already accepted as syntax, so it never has to report
errors well: anything it does not handle (message construction, optional map entries) raises
:class:`Unsupported`, and the caller keeps CEL's own semantics for that expression. Printing a
tree gives CEL text back, fully parenthesized.
"""

from __future__ import annotations

from dataclasses import dataclass

from stepline.expressions._tokens import Kind, Token, field_name, tokenize


class Unsupported(Exception):
    """The expression uses syntax this parser does not model."""


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal; ``type`` is ``int``, ``uint``, ``double``, ``string``, ``bytes``, ``bool`` or
    ``null``, ``text`` is the literal as written."""

    text: str
    type: str


@dataclass(frozen=True, slots=True)
class Ident:
    name: str


@dataclass(frozen=True, slots=True)
class Select:
    """``operand.field`` (``optional``: ``operand.?field``); ``text`` is the field as written."""

    operand: Node
    field: str
    text: str
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Index:
    """``operand[index]`` (``optional``: ``operand[?index]``)."""

    operand: Node
    index: Node
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """``name(args)``, or ``target.name(args)`` for a method call or a macro."""

    name: str
    args: tuple[Node, ...]
    target: Node | None = None


@dataclass(frozen=True, slots=True)
class ListLit:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit:
    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # "!" or "-"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # || && == != < <= > >= in + - * / %
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Cond:
    cond: Node
    then: Node
    otherwise: Node


Node = Lit | Ident | Select | Index | Call | ListLit | MapLit | Unary | Binary | Cond

_RELATIONS = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})


def _literal_type(token: Token) -> str:
    if token.kind is Kind.STRING:
        return "string"
    if token.kind is Kind.BYTES:
        return "bytes"
    text = token.text.lower()
    if text.endswith("u"):
        return "uint"
    if not text.startswith("0x") and any(c in text for c in ".e"):
        return "double"
    return "int"


class _Parser:
    def __init__(self, tokens: tuple[Token, ...]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def at(self, text: str, offset: int = 0) -> bool:
        token = self.peek(offset)
        return token is not None and token.text == text and token.kind in (Kind.OP, Kind.IDENT)

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise Unsupported("unexpected end of expression")
        self.i += 1
        return token

    def expect(self, text: str) -> None:
        if not self.at(text):
            raise Unsupported(f"expected {text!r}")
        self.i += 1

    def expr(self) -> Node:
        cond = self.logical("||")
        if self.at("?"):
            self.i += 1
            then = self.logical("||")
            self.expect(":")
            return Cond(cond, then, self.expr())
        return cond

    def logical(self, op: str) -> Node:
        node = self.logical("&&") if op == "||" else self.relation()
        while self.at(op):
            self.i += 1
            right = self.logical("&&") if op == "||" else self.relation()
            node = Binary(op, node, right)
        return node

    def relation(self) -> Node:
        node = self.addition()
        while (token := self.peek()) is not None and token.text in _RELATIONS:
            self.i += 1
            node = Binary(token.text, node, self.addition())
        return node

    def addition(self) -> Node:
        node = self.multiplication()
        while (token := self.peek()) is not None and token.kind is Kind.OP and token.text in "+-":
            self.i += 1
            node = Binary(token.text, node, self.multiplication())
        return node

    def multiplication(self) -> Node:
        node = self.unary()
        while (token := self.peek()) is not None and token.kind is Kind.OP and token.text in "*/%":
            self.i += 1
            node = Binary(token.text, node, self.unary())
        return node

    def unary(self) -> Node:
        token = self.peek()
        if token is not None and token.kind is Kind.OP and token.text in ("!", "-"):
            self.i += 1
            return Unary(token.text, self.unary())
        return self.member()

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.at("."):
                self.i += 1
                optional = self.at("?")
                if optional:
                    self.i += 1
                name = self.take()
                if name.kind not in (Kind.IDENT, Kind.QUOTED_IDENT):
                    raise Unsupported("expected a field name")
                if self.at("(") and not optional:
                    self.i += 1
                    node = Call(name.text, self.arguments(")"), node)
                else:
                    node = Select(node, field_name(name), name.text, optional)
            elif self.at("["):
                self.i += 1
                optional = self.at("?")
                if optional:
                    self.i += 1
                index = self.expr()
                self.expect("]")
                node = Index(node, index, optional)
            elif self.at("{"):
                raise Unsupported("message construction")
            else:
                return node

    def arguments(self, close: str) -> tuple[Node, ...]:
        items: list[Node] = []
        while not self.at(close):
            items.append(self.expr())
            if not self.at(","):
                break
            self.i += 1
        self.expect(close)
        return tuple(items)

    def primary(self) -> Node:
        token = self.take()
        if token.kind in (Kind.STRING, Kind.BYTES, Kind.NUMBER):
            return Lit(token.text, _literal_type(token))
        if token.kind is Kind.IDENT:
            if token.text in ("true", "false"):
                return Lit(token.text, "bool")
            if token.text == "null":
                return Lit(token.text, "null")
            if self.at("("):
                self.i += 1
                return Call(token.text, self.arguments(")"))
            return Ident(token.text)
        if token.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if token.text == "[":
            return ListLit(self.arguments("]"))
        if token.text == "{":
            entries: list[tuple[Node, Node]] = []
            while not self.at("}"):
                if self.at("?"):
                    raise Unsupported("optional map entry")
                key = self.expr()
                self.expect(":")
                entries.append((key, self.expr()))
                if not self.at(","):
                    break
                self.i += 1
            self.expect("}")
            return MapLit(tuple(entries))
        raise Unsupported(f"unexpected {token.text!r}")


def parse(text: str) -> Node:
    """Parse CEL ``text`` (already accepted by the CEL compiler); raise :class:`Unsupported`."""
    parser = _Parser(tokenize(text))
    node = parser.expr()
    if parser.peek() is not None:
        raise Unsupported("trailing tokens")
    return node


def _join(nodes: tuple[Node, ...]) -> str:
    return ", ".join(emit(node) for node in nodes)


def emit(node: Node) -> str:
    """CEL text for ``node``."""
    match node:
        case Lit(text=text):
            return text
        case Ident(name=name):
            return name
        case Select(operand=operand, text=text, optional=optional):
            return f"{emit(operand)}.{'?' if optional else ''}{text}"
        case Index(operand=operand, index=index, optional=optional):
            return f"{emit(operand)}[{'?' if optional else ''}{emit(index)}]"
        case Call(name=name, args=args, target=None):
            return f"{name}({_join(args)})"
        case Call(name=name, args=args, target=target) if target is not None:
            return f"{emit(target)}.{name}({_join(args)})"
        case ListLit(items=items):
            return f"[{_join(items)}]"
        case MapLit(entries=entries):
            return "{" + ", ".join(f"{emit(k)}: {emit(v)}" for k, v in entries) + "}"
        case Unary(op=op, operand=operand):
            return f"{op}({emit(operand)})"
        case Binary(op=op, left=left, right=right):
            return f"({emit(left)} {op} {emit(right)})"
        case Cond(cond=cond, then=then, otherwise=otherwise):
            return f"({emit(cond)} ? {emit(then)} : {emit(otherwise)})"
    raise Unsupported(f"cannot print {node!r}")  # pragma: no cover - exhaustive above
