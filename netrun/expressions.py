"""Salvo condition expressions: text <-> `netrun_sim.SalvoConditionTerm` (SPEC "Salvo Condition
Expression Language").

Grammar (precedence `not` > `and` > `or`; `and`/`or` chains are n-ary):

    or    := and ("or" and)*
    and   := not ("and" not)*
    not   := "not" not | atom
    atom  := "(" or ")" | STATE "(" PORT ")" | "count" "(" PORT ")" CMP INT | "true" | "false"
    STATE := "nonempty" | "empty" | "full" | "nonfull"
    CMP   := "==" | "<" | ">" | "<=" | ">="
    PORT  := a name ([A-Za-z_][A-Za-z0-9_-]*) or a quoted string ('...' or "...")

A chain `a and b and c` is one `And` of three terms; a parenthesized group stays its own
term, so `to_text` can write any term back exactly: `parse(to_text(t))` is `t`. Only the
degenerate `And`/`Or` of fewer than two terms, which the grammar cannot spell, are written
as their equivalent (`and()` as `true`, `or()` as `false`, a single term as itself).

The parser is a hand-written tokenizer and recursive descent with a nesting limit, so no
input recurses without bound; every error is an `ExpressionError` showing the expression,
the 1-based column and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import netrun_sim as ns

from .errors import ExpressionError
from .graphio import _NUMERIC, _NUMERIC_BUILD, _STATE_BUILD
from .graphio import _STATES as _STATE_WORDS  # PortState attribute name -> word

MAX_DEPTH = 100  # nesting of parentheses and `not` (each level is a few Python frames)
MAX_COUNT = 2**63 - 1  # a TOML integer, and within netrun-sim's u64

_SHORT = {"==": "eq", "<": "lt", ">": "gt", "<=": "le", ">=": "ge"}  # operator -> graphio's short name
_COMPARE = {op: _NUMERIC_BUILD[short] for op, short in _SHORT.items()}
_OPERATOR = {kind: op for op, short in _SHORT.items() for kind in _NUMERIC if _NUMERIC[kind] == short}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_TOKEN = re.compile(rf"""\s*(?:(?P<name>{_NAME.pattern})|(?P<int>[0-9]+)|(?P<op><=|>=|==|[<>()])
                        |(?P<str>'[^']*'|"[^"]*"))""", re.VERBOSE)
_PRECEDENCE = {"Or": 1, "And": 2, "Not": 3}


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "int", "op", "str", "end"
    text: str
    column: int  # 1-based


def _describe(token: _Token) -> str:
    return "the end of the expression" if token.kind == "end" else repr(token.text)


def _tokenize(text: str, where: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        match = _TOKEN.match(text, pos)
        if match is None or match.lastgroup is None:
            rest = text[pos:].lstrip()
            if not rest:
                tokens.append(_Token("end", "", len(text) + 1))
                return tokens
            column = len(text) - len(rest) + 1
            raise _error(text, column, "a name, a quoted port name, a number, '(', ')' or a comparison "
                         "(==, <, >, <=, >=)", f"{rest[0]!r}", where)
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind) + 1))
        pos = match.end()


def _error(text: str, column: int, expected: str, found: str, where: str) -> ExpressionError:
    prefix = f"{where}: " if where else ""
    return ExpressionError(f"{prefix}at column {column} in {text!r}: expected {expected}, found {found}",
                           expression=text, column=column, expected=expected)


class _Parser:
    def __init__(self, text: str, ports: set[str] | None, where: str) -> None:
        self.text = text
        self.ports = ports
        self.where = where
        self.tokens = _tokenize(text, where)
        self.pos = 0
        self.depth = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def fail(self, expected: str) -> ExpressionError:
        return _error(self.text, self.token.column, expected, _describe(self.token), self.where)

    def take(self, kind: str, text: str | None = None) -> bool:
        token = self.token
        if token.kind == kind and (text is None or token.text == text):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, text: str, expected: str) -> None:
        if not self.take(kind, text):
            raise self.fail(expected)

    def parse(self) -> ns.SalvoConditionTerm:
        term = self.or_()
        if self.token.kind != "end":
            raise self.fail("'and', 'or' or the end of the expression")
        return term

    def or_(self) -> ns.SalvoConditionTerm:
        terms = [self.and_()]
        while self.take("name", "or"):
            terms.append(self.and_())
        return terms[0] if len(terms) == 1 else ns.SalvoConditionTerm.or_(terms)

    def and_(self) -> ns.SalvoConditionTerm:
        terms = [self.not_()]
        while self.take("name", "and"):
            terms.append(self.not_())
        return terms[0] if len(terms) == 1 else ns.SalvoConditionTerm.and_(terms)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            prefix = f"{self.where}: " if self.where else ""
            raise ExpressionError(f"{prefix}the expression nests deeper than {MAX_DEPTH} levels of parentheses "
                                  f"and 'not' at column {self.token.column} in {self.text!r}",
                                  expression=self.text, column=self.token.column)

    def not_(self) -> ns.SalvoConditionTerm:
        if self.take("name", "not"):
            self.nest()
            term = ns.SalvoConditionTerm.not_(self.not_())
            self.depth -= 1
            return term
        return self.atom()

    def atom(self) -> ns.SalvoConditionTerm:
        token = self.token
        if self.take("op", "("):
            self.nest()
            term = self.or_()
            self.expect("op", ")", f"')' to close the '(' at column {token.column}")
            self.depth -= 1
            return term
        if token.kind == "name" and token.text in ("true", "false"):
            self.pos += 1
            return ns.SalvoConditionTerm.true_() if token.text == "true" else ns.SalvoConditionTerm.false_()
        if token.kind == "name" and token.text in _STATE_BUILD:
            self.pos += 1
            return ns.SalvoConditionTerm.port(self.port(), _STATE_BUILD[token.text]())
        if self.take("name", "count"):
            port = self.port()
            operator = self.token
            if operator.kind != "op" or operator.text not in _COMPARE:
                raise self.fail("a comparison (==, <, >, <=, >=)")
            self.pos += 1
            number = self.token
            if number.kind != "int" or len(number.text) > 19 or int(number.text) > MAX_COUNT:
                raise self.fail(f"a whole number from 0 to {MAX_COUNT}")
            self.pos += 1
            return ns.SalvoConditionTerm.port(port, _COMPARE[operator.text](int(number.text)))
        raise self.fail("nonempty(port), empty(port), full(port), nonfull(port), count(port), true, false, "
                        "'not' or '('")

    def port(self) -> str:
        self.expect("op", "(", "'('")
        token = self.token
        if token.kind == "name":
            name = token.text
        elif token.kind == "str":
            name = token.text[1:-1]
        else:
            raise self.fail("a port name")
        if self.ports is not None and name not in self.ports:
            prefix = f"{self.where}: " if self.where else ""
            known = ", ".join(sorted(self.ports)) or "none"
            raise ExpressionError(f"{prefix}unknown port {name!r} at column {token.column} in {self.text!r} "
                                  f"(ports: {known})", expression=self.text, column=token.column, port=name)
        self.pos += 1
        self.expect("op", ")", "')'")
        return name


def parse(text: str, *, ports: set[str] | None = None, where: str = "") -> ns.SalvoConditionTerm:
    """The term that `text` spells.

    `ports`, when given, are the port names the expression may use; `where` prefixes
    error messages (e.g. the node and condition).

    Raises:
        ExpressionError: a syntax error (with the column and what was expected), an
            unknown port (named, with the known ones), or nesting deeper than MAX_DEPTH.
    """
    if not isinstance(text, str):
        prefix = f"{where}: " if where else ""
        raise ExpressionError(f"{prefix}a salvo condition expression must be a string, got {text!r}",
                              expression=repr(text))
    return _Parser(text, ports, where).parse()


def _port_text(name: str) -> str:
    if _NAME.fullmatch(name):
        return name
    if "'" not in name:
        return f"'{name}'"
    if '"' not in name:
        return f'"{name}"'
    raise ExpressionError(f"port name {name!r} has both kinds of quote and cannot be written in an expression",
                          port=name)


def _node_text(term: ns.SalvoConditionTerm) -> tuple[str, int]:
    """(text, precedence) of `term`; atoms have precedence 4."""
    kind = term.kind
    if kind == "True":
        return "true", 4
    if kind == "False":
        return "false", 4
    if kind == "Port":
        port, state = _port_text(term.get_port_name()), term.get_port_state()
        if isinstance(state, ns.PortStateNumeric):
            return f"count({port}) {_OPERATOR[state.kind]} {state.value}", 4
        return next(f"{w}({port})" for name, w in _STATE_WORDS.items() if state == getattr(ns.PortState, name)), 4
    if kind == "Not":
        inner, level = _node_text(term.get_inner())
        return f"not ({inner})" if level < _PRECEDENCE["Not"] else f"not {inner}", _PRECEDENCE["Not"]
    terms = term.get_terms()
    if len(terms) < 2:  # the grammar has no n-ary form with fewer than two terms: write the equivalent
        return _node_text(terms[0]) if terms else ("true" if kind == "And" else "false", 4)
    parts = []
    for child in terms:
        text, level = _node_text(child)
        # A child of the same kind keeps its parentheses: they make it a term of its own.
        parts.append(f"({text})" if level <= _PRECEDENCE[kind] else text)
    return f" {kind.lower()} ".join(parts), _PRECEDENCE[kind]


def to_text(term: ns.SalvoConditionTerm) -> str:
    """`term` as an expression, with the fewest parentheses that keep its structure.

    Raises:
        ExpressionError: a port name with both kinds of quote.
    """
    return _node_text(term)[0]
