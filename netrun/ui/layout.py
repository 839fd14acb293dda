"""Where the web page draws each node, port and edge of a net's graph: a layered layout.

Columns are the nodes' depths (`graphio.node_depths`: the longest distance from a source; the
nodes of one cycle share a column), the order inside a column comes from a few barycenter sweeps
(each node moves towards the mean position of its neighbours in the next column, which removes
most crossings), input ports sit on a node's left side and output ports on its right. Edges are
cubic curves from an output port to an input port; one that runs backwards or stays in its column
(a cycle) loops out to the right of its source and back in from the left of its target.

Pure computation over `graphio.graph_to_data`, so it is tested without a browser; the page only
draws the numbers. Everything is sorted by name first: the same graph always gets the same picture.
"""

from __future__ import annotations

from typing import Any

NODE_WIDTH = 250
COLUMN_GAP = 130  # between two columns: room for the edges and their packet counts
ROW_GAP = 40
PORT_GAP = 24
HEADER = 58  # node name and the counts line, above the first port
MARGIN = 30
SWEEPS = 4


Neighbours = dict[str, list[tuple[str, float]]]  # node -> (neighbour, where on it: 0..1 down its side)


def _order(columns: dict[int, list[str]], preds: Neighbours, succs: Neighbours) -> None:
    """Reorder each column (in place) by the barycenter of each node's neighbours in the columns
    already placed (a neighbour's position plus where its port sits on its side), down then up."""
    for sweep in range(SWEEPS):
        depths = sorted(columns) if sweep % 2 == 0 else sorted(columns, reverse=True)
        neighbours = preds if sweep % 2 == 0 else succs
        position: dict[str, float] = {}
        for depth in depths:
            column = columns[depth]
            for i, name in enumerate(column):
                position.setdefault(name, i)
            members = set(column)
            keys = {}
            for name in column:
                seen = [position[n] + at for n, at in neighbours[name] if n in position and n not in members]
                keys[name] = (sum(seen) / len(seen) if seen else position[name], name)
            column.sort(key=keys.__getitem__)
            for i, name in enumerate(column):
                position[name] = i


def layout(data: dict[str, Any], depths: dict[str, int]) -> dict[str, Any]:
    """Coordinates for `data` (`graph_to_data`'s nodes and edges) with `depths` (node -> column).

    Returns `{"width", "height", "nodes": [{"name", "x", "y", "w", "h", "in_ports": [{"name", "x",
    "y", "slots"}], "out_ports": [...]}], "edges": [{"from", "from_port", "to", "to_port", "path",
    "label_x", "label_y"}]}`; port coordinates are absolute.
    """
    nodes = {n["name"]: n for n in data["nodes"]}
    preds: Neighbours = {name: [] for name in nodes}
    succs: Neighbours = {name: [] for name in nodes}

    def at(node: str, side: str, port: str) -> float:
        ports = sorted(nodes[node][side])
        return (ports.index(port) + 1) / (len(ports) + 1)

    for a, ap, b, bp in data["edges"]:
        succs[a].append((b, at(b, "in_ports", bp)))
        preds[b].append((a, at(a, "out_ports", ap)))
    columns: dict[int, list[str]] = {}
    for name in sorted(nodes):
        columns.setdefault(depths.get(name, 0), []).append(name)
    _order(columns, preds, succs)

    placed: dict[str, dict] = {}
    height = 0
    for index, depth in enumerate(sorted(columns)):
        x = MARGIN + index * (NODE_WIDTH + COLUMN_GAP)
        y = MARGIN
        for name in columns[depth]:
            node = nodes[name]
            ports = max(len(node["in_ports"]), len(node["out_ports"]), 1)
            h = HEADER + ports * PORT_GAP
            placed[name] = {
                "name": name, "x": x, "y": y, "w": NODE_WIDTH, "h": h,
                "in_ports": [{"name": p, "x": x, "y": y + HEADER + (i + 0.5) * PORT_GAP, "slots": s}
                             for i, (p, s) in enumerate(sorted(node["in_ports"].items()))],
                "out_ports": [{"name": p, "x": x + NODE_WIDTH, "y": y + HEADER + (i + 0.5) * PORT_GAP, "slots": s}
                              for i, (p, s) in enumerate(sorted(node["out_ports"].items()))],
            }
            y += h + ROW_GAP
        height = max(height, y - ROW_GAP + MARGIN)
    width = MARGIN * 2 + max(len(columns), 1) * NODE_WIDTH + max(len(columns) - 1, 0) * COLUMN_GAP

    edges = []
    for a, ap, b, bp in data["edges"]:
        start = next(p for p in placed[a]["out_ports"] if p["name"] == ap)
        end = next(p for p in placed[b]["in_ports"] if p["name"] == bp)
        x1, y1, x2, y2 = start["x"], start["y"], end["x"], end["y"]
        bend = max((x2 - x1) / 2, 60)  # a backward edge still leaves rightwards and enters from the left
        edges.append({"from": a, "from_port": ap, "to": b, "to_port": bp,
                      "path": f"M{x1:.1f},{y1:.1f} C{x1 + bend:.1f},{y1:.1f} {x2 - bend:.1f},{y2:.1f} "
                              f"{x2:.1f},{y2:.1f}",
                      "label_x": round((x1 + x2) / 2, 1), "label_y": round((y1 + y2) / 2 - 6, 1)})
        if x2 <= x1:  # drawn as a loop: below both ends, so the label must not sit on a node
            edges[-1]["label_y"] = round(max(y1, y2) + 14, 1)
        height = max(height, max(y1, y2) + 2 * MARGIN)
    return {"width": width, "height": height, "nodes": [placed[n] for n in sorted(placed)], "edges": edges}
