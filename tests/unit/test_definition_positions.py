"""Definition errors say where: `source:LINE:` (and `:COLUMN` when a character is meant) of the place
in the TOML text that each problem is about, with `line` and `column` fields on the error."""

from __future__ import annotations

import pickle

import pytest

from netrun.definition import Locator, read_definition
from netrun.errors import DefinitionError, ExpressionError

NODES = """\
[nodes.Source]
out_ports = ["out"]

[nodes.Merge]
in_ports = ["a", "b"]
out_ports = ["out"]

[nodes.Sink]
in_ports = ["in"]
"""  # 9 lines: the cases below that add to it count on from line 10

EDGES_TABLES = NODES + """
[[edges]]
from = "Source.out"
to = "Merge.a"

[[edges]]
from = "Merge.out"
to = "Sink.in"

[[edges]]
from = "Source.out"
to = "{third}"
"""  # the third edge's `to` is line 21

EDGES_INLINE = """\
edges = [  # before the first table, or it would be a key of that table
    {{ from = "Source.out", to = "Merge.a" }},
    {{ from = "Merge.out", to = "Sink.in" }},
    {{ from = "Source.out", to = "{third}" }},
]

""" + NODES  # the third edge is line 4


def error_of(text: str) -> DefinitionError:
    with pytest.raises(DefinitionError) as info:
        read_definition(text)
    return info.value


# (document, line, a piece of the message). Each wrong place sits lines away from its enclosing
# table, so an error placed at the table (or nowhere) fails the case.
CASES = {
    "unknown key in a node table": (NODES + """\
[nodes.Extra]
in_ports = ["in"]
colour = "red"
""", 12, "node 'Extra': unknown key 'colour'"),
    "unknown key in a salvo condition table": (NODES + """\
[nodes.Merge.out_salvo_conditions.send]
when = "nonempty(out)"
max_salvos = 2
edges = ["Sink.in"]
""", 13, "node 'Merge' out_salvo_conditions.send: unknown key 'edges'; allowed keys: when, ports, max_salvos"),
    "unknown key in an inline table": ("""\
[nodes.Merge]
in_ports = ["a", "b"]
out_ports = ["out"]
in_salvo_conditions.both = { when = "nonempty(a)" }
out_salvo_conditions.send = { when = "nonempty(out)", edges = 1 }
""", 5, "node 'Merge' out_salvo_conditions.send: unknown key 'edges'"),
    "unknown key in an inline port table": ("""\
[nodes.Merge]
out_ports = ["out"]
in_ports = { a = { slots = 1 }, b = { size = 2 } }
""", 3, "node 'Merge' in_ports.b: unknown key 'size'"),
    "a condition without `when`": (NODES + """\

[nodes.Merge.in_salvo_conditions.go]
ports = ["a"]
""", 11, "in_salvo_conditions.go: needs 'when'"),
    "a condition naming a port the node lacks": ("""\
[nodes.Merge]
in_ports = ["a", "b"]
[nodes.Merge.in_salvo_conditions.go]
when = "nonempty(a)"
ports = [
    "a",
    "zz",
]
""", 7, "names port 'zz', which is not an input port"),
    "a port listed twice": ("""\
[nodes.N]
in_ports = [
    "a",
    "b",
    "a",
]
""", 5, "lists port 'a' twice"),
    "a bad port slot count": ("""\
[nodes.N.in_ports.a]
type = "int"
slots = -1
""", 3, "in_ports.a slots: must be a whole number"),
    "an unknown option in [nodes.X.options]": (NODES + """\
[nodes.Sink.options]
retries = 0
colour = "red"
""", 12, "unknown node 'Sink' option 'colour'"),
    "a bad option value in [nodes.X.options]": (NODES + """\
[nodes.Sink.options]
retries = 0
timeout = -1
capture_stdout = false
""", 12, "node 'Sink' options: node 'Sink' option 'timeout' must be a positive number"),
    "a bad pool size in [net.thread_pools.x]": ("""\
[net]
on_error = "pause"
[net.thread_pools.io]
size = 0
""", 4, "net option \"thread_pools['io'].size\" must be a positive int"),
    "an unknown top-level key": ("""\
# a net

version = 2
[nodes.N]
""", 3, "<string>:3: unknown key 'version'; allowed keys: net, nodes, edges"),
    "an unknown top-level table": (NODES + """\
[graph]
name = "x"
""", 10, "<string>:10: unknown key 'graph'"),
    "an unknown net option after other keys": ("""\
[net]
on_error = "pause"

version = 2
""", 4, "[net]: unknown net option 'version'"),  # `version` follows [net], so it is a net option
    "a quoted node name": ("""\
[nodes.Source]
out_ports = ["out"]

[nodes."My Node"]
in_ports = ["in"]
colour = "red"
""", 6, "node 'My Node': unknown key 'colour'"),
    "a quoted node name in a dotted header": ("""\
[nodes."My Node"]
in_ports = ["in"]
[nodes."My Node".options]
retries = 0
timeout = "soon"
""", 5, "node 'My Node' options: node 'My Node' option 'timeout'"),
    "a function that cannot be imported": ("""\
[nodes.N]
in_ports = ["in"]
exec_node_func = "tests.dsl_fixtures.nodes.no_such_function"
""", 3, "node 'N' exec_node_func: cannot import"),
    "an unknown node in the 3rd [[edges]] table": (EDGES_TABLES.format(third="Nope.in"), 21,
                                                   "edge 3 ('Source.out' -> 'Nope.in'): names node 'Nope'"),
    "an unknown port in the 3rd [[edges]] table": (EDGES_TABLES.format(third="Sink.nope"), 21,
                                                   "node 'Sink' has no input port 'nope'"),
    "an unknown node in the 3rd inline edge": (EDGES_INLINE.format(third="Nope.in"), 4,
                                               "edge 3 ('Source.out' -> 'Nope.in'): names node 'Nope'"),
    "an unknown port in the 3rd inline edge": (EDGES_INLINE.format(third="Sink.nope"), 4,
                                               "node 'Sink' has no input port 'nope'"),
    "a bad `from` in a [[edges]] table": (NODES + """\

[[edges]]
from = "Source.out"
to = "Merge.a"

[[edges]]
from = "Sink.nope"
to = "Merge.b"
""", 16, "edge 2 ('Sink.nope' -> 'Merge.b'): node 'Sink' has no output port 'nope'"),
    "an edge table with an unknown key": (NODES + """\
[[edges]]
from = "Source.out"
to = "Merge.a"
[edges.meta]
label = "main"
[[edges]]
from = "Merge.out"
to = "Sink.in"
colour = "red"
""", 18, "edge 2: unknown key 'colour'"),
    "an edge listed twice": ("""\
edges = [
    { from = "Source.out", to = "Merge.a" },
    { from = "Merge.out", to = "Sink.in" },
    { from = "Source.out", to = "Merge.a" },
]
""" + NODES, 4, "edge 3 ('Source.out' -> 'Merge.a'): is listed twice"),
    "an edge without `to`": ("""\
edges = [{ from = "Source.out", to = "Merge.a" },
         { from = "Merge.out" }]
""" + NODES, 2, "edge 2: needs 'to'"),
    "two edges from one output (the graph)": ("""\
edges = [
    { from = "Source.out", to = "Merge.a" },
    { from = "Merge.out", to = "Sink.in" },
    { from = "Source.out", to = "Merge.b" },
]
""" + NODES, 4, "the graph is invalid: output port Source.out"),
    "an input condition with max_salvos above 1 (the graph)": ("""\
[nodes.N]
in_ports = ["a"]
[nodes.N.in_salvo_conditions.go]
when = "true"
ports = []
max_salvos = 2
""", 6, "the graph is invalid: input salvo condition 'go'"),
    "strings that look like headers do not move the count": ('''\
[nodes.Source]
out_ports = ["out"]
meta = { note = """
[[edges]]
[nodes.Fake]
""", other = '{ [' }

[nodes.Sink]
in_ports = ["in"]

[[edges]]
from = "Source.out"
to = "Sink.in"

[[edges]]  # a comment with [[edges]]
from = "Source.out"
to = "Sink.nope"
''', 17, "edge 2 ('Source.out' -> 'Sink.nope')"),
}


@pytest.mark.parametrize(("text", "line", "message"), CASES.values(), ids=CASES.keys())
def test_each_error_names_the_line_of_its_place(text, line, message):
    error = error_of(text)
    assert (error.line, error.column) == (line, None)
    assert str(error).startswith(f"<string>:{line}: ")
    assert message in str(error)


def test_the_message_is_the_old_one_behind_the_position():
    text = CASES["unknown key in a salvo condition table"][0]
    assert str(error_of(text)) == ("<string>:13: node 'Merge' out_salvo_conditions.send: unknown key 'edges'; "
                                   "allowed keys: when, ports, max_salvos")


# -- salvo expressions: the line of `when`, the column of the character when the string maps 1:1 -----
@pytest.mark.parametrize(("when", "column", "expression_column"), [
    ('"nonempty(a) and"', 24, 16),  # the end of the expression: the closing quote
    ('"nonempty(a) or count(b) = 2"', 33, 25),  # the `=`
    ("'nonempty(\"zz\")'", 18, 10),  # a literal string: quotes inside need no escape
    ('"empty(\\"zz\\")"', 15, 7),  # the escape `\"` that writes the character
    ('"nonempty(\\"a\\") and"', None, 18),  # an escape before the character: no column
])
def test_an_expression_error_has_the_line_of_when_and_the_source_column(when, column, expression_column):
    error = error_of(NODES + f"""\
[nodes.Merge.in_salvo_conditions.go]
ports = ["a"]
when = {when}
""")
    assert (error.line, error.column) == (12, column)
    assert str(error).startswith("<string>:12: " if column is None else f"<string>:12:{column}: ")
    assert "node 'Merge' in_salvo_conditions.go when: " in str(error)
    assert f"column {expression_column} in " in str(error)  # the column in the expression stays
    assert isinstance(error.__cause__, ExpressionError) and error.__cause__.column == expression_column
    assert error.key == "when"


def test_an_expression_in_an_inline_table_points_at_its_character():
    error = error_of('[nodes.N]\nin_ports = ["a"]\nin_salvo_conditions.go = { max_salvos = 1, when = "full(b)" }\n')
    assert (error.line, error.column) == (3, 57)  # the `b` of full(b)
    assert "unknown port 'b' at column 6" in str(error)


def test_a_multi_line_expression_has_the_line_of_when_and_no_column():
    error = error_of(NODES + '''\
[nodes.Merge.in_salvo_conditions.go]
when = """
nonempty(a) and
"""
''')
    assert (error.line, error.column) == (11, None)
    assert str(error).startswith("<string>:11: node 'Merge' in_salvo_conditions.go when: at column")


# -- TOML syntax errors, files, pickling ---------------------------------------------------------------
def test_a_toml_syntax_error_keeps_the_line_and_column_of_tomllib():
    error = error_of('[nodes.N]\nin_ports = ["a"]\nout_ports = ["b" "c"]\n')
    assert (error.line, error.column) == (3, 18)
    assert str(error).startswith("<string>:3:18: invalid TOML: ")
    assert str(error).endswith("(at line 3, column 18)")


def test_a_toml_error_at_the_end_of_the_document_has_the_last_position():
    error = error_of('[nodes.N]\nin_ports = ["a"')
    assert (error.line, error.column) == (2, 16)
    assert str(error).startswith("<string>:2:16: invalid TOML: Unclosed array (at end of document)")


def test_a_file_is_named_with_the_line_and_the_path_field_stays_the_file(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text(CASES["unknown key in a salvo condition table"][0])
    error = error_of(str(path))
    assert str(error).startswith(f"{path}:13: node 'Merge' out_salvo_conditions.send: unknown key 'edges'")
    assert (error.path, error.line, error.key) == (str(path), 13, "edges")


def test_a_positioned_error_survives_pickle():
    for error in (error_of(CASES["a bad option value in [nodes.X.options]"][0]),
                  error_of('[nodes.N]\nin_ports = ["a"]\nin_salvo_conditions.go = { when = "full(b)" }\n')):
        restored = pickle.loads(pickle.dumps(error))
        assert type(restored) is DefinitionError
        fields = ("path", "line", "column", "key", "node")
        assert ([getattr(restored, f, None) for f in fields], str(restored)) == (
            [getattr(error, f, None) for f in fields], str(error))
        assert restored.line is not None


def test_an_error_without_a_place_in_the_text_has_no_position():
    error = error_of("x = 1" + "1" * 5000)  # tomllib's integer limit: no position in its message
    assert (error.line, error.column) == (None, None)
    assert str(error).startswith("<string>: invalid TOML: ")


# -- the locator --------------------------------------------------------------------------------------
LOCATED = '''\
[nodes."My \\u0041 Node"]   # an escape in a quoted key
in_ports = ['a',
  "b"]
note = """ [nodes.Fake]
x = 1 """
[nodes.'lit.name'.options]
x.y.z = 1
[[edges]]
from = "A.o"
[edges.meta]
label = "x"
[[edges]]
to = "B.i"
[[edges.meta.list]]
k = 1
[[edges.meta.list]]
k = 2
'''


@pytest.mark.parametrize(("path", "line"), [
    (("nodes", "My A Node"), 1),
    (("nodes", "My A Node", "in_ports", 1), 3),
    (("nodes", "My A Node", "note"), 4),
    (("nodes", "lit.name"), 6),  # named only by its options' header
    (("nodes", "lit.name", "options", "x", "y", "z"), 7),
    (("edges", 0, "meta", "label"), 11),
    (("edges", 1), 12),
    (("edges", 1, "to"), 13),
    (("edges", 1, "meta", "list", 1, "k"), 17),
    (("nodes", "My A Node", "in_ports", 5), 2),  # no such item: the enclosing key
    (("nodes", "Fake", "x"), 1),  # inside a string: not a table; the nearest found is [nodes]
    (("nope",), None),
    ((), None),
])
def test_the_locator_finds_the_line_or_the_nearest_enclosing_place(path, line):
    assert Locator(LOCATED).position(path) == (line, None)


@pytest.mark.parametrize("text", ["", "[", "[[", "a = [", 'a = """', "a = {", "[nodes.\n]", "= = =", "\\", "[a]\n[[a]]"])
def test_the_locator_never_raises_on_broken_text(text):
    for end in range(len(LOCATED) + 1):
        Locator(text + LOCATED[:end]).position(("nodes", "My A Node", "in_ports", 1), 2)
