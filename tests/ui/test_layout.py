"""The graph page's layered layout (netrun.ui.layout), computed without a browser."""

from __future__ import annotations

import netrun_sim as ns

from netrun.graphio import graph_to_data, node_depths
from netrun.graphs import chain, edge, simple_node
from netrun.ui.layout import layout


def _placed(graph: ns.Graph) -> dict:
    return layout(graph_to_data(graph), node_depths(graph))


def test_a_chain_runs_left_to_right_with_ports_on_the_sides():
    placed = _placed(chain("Source", "A", "B", "Sink"))
    nodes = {n["name"]: n for n in placed["nodes"]}
    xs = [nodes[name]["x"] for name in ("Source", "A", "B", "Sink")]
    assert xs == sorted(xs) and len(set(xs)) == 4
    a = nodes["A"]
    assert [p["x"] for p in a["in_ports"]] == [a["x"]] and [p["x"] for p in a["out_ports"]] == [a["x"] + a["w"]]
    assert all(a["y"] < p["y"] < a["y"] + a["h"] for p in a["in_ports"] + a["out_ports"])
    assert placed["width"] >= max(n["x"] + n["w"] for n in placed["nodes"])
    assert placed["height"] >= max(n["y"] + n["h"] for n in placed["nodes"])
    # each edge starts at its output port and ends at its input port
    for e in placed["edges"]:
        start = next(p for p in nodes[e["from"]]["out_ports"] if p["name"] == e["from_port"])
        end = next(p for p in nodes[e["to"]]["in_ports"] if p["name"] == e["to_port"])
        assert e["path"].startswith(f"M{start['x']:.1f},{start['y']:.1f} ")
        assert e["path"].endswith(f" {end['x']:.1f},{end['y']:.1f}")


def test_a_fan_out_stacks_a_column_without_overlaps_and_orders_it_to_avoid_crossings():
    nodes = [simple_node("S", [], ["a", "b"]), simple_node("Y", ["in"], ["out"]), simple_node("X", ["in"], ["out"]),
             simple_node("J", ["p", "q"], [])]
    edges = [edge("S", "Y", "a", "in"), edge("S", "X", "b", "in"), edge("Y", "J", "out", "p"),
             edge("X", "J", "out", "q")]
    placed = {n["name"]: n for n in _placed(ns.Graph(nodes, edges))["nodes"]}
    x, y = placed["X"], placed["Y"]
    assert x["x"] == y["x"] and (x["y"] + x["h"] <= y["y"] or y["y"] + y["h"] <= x["y"])
    assert y["y"] < x["y"]  # Y is fed by S.a, the upper port: drawn above X
    assert len(placed["J"]["in_ports"]) == 2


def test_a_cycle_shares_a_column_and_its_edges_loop_back():
    nodes = [simple_node("Src", [], ["out"]), simple_node("A", ["in", "back"], ["out"]),
             simple_node("B", ["in"], ["out", "again"])]
    edges = [edge("Src", "A", "out", "in"), edge("A", "B", "out", "in"), edge("B", "A", "again", "back")]
    placed = _placed(ns.Graph(nodes, edges))
    by_name = {n["name"]: n for n in placed["nodes"]}
    assert by_name["A"]["x"] == by_name["B"]["x"] > by_name["Src"]["x"]
    assert {(e["from"], e["to"]) for e in placed["edges"]} == {("Src", "A"), ("A", "B"), ("B", "A")}
    assert placed == _placed(ns.Graph(list(reversed(nodes)), list(reversed(edges))))  # the same picture
