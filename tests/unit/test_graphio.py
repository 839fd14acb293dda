"""Graph <-> plain data (the JSON the database keeps), and node depths."""

from __future__ import annotations

import copy
import json

import pytest

import netrun
from netrun import MaxSalvos, PacketCount, PortState, SalvoCondition, SalvoConditionTerm
from netrun.graphio import graph_from_data, graph_to_data, node_depths, term_from_data, term_to_data
from netrun.graphs import chain, edge, simple_node


def _port(slots: int | None) -> netrun.Port:
    return netrun.Port(netrun.PortSlotSpec.infinite() if slots is None else netrun.PortSlotSpec.finite(slots))


def _canonical(data: dict) -> dict:
    """Edges are a set: netrun-sim does not keep their order."""
    return {**data, "edges": sorted(data["edges"])}


# A graph that uses every non-numeric feature: finite and infinite slots, and/or/not/true/false
# terms, every plain port state, PacketCount.count(n) and .all(), finite and infinite max_salvos.
RICH_DATA = {
    "nodes": [
        {
            "name": "Join",
            "in_ports": {"a": 3, "b": None, "c": 1},
            "out_ports": {"out": 2, "err": None},
            "in_salvo_conditions": {
                "both": {
                    "max_salvos": 1,
                    "ports": {"a": 2, "b": "all"},
                    "term": ["and", [["port", "a", "full"],
                                     ["or", [["port", "b", "nonempty"], ["not", ["port", "c", "empty"]]]]]],
                },
                "always": {"max_salvos": 1, "ports": {"c": 1}, "term": True},
            },
            "out_salvo_conditions": {
                "never": {"max_salvos": "infinite", "ports": {"out": "all"}, "term": False},
                "send": {
                    "max_salvos": 3,
                    "ports": {"out": "all", "err": 1},
                    "term": ["or", [["port", "out", "nonempty"], ["port", "err", "nonfull"]]],
                },
            },
        },
        {
            "name": "Sink",
            "in_ports": {"in": None},
            "out_ports": {},
            "in_salvo_conditions": {"d": {"max_salvos": 1, "ports": {"in": 1}, "term": ["port", "in", "nonempty"]}},
            "out_salvo_conditions": {},
        },
        {"name": "Src", "in_ports": {}, "out_ports": {"x": None, "y": 4}, "in_salvo_conditions": {},
         "out_salvo_conditions": {}},
    ],
    "edges": [["Join", "out", "Sink", "in"], ["Src", "x", "Join", "a"], ["Src", "y", "Join", "b"]],
}


def test_rich_data_is_a_valid_graph():
    assert graph_from_data(RICH_DATA).validate() == []


def test_data_to_graph_to_data_round_trip():
    data = copy.deepcopy(RICH_DATA)
    assert _canonical(graph_to_data(graph_from_data(data))) == RICH_DATA
    assert data == RICH_DATA  # the input is not modified


def test_round_trip_through_json_text():
    text = json.dumps(graph_to_data(graph_from_data(RICH_DATA)))
    assert _canonical(graph_to_data(graph_from_data(json.loads(text)))) == RICH_DATA


def test_graph_to_data_to_graph_round_trip_on_chain():
    graph = chain("S", "A", "B", "Sink")
    data = graph_to_data(graph)
    rebuilt = graph_from_data(data)
    assert _canonical(graph_to_data(rebuilt)) == _canonical(data)
    assert sorted(rebuilt.nodes()) == ["A", "B", "S", "Sink"]
    assert rebuilt.validate() == []


def test_nodes_are_listed_by_name():
    data = graph_to_data(chain("Z", "M", "A"))
    assert [n["name"] for n in data["nodes"]] == ["A", "M", "Z"]


def test_graph_built_with_the_sim_api_gives_the_documented_data():
    node = netrun.Node(
        name="N",
        in_ports={"in": _port(5), "side": _port(None)},
        out_ports={"out": _port(None)},
        in_salvo_conditions={
            "go": SalvoCondition(MaxSalvos.finite(1), {"in": PacketCount.count(2), "side": PacketCount.all()},
                                 SalvoConditionTerm.and_([
                                     SalvoConditionTerm.port("in", PortState.non_empty()),
                                     SalvoConditionTerm.not_(SalvoConditionTerm.port("side", PortState.full())),
                                 ])),
        },
        out_salvo_conditions={
            "emit": SalvoCondition(MaxSalvos.infinite(), {"out": PacketCount.all()},
                                   SalvoConditionTerm.or_([SalvoConditionTerm.true_(),
                                                           SalvoConditionTerm.false_()])),
        },
    )
    graph = netrun.Graph([simple_node("S", [], ["out"]), node], [edge("S", "N")])
    data = graph_to_data(graph)
    assert data["nodes"][0] == {
        "name": "N",
        "in_ports": {"in": 5, "side": None},
        "out_ports": {"out": None},
        "in_salvo_conditions": {"go": {
            "max_salvos": 1,
            "ports": {"in": 2, "side": "all"},
            "term": ["and", [["port", "in", "nonempty"], ["not", ["port", "side", "full"]]]],
        }},
        "out_salvo_conditions": {"emit": {"max_salvos": "infinite", "ports": {"out": "all"},
                                          "term": ["or", [True, False]]}},
    }
    assert data["edges"] == [["S", "out", "N", "in"]]


@pytest.mark.parametrize("term", [
    True,
    False,
    ["port", "p", "empty"],
    ["port", "p", "full"],
    ["port", "p", "nonempty"],
    ["port", "p", "nonfull"],
    ["not", ["not", ["port", "p", "empty"]]],
    ["and", [["or", [True, ["port", "q", "full"]]], ["not", False]]],
])
def test_term_round_trip(term):
    assert term_to_data(term_from_data(term)) == term


def test_unknown_term_is_a_config_error():
    with pytest.raises(netrun.ConfigError, match="xor"):
        term_from_data(["xor", [True, False]])


def test_node_depths_on_a_chain():
    assert node_depths(chain("S", "A", "B", "C")) == {"S": 0, "A": 1, "B": 2, "C": 3}


def test_node_depths_take_the_longest_path():
    graph = netrun.Graph(
        [simple_node("S", [], ["out"]), simple_node("A", ["in"], ["out"]), simple_node("B", ["in"], ["out"]),
         simple_node("C", ["in", "short"], [])],
        [edge("S", "A"), edge("A", "B"), edge("B", "C"), edge("S", "C", "out", "short")],
    )
    assert node_depths(graph) == {"S": 0, "A": 1, "B": 2, "C": 3}


def test_node_depths_of_a_fan_out():
    graph = netrun.Graph(
        [simple_node("S", [], ["l", "r"]), simple_node("L", ["in"], []), simple_node("R", ["in"], [])],
        [edge("S", "L", "l", "in"), edge("S", "R", "r", "in")],
    )
    assert node_depths(graph) == {"S": 0, "L": 1, "R": 1}
