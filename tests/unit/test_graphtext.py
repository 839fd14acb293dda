"""A net's graph as Mermaid, DOT and JSON text: every node, port and edge, escaped and deterministic."""

from __future__ import annotations

import json
import re

import netrun_sim as ns
import pytest

from netrun.errors import ConfigError
from netrun.expressions import parse
from netrun.graphs import chain, edge, simple_node
from netrun.graphtext import FORMATS, render_graph

SRC, JOIN, SINK, OTHER = 'Src "q"', "Join {x|y} <z>", "sink.é \\ end", "Other & #1 #35;"
ODD_PORT = 'x.y "z"'
CONDITION = f"nonempty(a) and count(b) >= 2 and not full('{ODD_PORT}')"


def _port(slots: int | None = None) -> ns.Port:
    return ns.Port(ns.PortSlotSpec.infinite() if slots is None else ns.PortSlotSpec.finite(slots))


def _join() -> ns.Node:
    """Two inputs joined by a custom condition, a self-loop port and a port name needing quotes."""
    both = ns.SalvoCondition(ns.MaxSalvos.finite(1), {"a": ns.PacketCount.count(1), "b": ns.PacketCount.all()},
                             parse(CONDITION))
    send = ns.SalvoCondition(ns.MaxSalvos.infinite(), {"out": ns.PacketCount.all()},
                             ns.SalvoConditionTerm.port("out", ns.PortState.non_empty()))
    return ns.Node(name=JOIN, in_ports={"a": _port(3), "b": _port(), "loop": _port(), ODD_PORT: _port()},
                   out_ports={"out": _port(), "fb": _port()},
                   in_salvo_conditions={"both": both}, out_salvo_conditions={"send_out": send})


ODD_EDGES = {(SRC, "out", JOIN, "a"), (OTHER, "out", JOIN, "b"), (OTHER, "err", JOIN, ODD_PORT),
             (JOIN, "fb", JOIN, "loop"), (JOIN, "out", SINK, "in")}


def _odd(reverse: bool = False) -> ns.Graph:
    nodes = [simple_node(SRC, [], ["out"]), simple_node(OTHER, [], ["out", "err"]), _join(),
             simple_node(SINK, ["in"], [])]
    edges = [edge(a, c, b, d) for a, b, c, d in sorted(ODD_EDGES)]
    return ns.Graph(nodes[::-1] if reverse else nodes, edges[::-1] if reverse else edges)


def _chain() -> ns.Graph:
    return chain("Source", "Double", "Sink")


CHAIN_EDGES = {("Source", "out", "Double", "in"), ("Double", "out", "Sink", "in")}
GRAPHS = [(_chain, CHAIN_EDGES), (_odd, ODD_EDGES)]


def _bare(port_text: str) -> str:
    """A listed port without its slot count: `a[3]` -> `a`."""
    return re.sub(r"\[\d+\]$", "", port_text)


def _ports(graph: ns.Graph, side: str) -> dict[str, set[str]]:
    return {name: set(getattr(node, f"{side}_ports")) for name, node in graph.nodes().items()}


# -- mermaid -------------------------------------------------------------------------------
def _mermaid_decode(text: str) -> str:
    assert re.fullmatch(r'(?:[^"#&<>|`]|#\d+;)*', text), text  # specials only as `#code;`
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), text)


def _parse_mermaid(text: str) -> tuple[dict[str, list[str]], set[tuple[str, str, str, str]]]:
    """(id -> decoded label lines, edges as (from id, from port, to id, to port)); fails on any other line."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes: dict[str, list[str]] = {}
    edges = set()
    for line in lines[1:]:
        if m := re.fullmatch(r'    (n\d+)\["([^"]*)"\]', line):
            nodes[m[1]] = [_mermaid_decode(part) for part in m[2].split("<br/>")]
        elif m := re.fullmatch(r'    (n\d+) -->\|"([^"]*)"\| (n\d+)', line):
            out_port, in_port = _mermaid_decode(m[2]).split(" → ")
            edges.add((m[1], out_port, m[3], in_port))
        else:
            pytest.fail(f"unexpected mermaid line {line!r}")
    return nodes, edges


@pytest.mark.parametrize(("build", "expected"), GRAPHS)
def test_mermaid_lists_every_node_with_ports_and_every_edge_with_port_labels(build, expected) -> None:
    graph = build()
    nodes, edges = _parse_mermaid(render_graph(graph, "mermaid"))
    names = sorted(graph.nodes())
    assert list(nodes) == [f"n{i}" for i in range(len(names))]  # ids in sorted-name order
    assert [label[0] for label in nodes.values()] == names
    name_of = {f"n{i}": name for i, name in enumerate(names)}
    assert {(name_of[a], b, name_of[c], d) for a, b, c, d in edges} == expected
    for node_id, label in nodes.items():
        listed = {side: set() for side in ("in", "out")}
        for line in label[1:]:
            side, ports = line.split(": ", 1)
            listed[side] = {_bare(p) for p in ports.split(", ")}
        assert listed == {side: _ports(graph, side)[name_of[node_id]] for side in ("in", "out")}


def test_mermaid_shows_finite_slots() -> None:
    nodes, _ = _parse_mermaid(render_graph(_odd(), "mermaid"))
    join = next(label for label in nodes.values() if label[0] == JOIN)
    assert join[1] == f"in: a[3], b, loop, {ODD_PORT}"


# -- dot -----------------------------------------------------------------------------------
_DOT_STRING = r'"((?:[^"\\]|\\.)*)"'


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _entities(text: str) -> str:
    """Graphviz decodes HTML entities in labels; the renderer only writes `&amp;`."""
    return text.replace("&amp;", "&")


def _parse_record(label: str) -> tuple[list[str], dict[str, str]]:
    """(plain field texts, port id -> port field text) of a record label; asserts balanced braces.

    Ports must sit one level down (`{<in_a> a|...}`), plain text (the node name) at the top.
    """
    fields: list[tuple[int, str | None, str]] = []  # (depth, port id, text)
    depth, text, port, in_port = 0, "", None, False

    def flush() -> None:
        nonlocal text, port
        if text.strip() or port is not None:
            fields.append((depth, port, text.strip()))
        text, port = "", None

    chars = iter(label)
    for char in chars:
        if char == "\\":
            char = next(chars)
        elif char in "{}|":
            flush()
            depth += {"{": 1, "}": -1, "|": 0}[char]
            assert depth >= 0, label
            continue
        elif char in "<>":
            in_port = char == "<"
            port = "" if in_port else port
            continue
        if in_port:
            port += char
        else:
            text += char
    flush()
    assert depth == 0 and not in_port, label
    assert all(d == (0 if p is None else 1) for d, p, _ in fields), fields
    texts = [_entities(t) for _, p, t in fields if p is None]
    return texts, {p: _entities(t) for _, p, t in fields if p is not None}


@pytest.mark.parametrize(("build", "expected"), GRAPHS)
def test_dot_declares_every_node_as_a_record_and_every_edge_between_declared_ports(build, expected) -> None:
    graph = build()
    text = render_graph(graph, "dot")
    lines = text.splitlines()
    assert lines[:3] == ["digraph net {", "    rankdir=LR;", "    node [shape=record];"] and lines[-1] == "}"
    outside = re.sub(_DOT_STRING, '""', text)  # braces outside quoted strings balance
    assert outside.count("{") == outside.count("}") == 1
    declared: dict[str, tuple[str, dict[str, str]]] = {}
    edges = set()
    for line in lines[3:-1]:
        if m := re.fullmatch(rf"    {_DOT_STRING} \[label={_DOT_STRING}\];", line):
            texts, ports = _parse_record(m[2])
            assert m[1] not in declared
            declared[m[1]] = (texts, ports)
        elif m := re.fullmatch(rf"    {_DOT_STRING}:(\w+) -> {_DOT_STRING}:(\w+);", line):
            assert m[1] in declared and m[3] in declared, line
            assert m[2].startswith("out") and m[2] in declared[m[1]][1], line
            assert m[4].startswith("in") and m[4] in declared[m[3]][1], line
            source, target = declared[m[1]][1][m[2]], declared[m[3]][1][m[4]]
            edges.add((_unescape(m[1]), _bare(source), _unescape(m[3]), _bare(target)))
        else:
            pytest.fail(f"unexpected dot line {line!r}")
    assert [_unescape(node_id) for node_id in declared] == sorted(graph.nodes())
    for node_id, (texts, ports) in declared.items():
        name = _unescape(node_id)
        assert texts == [name]
        port_names = {_bare(p) for p in ports.values()}
        assert port_names == _ports(graph, "in")[name] | _ports(graph, "out")[name]
    assert edges == expected


def test_dot_record_escapes_special_characters_and_uses_index_ids_for_odd_ports() -> None:
    text = render_graph(_odd(), "dot")
    assert r'"Join {x|y} <z>" [label="{<in_a> a[3]|<in_b> b|<in_loop> loop|<in3> x.y \"z\"}|' \
           r'Join \{x\|y\} \<z\>|{<out_fb> fb|<out_out> out}"];' in text
    assert r'"sink.é \\ end" [label="{<in_in> in}|sink.é \\ end"];' in text
    assert r'"Other & #1 #35;" [label="Other &amp; #1 #35;|{<out_err> err|<out_out> out}"];' in text
    assert r'"Other & #1 #35;":out_err -> "Join {x|y} <z>":in3;' in text


# -- json ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("build", "expected"), GRAPHS)
def test_json_lists_exactly_the_graphs_nodes_and_edges(build, expected) -> None:
    graph = build()
    doc = json.loads(render_graph(graph, "json"))
    assert [n["name"] for n in doc["nodes"]] == sorted(graph.nodes())
    for node in doc["nodes"]:
        for side in ("in", "out"):
            assert set(node[f"{side}_ports"]) == _ports(graph, side)[node["name"]]
    ends = [(e["from"], e["to"]) for e in doc["edges"]]
    assert sorted(ends) == ends and len(ends) == len(expected)
    assert set(ends) == {(f"{a}.{b}", f"{c}.{d}") for a, b, c, d in expected}
    assert all(set(e) == {"from", "to"} for e in doc["edges"])  # no meta given


def test_json_shows_slots_and_salvo_conditions_as_expressions() -> None:
    doc = json.loads(render_graph(_odd(), "json"))
    join = next(n for n in doc["nodes"] if n["name"] == JOIN)
    assert join["in_ports"] == {"a": 3, "b": None, "loop": None, ODD_PORT: None}
    assert join["in_salvo_conditions"] == {"both": {"when": CONDITION, "ports": {"a": 1, "b": "all"},
                                                    "max_salvos": 1}}
    assert join["out_salvo_conditions"]["send_out"] == {"when": "nonempty(out)", "ports": {"out": "all"},
                                                        "max_salvos": "infinite"}


def test_json_includes_node_and_edge_meta_only_where_given() -> None:
    meta_edge = (JOIN, "fb", JOIN, "loop")
    text = render_graph(_odd(), "json", edge_meta={meta_edge: {"weight": 2}, ("No", "x", "Such", "y"): {"a": 1}},
                        node_meta={SINK: {"owner": "ops"}, "Missing": {"b": 2}})
    doc = json.loads(text)
    with_meta = [e for e in doc["edges"] if "meta" in e]
    assert with_meta == [{"from": f"{JOIN}.fb", "to": f"{JOIN}.loop", "meta": {"weight": 2}}]
    assert {n["name"]: n["meta"] for n in doc["nodes"] if "meta" in n} == {SINK: {"owner": "ops"}}
    assert len(doc["edges"]) == len(ODD_EDGES)


def test_json_is_sorted_and_indented() -> None:
    text = render_graph(_chain(), "json")
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_condition_with_an_unspellable_port_name_falls_back_to_data_form() -> None:
    port = "both'\"quotes"
    cond = ns.SalvoCondition(ns.MaxSalvos.finite(1), {port: ns.PacketCount.all()},
                             ns.SalvoConditionTerm.port(port, ns.PortState.non_empty()))
    node = ns.Node(name="N", in_ports={port: _port()}, out_ports={}, in_salvo_conditions={"c": cond},
                   out_salvo_conditions={})
    doc = json.loads(render_graph(ns.Graph([node], []), "json"))
    assert json.loads(doc["nodes"][0]["in_salvo_conditions"]["c"]["when"]) == ["port", port, "nonempty"]


# -- all formats ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FORMATS)
def test_output_is_deterministic_and_independent_of_construction_order(fmt) -> None:
    first = render_graph(_odd(), fmt)
    assert first == render_graph(_odd(), fmt)
    assert first == render_graph(_odd(reverse=True), fmt)
    assert first.endswith("\n") and not first.endswith("\n\n")
    assert render_graph(_chain(), fmt) == render_graph(chain("Source", "Double", "Sink"), fmt) != first


def test_unknown_format_raises_config_error_naming_the_allowed_ones() -> None:
    with pytest.raises(ConfigError, match=r"'svg'.*mermaid, dot, json") as info:
        render_graph(_chain(), "svg")
    assert info.value.format == "svg"
