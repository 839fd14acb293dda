"""Salvo condition expressions: parsing, precedence, writing back, and errors that point at the column."""

from __future__ import annotations

import pickle
import random

import pytest

import netrun
from netrun import PortState, SalvoConditionTerm as Term
from netrun.errors import ExpressionError
from netrun.expressions import MAX_DEPTH, parse, to_text
from netrun.graphio import term_to_data


def data(text: str, **kwargs) -> object:
    return term_to_data(parse(text, **kwargs))


def port(name: str, state: object) -> list:
    return ["port", name, state]


A, B, C = port("a", "nonempty"), port("b", "nonempty"), port("c", "nonempty")


@pytest.mark.parametrize(("text", "expected"), [
    ("nonempty(in1)", port("in1", "nonempty")),
    ("empty(x)", port("x", "empty")),
    ("full(x)", port("x", "full")),
    ("nonfull(x)", port("x", "nonfull")),
    ("count(x) >= 3", port("x", ["ge", 3])),
    ("count(x) == 0", port("x", ["eq", 0])),
    ("count(x) <= 2", port("x", ["le", 2])),
    ("count(x) < 2", port("x", ["lt", 2])),
    ("count(x) > 2", port("x", ["gt", 2])),
    ("count(x)>=3", port("x", ["ge", 3])),
    ("true", True),
    ("false", False),
    ("  nonempty( x )  ", port("x", "nonempty")),
    ("nonempty('in put')", port("in put", "nonempty")),
    ('nonempty("it\'s")', port("it's", "nonempty")),
    ("nonempty(my-port_2)", port("my-port_2", "nonempty")),
])
def test_each_atom_parses_to_its_term(text, expected):
    assert data(text) == expected


def test_not_binds_tighter_than_and_which_binds_tighter_than_or():
    assert data("nonempty(a) or nonempty(b) and nonempty(c)") == ["or", [A, ["and", [B, C]]]]
    assert data("not nonempty(a) and nonempty(b)") == ["and", [["not", A], B]]
    assert data("not not nonempty(a)") == ["not", ["not", A]]


def test_parentheses_group():
    assert data("(nonempty(a) or nonempty(b)) and not full(c)") == [
        "and", [["or", [A, B]], ["not", port("c", "full")]]]
    assert data("not (nonempty(a) and nonempty(b))") == ["not", ["and", [A, B]]]


def test_a_chain_is_one_n_ary_term_and_a_parenthesized_group_stays_its_own_term():
    assert data("nonempty(a) and nonempty(b) and nonempty(c)") == ["and", [A, B, C]]
    assert data("(nonempty(a) and nonempty(b)) and nonempty(c)") == ["and", [["and", [A, B]], C]]
    assert data("nonempty(a) or (nonempty(b) or nonempty(c))") == ["or", [A, ["or", [B, C]]]]


def test_keywords_may_be_port_names_inside_the_parentheses():
    assert data("nonempty(and) and count(count) == 1") == ["and", [port("and", "nonempty"), port("count", ["eq", 1])]]


def _random_term(rng: random.Random, depth: int = 0) -> Term:
    pick = rng.randrange(8 if depth < 4 else 3)
    names = ["a", "b", "in put", "x-1", "and"]
    if pick == 0:
        return rng.choice([Term.true_(), Term.false_()])
    if pick == 1:
        builder = rng.choice([PortState.equals, PortState.less_than, PortState.greater_than,
                              PortState.equals_or_less_than, PortState.equals_or_greater_than])
        return Term.port(rng.choice(names), builder(rng.randrange(100)))
    if pick == 2:
        return Term.port(rng.choice(names), rng.choice([PortState.non_empty(), PortState.empty(),
                                                        PortState.full(), PortState.non_full()]))
    if pick in (3, 4):
        return Term.not_(_random_term(rng, depth + 1))
    terms = [_random_term(rng, depth + 1) for _ in range(rng.randrange(2, 4))]
    return Term.and_(terms) if pick in (5, 6) else Term.or_(terms)


def test_writing_any_term_back_parses_to_the_same_term():
    rng = random.Random(6)
    for _ in range(2000):
        term = _random_term(rng)
        text = to_text(term)
        assert term_to_data(parse(text)) == term_to_data(term), text


@pytest.mark.parametrize(("text", "written"), [
    ("nonempty(a) or nonempty(b) and nonempty(c)", "nonempty(a) or nonempty(b) and nonempty(c)"),
    ("(nonempty(a) or nonempty(b)) and not full(c)", "(nonempty(a) or nonempty(b)) and not full(c)"),
    ("((nonempty(a)))", "nonempty(a)"),
    ("not (not (empty(a)))", "not not empty(a)"),
    ("not (nonempty(a) or empty(b))", "not (nonempty(a) or empty(b))"),
    ("count( a )>=3", "count(a) >= 3"),
    ("nonempty('in put')", "nonempty('in put')"),
    ("nonempty(\"it's\")", "nonempty(\"it's\")"),
])
def test_to_text_uses_the_fewest_parentheses(text, written):
    assert to_text(parse(text)) == written


def test_degenerate_and_or_are_written_as_their_equivalent():
    assert to_text(Term.and_([])) == "true"
    assert to_text(Term.or_([])) == "false"
    assert to_text(Term.or_([Term.port("a", PortState.empty())])) == "empty(a)"


@pytest.mark.parametrize(("text", "column", "expected"), [
    ("nonempty(a) and (empty(b)", 26, "')' to close the '(' at column 17"),
    ("nonempty(a) nonempty(b)", 13, "'and', 'or' or the end of the expression"),
    ("count(a) != 2", 10, "a name, a quoted port name, a number"),
    ("count(a) 2", 10, "a comparison (==, <, >, <=, >=)"),
    ("count(a) >= b", 13, "a whole number"),
    ("count(a) >= 99999999999999999999", 13, "a whole number"),
    ("nonempty a", 10, "'('"),
    ("nonempty()", 10, "a port name"),
    ("nonempty(a", 11, "')'"),
    ("", 1, "nonempty(port), empty(port)"),
    ("nonempty(a) and", 16, "nonempty(port), empty(port)"),
    ("isfull(a)", 1, "nonempty(port), empty(port)"),
    ("nonempty(a) AND empty(b)", 13, "'and', 'or'"),
])
def test_a_syntax_error_shows_the_expression_the_column_and_what_was_expected(text, column, expected):
    with pytest.raises(ExpressionError) as info:
        parse(text)
    error = info.value
    assert f"at column {column} in {text!r}" in str(error)
    assert f"expected {expected}" in str(error)
    assert (error.expression, error.column) == (text, column)


def test_where_prefixes_the_message():
    with pytest.raises(ExpressionError, match=r"^node 'A' condition 'go': at column 1"):
        parse("?", where="node 'A' condition 'go'")


def test_an_unknown_port_is_named_with_the_known_ones():
    with pytest.raises(ExpressionError) as info:
        parse("nonempty(in1) and count(in3) >= 2", ports={"in1", "in2"})
    assert "unknown port 'in3' at column 25" in str(info.value)
    assert "(ports: in1, in2)" in str(info.value)
    assert info.value.port == "in3"


def test_known_ports_are_accepted():
    assert data("nonempty(in1)", ports={"in1"}) == port("in1", "nonempty")


def test_nesting_is_limited_so_nothing_recurses_without_bound():
    assert data("(" * MAX_DEPTH + "true" + ")" * MAX_DEPTH) is True
    assert data("not " * MAX_DEPTH + "true") is not None
    for text in ("(" * (MAX_DEPTH + 1) + "true" + ")" * (MAX_DEPTH + 1), "not " * 10_000 + "true",
                 "(" * 100_000):
        with pytest.raises(ExpressionError, match=f"deeper than {MAX_DEPTH}"):
            parse(text)


def test_a_non_string_is_refused():
    with pytest.raises(ExpressionError, match="must be a string"):
        parse(3)  # type: ignore[arg-type]


def test_a_port_name_with_both_quotes_cannot_be_written():
    with pytest.raises(ExpressionError, match="both kinds of quote"):
        to_text(Term.port("a'b\"c", PortState.empty()))


def test_expression_error_is_a_config_error_and_survives_pickle():
    with pytest.raises(ExpressionError) as info:
        parse("nonempty(")
    error = info.value
    assert isinstance(error, netrun.ConfigError) and isinstance(error, netrun.NetrunError)
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is ExpressionError
    assert (str(restored), restored.column, restored.expression) == (str(error), 10, "nonempty(")
