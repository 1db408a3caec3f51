"""The safe expression language of mapping routes.

A route's ``from`` is a small arithmetic expression over named sources (audio features,
``param.<name>``, ``time``, ...). The text is read by the tokenizer and recursive-descent parser
below into a tree of plain nodes, and the tree is turned into a chain of closures that compute a
float from an environment (a dict of source name -> value). Nothing here ever calls Python's
``eval``/``exec``/``compile`` or the ``ast`` module: only numbers, the listed operators, known
function names and plain source names exist in the language, so there is nothing to escape to.

Grammar (lowest precedence first)::

    expr       := additive (CMP additive)?           CMP: < <= > >= == !=   (result 1.0 or 0.0)
    additive   := term (('+' | '-') term)*
    term       := unary (('*' | '/' | '%') unary)*
    unary      := ('-' | '+') unary | power
    power      := primary (('^' | '**') unary)?        right-associative: 2^3^2 = 2^9
    primary    := NUMBER | NAME | NAME '.' NAME | NAME '[' INTEGER ']'
                | FUNC '(' expr (',' expr)* ')' | '(' expr ')'

Hostile input is bounded: at most :data:`MAX_LENGTH` characters, :data:`MAX_TOKENS` tokens and
:data:`MAX_DEPTH` levels of nesting, so parsing cannot hang or exhaust the stack. Evaluation never
raises: a domain error (``sqrt(-1)``, ``log(0)``, ``x / 0``, ``x % 0``) yields NaN and an overflow
yields inf; the caller decides what to do with a non-finite result (routes hold their last value).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Union

MAX_LENGTH = 1000   # characters
MAX_TOKENS = 400
MAX_DEPTH = 32      # nested parentheses / unary operators / exponent chains

NAN = float("nan")
INF = float("inf")


class ExprError(ValueError):
    """A malformed expression. ``column`` is 1-based within the expression text."""

    def __init__(self, message: str, column: int | None = None):
        self.message = message
        self.column = column
        super().__init__(message if column is None else f"{message} (column {column})")


# ---------------------------------------------------------------------------------------------
# Tree nodes


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    """A source reference: ``rms``, ``param.trails``, ``chroma`` (bare vector)."""

    name: str
    column: int


@dataclass(frozen=True)
class Index:
    """One element of a vector source: ``chroma[3]``."""

    name: str
    index: int
    column: int


@dataclass(frozen=True)
class Unary:
    op: str
    operand: "Node"


@dataclass(frozen=True)
class Binary:
    op: str
    left: "Node"
    right: "Node"


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple
    column: int


Node = Union[Num, Name, Index, Unary, Binary, Call]


# ---------------------------------------------------------------------------------------------
# Functions and constants


def _clamp(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


def _smoothstep(e0: float, e1: float, x: float) -> float:
    if e1 == e0:
        return 0.0 if x < e0 else 1.0
    t = _clamp((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _floor(x: float) -> float:
    return float(math.floor(x))


def _fract(x: float) -> float:
    return x - math.floor(x)


def _sign(x: float) -> float:
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


#: name -> (python function, minimum args, maximum args or None for variadic)
FUNCTIONS: dict[str, tuple[Callable[..., float], int, int | None]] = {
    "sin": (math.sin, 1, 1),
    "cos": (math.cos, 1, 1),
    "tan": (math.tan, 1, 1),
    "abs": (abs, 1, 1),
    "sign": (_sign, 1, 1),
    "min": (min, 2, None),
    "max": (max, 2, None),
    "clamp": (_clamp, 3, 3),              # clamp(x, lo, hi)
    "mix": (lambda a, b, t: a + (b - a) * t, 3, 3),   # mix(a, b, t) = a at t=0, b at t=1
    "smoothstep": (_smoothstep, 3, 3),    # smoothstep(edge0, edge1, x), GLSL order
    "step": (lambda edge, x: 1.0 if x >= edge else 0.0, 2, 2),  # step(edge, x), GLSL order
    "pow": (math.pow, 2, 2),
    "sqrt": (math.sqrt, 1, 1),
    "exp": (math.exp, 1, 1),
    "log": (math.log, 1, 1),              # natural logarithm
    "floor": (_floor, 1, 1),
    "fract": (_fract, 1, 1),
}

CONSTANTS: dict[str, float] = {"pi": math.pi}

#: Names that may be followed by ``.name`` (``param.trails``). Everything else is a plain name.
NAMESPACES = ("param", "lfo")

_MATH_ERRORS = (ValueError, OverflowError, ZeroDivisionError, TypeError)


# ---------------------------------------------------------------------------------------------
# Tokenizer

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|<=|>=|==|!=|[-+*/%^<>(),.\[\]])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str      # "num" | "name" | "op" | "end"
    text: str
    column: int    # 1-based


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; raise :class:`ExprError` on anything outside the language."""
    if not isinstance(text, str):
        raise ExprError("an expression must be a string")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression is too long ({len(text)} characters, at most {MAX_LENGTH})")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            if ch in "\"'":
                raise ExprError("strings are not allowed in expressions", pos + 1)
            raise ExprError(f"unexpected character {ch!r}", pos + 1)
        kind = m.lastgroup
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos + 1))
            if len(tokens) > MAX_TOKENS:
                raise ExprError(f"expression is too long (more than {MAX_TOKENS} tokens)")
        pos = m.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# ---------------------------------------------------------------------------------------------
# Parser

_CMP = ("<", "<=", ">", ">=", "==", "!=")


class _Parser:
    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    # helpers
    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        tok = self.peek()
        if tok.kind == "op" and tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> Token:
        tok = self.peek()
        if tok.kind == "op" and tok.text == text:
            self.i += 1
            return tok
        raise ExprError(f"expected {text!r} but found {_describe(tok)}", tok.column)

    def enter(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExprError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)",
                            tok.column)

    # grammar
    def parse(self) -> Node:
        node = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            raise ExprError(f"unexpected {_describe(tok)}", tok.column)
        return node

    def expr(self) -> Node:
        self.enter(self.peek())
        left = self.additive()
        tok = self.peek()
        if tok.kind == "op" and tok.text in _CMP:
            self.take()
            left = Binary(tok.text, left, self.additive())
            nxt = self.peek()
            if nxt.kind == "op" and nxt.text in _CMP:
                raise ExprError("comparisons cannot be chained; use min/max or step", nxt.column)
        self.depth -= 1
        return left

    def additive(self) -> Node:
        node = self.term()
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text in ("+", "-"):
                self.take()
                node = Binary(tok.text, node, self.term())
            else:
                return node

    def term(self) -> Node:
        node = self.unary()
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.text in ("*", "/", "%"):
                self.take()
                node = Binary(tok.text, node, self.unary())
            else:
                return node

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("-", "+"):
            self.take()
            self.enter(tok)
            operand = self.unary()
            self.depth -= 1
            return Unary("-", operand) if tok.text == "-" else operand
        return self.power()

    def power(self) -> Node:
        base = self.primary()
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("^", "**"):
            self.take()
            self.enter(tok)
            exponent = self.unary()
            self.depth -= 1
            return Binary("^", base, exponent)
        return base

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            value = float(tok.text)
            if not math.isfinite(value):
                raise ExprError(f"number {tok.text} is too large", tok.column)
            return Num(value)
        if tok.kind == "name":
            return self.name(tok)
        if tok.kind == "op" and tok.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        raise ExprError(f"unexpected {_describe(tok)}", tok.column)

    def name(self, tok: Token) -> Node:
        name = tok.text
        nxt = self.peek()
        if nxt.kind == "op" and nxt.text == "(":
            return self.call(tok)
        if name in FUNCTIONS:
            raise ExprError(f"function {name!r} needs arguments: {name}(...)", tok.column)
        if nxt.kind == "op" and nxt.text == ".":
            self.take()
            member = self.take()
            if name not in NAMESPACES:
                raise ExprError(f"attribute access is not allowed ({name}.{member.text})",
                                nxt.column)
            if member.kind != "name":
                raise ExprError(f"expected a name after '{name}.'", member.column)
            name = f"{name}.{member.text}"
            after = self.peek()
            if after.kind == "op" and after.text in (".", "("):
                raise ExprError(f"unexpected {_describe(after)} after {name!r}", after.column)
        elif name in CONSTANTS:
            return Num(CONSTANTS[name])
        if self.accept("["):
            idx = self.take()
            if idx.kind != "num" or not re.fullmatch(r"\d+", idx.text):
                raise ExprError("an index must be a whole number, e.g. chroma[3]", idx.column)
            self.expect("]")
            return Index(name, int(idx.text), tok.column)
        return Name(name, tok.column)

    def call(self, tok: Token) -> Node:
        func = tok.text
        if func not in FUNCTIONS:
            raise ExprError(f"unknown function {func!r}" + _suggest(func, FUNCTIONS), tok.column)
        self.expect("(")
        self.enter(tok)
        args = [self.expr()]
        while self.accept(","):
            args.append(self.expr())
        self.expect(")")
        self.depth -= 1
        _, lo, hi = FUNCTIONS[func]
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
            raise ExprError(f"{func}() takes {want} argument{'s' if want != '1' else ''}, "
                            f"got {len(args)}", tok.column)
        return Call(func, tuple(args), tok.column)


def _describe(tok: Token) -> str:
    return "end of expression" if tok.kind == "end" else repr(tok.text)


def _suggest(name: str, candidates) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse(text: str) -> Node:
    """Parse an expression into a tree; raise :class:`ExprError` (with a column) if malformed."""
    tokens = tokenize(text)
    if tokens[0].kind == "end":
        raise ExprError("empty expression", 1)
    return _Parser(tokens).parse()


def references(node: Node) -> list[Union[Name, Index]]:
    """Every source reference in the tree (``Name`` and ``Index`` nodes), in reading order."""
    out: list[Union[Name, Index]] = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (Name, Index)):
            out.append(n)
        elif isinstance(n, Unary):
            stack.append(n.operand)
        elif isinstance(n, Binary):
            stack.extend((n.right, n.left))
        elif isinstance(n, Call):
            stack.extend(reversed(n.args))
    return out


# ---------------------------------------------------------------------------------------------
# Evaluation: the tree becomes a chain of closures over an environment dict.

Env = Mapping[str, Any]
Evaluator = Callable[[Env], float]


def _div(a: float, b: float) -> float:
    return a / b if b != 0.0 else NAN


def _mod(a: float, b: float) -> float:
    return a % b if b != 0.0 else NAN


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return INF
    except ValueError:
        return NAN


_BINARY: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _div,
    "%": _mod,
    "^": _pow,
    "<": lambda a, b: 1.0 if a < b else 0.0,
    "<=": lambda a, b: 1.0 if a <= b else 0.0,
    ">": lambda a, b: 1.0 if a > b else 0.0,
    ">=": lambda a, b: 1.0 if a >= b else 0.0,
    "==": lambda a, b: 1.0 if a == b else 0.0,
    "!=": lambda a, b: 1.0 if a != b else 0.0,
}


def _guarded(fn: Callable[..., float]) -> Callable[..., float]:
    def call(*args: float) -> float:
        try:
            return float(fn(*args))
        except OverflowError:
            return INF
        except _MATH_ERRORS:
            return NAN
    return call


def compile_expr(node: Node) -> Evaluator:
    """Turn a parsed tree into ``f(env) -> float``; sub-trees without sources are folded once.

    ``env`` maps source names to floats (vectors such as ``chroma`` to 1-D arrays, read through
    ``Index`` nodes). The returned function never raises for finite or non-finite inputs; it may
    return NaN or inf.
    """
    fn, const = _build(node)
    if const:
        value = fn({})
        return lambda env: value
    return fn


def _build(node: Node) -> tuple[Evaluator, bool]:
    if isinstance(node, Num):
        value = float(node.value)
        return (lambda env: value), True
    if isinstance(node, Name):
        name = node.name
        return (lambda env: env[name]), False
    if isinstance(node, Index):
        name, i = node.name, node.index
        return (lambda env: float(env[name][i])), False
    if isinstance(node, Unary):
        f, c = _build(node.operand)
        return (lambda env: -f(env)), c
    if isinstance(node, Binary):
        op = _BINARY[node.op]
        lf, lc = _build(node.left)
        rf, rc = _build(node.right)
        return _fold((lambda env: op(lf(env), rf(env))), lc and rc)
    if isinstance(node, Call):
        fn = _guarded(FUNCTIONS[node.func][0])
        parts = [_build(a) for a in node.args]
        const = all(c for _, c in parts)
        fs = [f for f, _ in parts]
        if len(fs) == 1:
            (a,) = fs
            return _fold((lambda env: fn(a(env))), const)
        if len(fs) == 2:
            a, b = fs
            return _fold((lambda env: fn(a(env), b(env))), const)
        if len(fs) == 3:
            a, b, c3 = fs
            return _fold((lambda env: fn(a(env), b(env), c3(env))), const)
        return _fold((lambda env: fn(*[f(env) for f in fs])), const)
    raise TypeError(f"not an expression node: {node!r}")  # pragma: no cover - internal misuse


def _fold(fn: Evaluator, const: bool) -> tuple[Evaluator, bool]:
    if const:
        value = fn({})
        return (lambda env: value), True
    return fn, False


def evaluate(node_or_text: Union[Node, str], env: Env | None = None) -> float:
    """Convenience: parse (if given text) and evaluate once. Not for the per-hop path."""
    node = parse(node_or_text) if isinstance(node_or_text, str) else node_or_text
    return compile_expr(node)(env or {})
