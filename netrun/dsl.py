"""Net definitions as TOML (SPEC "DSL Format"): load, save, and restore on resume.

    [net]                          Net options; [net.meta] is freeform
    [nodes.<name>]                 in_ports / out_ports: a list of names, or tables with
                                   `slots` and `type`; in_salvo_conditions / out_salvo_conditions
                                   (`when`, `ports`, `max_salvos`); options; meta; functions
                                   by import path; or `factory` + `factory_args`
    edges = [{ from = "A.out", to = "B.in" }]   or   [[edges]] tables with a `meta` table

Defaults (DESIGN "open points" 10): an input condition's `max_salvos` is 1, an output
one's "infinite"; omitted `ports` means every port of that side (all packets). A node with
input ports and no `in_salvo_conditions` gets `default`: every input port non-empty; one
with output ports and no `out_salvo_conditions` gets `send_<port>` per output port.

`dumps_definition` writes a canonical text (sorted, defaults spelled out where omission
would mean something else), so save -> load -> save is byte-identical. A net loaded from
a definition keeps that canonical text in `net_meta` ('definition'): node and edge `meta`
and factories live there, since the graph has no place for them, and `restore_definition`
re-runs the factories when the net is resumed from its file.

Every problem in a definition raises `DefinitionError` naming the file (or "<string>")
and the node, edge or key; the errors of the layers below are its `__cause__`.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import netrun_sim as ns
import tomli_w

from . import expressions, port_types
from .config import NetConfig, NodeConfig, parse_net_config, update_node_config
from .errors import ConfigError, DefinitionError
from .factories import FUNC_ROLES, check_factory_args, from_factory, import_from_path, is_import_path, node_from_spec
from .graphio import graph_to_data, term_from_data

if TYPE_CHECKING:  # net.py calls into this module (Net.load_definition, Net.resume): import it lazily
    from .net import Net

STRING_SOURCE = "<string>"
MAX_COUNT = expressions.MAX_COUNT
TOP_KEYS = ("net", "nodes", "edges")
PORT_KEYS = ("in_ports", "out_ports", "in_salvo_conditions", "out_salvo_conditions")
NODE_KEYS = ("factory", "factory_args", *FUNC_ROLES, *PORT_KEYS, "options", "meta")
CONDITION_KEYS = ("when", "ports", "max_salvos")
EDGE_KEYS = ("from", "to", "meta")
# TOML key of a node function -> the role stored in node_settings.functions
_ROLE = dict(zip(FUNC_ROLES, ("exec", "start", "stop", "failed")))
_SIDES = {"in": "input", "out": "output"}
_DEFAULT_MAX_SALVOS = {"in": 1, "out": "infinite"}

EdgeKey = tuple[str, str, str, str]  # from node, from port, to node, to port


@dataclass
class _Notes:
    """What a definition says that the graph and the node settings cannot hold."""

    net_meta: dict | None = None
    node_meta: dict[str, dict] = field(default_factory=dict)
    factories: dict[str, tuple[str, dict]] = field(default_factory=dict)  # node -> (path, args)
    edge_meta: dict[EdgeKey, dict] = field(default_factory=dict)


@dataclass
class _Node:
    node: ns.Node
    functions: dict[str, Callable[..., Any]]  # TOML key -> function
    port_types: dict[str, dict[str, port_types.PortType]]  # side -> port -> type
    options: dict[str, Any]


@dataclass
class _Definition:
    source: str
    net_options: dict[str, Any]
    nodes: dict[str, _Node]
    graph: ns.Graph
    notes: _Notes


def _fail(source: str, where: str, message: str, **fields: Any) -> DefinitionError:
    place = f"{source}: {where}: " if where else f"{source}: "
    return DefinitionError(place + message, path=source, **fields)


def _name_list(names: Any) -> str:
    return ", ".join(sorted(names)) or "none"


class _Reader:
    """Checks one parsed TOML document and builds the graph it describes (no database)."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str, **fields: Any) -> DefinitionError:
        return _fail(self.source, where, message, **fields)

    def table(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a table, got {value!r}")
        return value

    def keys(self, table: dict, allowed: tuple[str, ...], where: str) -> None:
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}", key=unknown[0])

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, got {value!r}")
        return value

    def count(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise self.fail(where, f"must be a whole number from 0 to {MAX_COUNT}, got {value!r}")
        return value

    # -- the document ----------------------------------------------------------------------
    def read(self, doc: dict) -> _Definition:
        self.keys(doc, TOP_KEYS, "")
        notes = _Notes()
        net_options = self.net(doc.get("net", {}), notes)
        pools = set(net_options.get("thread_pools", {})) | set(net_options.get("process_pools", {}))
        nodes_table = self.table(doc.get("nodes", {}), "[nodes]")
        nodes = {name: self.node(name, self.table(spec, f"node {name!r}"), pools, notes)
                 for name, spec in nodes_table.items()}
        edges = self.edges(doc.get("edges", []), {n: d.node for n, d in nodes.items()}, notes)
        graph = ns.Graph([d.node for d in nodes.values()], edges)
        problems = graph.validate()
        if problems:
            raise self.fail("", "the graph is invalid: " + "; ".join(p.message for p in problems))
        return _Definition(self.source, net_options, nodes, graph, notes)

    def net(self, value: Any, notes: _Notes) -> dict[str, Any]:
        options = dict(self.table(value, "[net]"))
        if "meta" in options:
            notes.net_meta = self.table(options.pop("meta"), "[net.meta]")
        try:
            parse_net_config(options)
        except ConfigError as exc:
            raise self.fail("[net]", str(exc), key=getattr(exc, "option", None)) from exc
        return options

    def node(self, name: str, spec: dict, pools: set[str], notes: _Notes) -> _Node:
        where = f"node {name!r}"
        self.keys(spec, NODE_KEYS, where)
        if "meta" in spec:
            notes.node_meta[name] = self.table(spec["meta"], f"{where} meta")
        options = self.table(spec.get("options", {}), f"{where} options")
        try:
            update_node_config(name, NodeConfig(), options, pools=pools)
        except ConfigError as exc:
            raise self.fail(f"{where} options", str(exc), node=name) from exc
        if "factory" in spec:
            return self.factory_node(name, spec, options, notes)
        if "factory_args" in spec:
            raise self.fail(where, "has factory_args but no factory", node=name)
        types: dict[str, dict[str, port_types.PortType]] = {"in": {}, "out": {}}
        ports = {side: self.ports(spec.get(f"{side}_ports", []), side, types[side], where) for side in _SIDES}
        conditions = {side: self.conditions(spec.get(f"{side}_salvo_conditions"), side, ports[side], where)
                      for side in _SIDES}
        functions = {}
        for key in FUNC_ROLES:
            if key in spec:
                functions[key] = self.function(self.string(spec[key], f"{where} {key}"), f"{where} {key}")
        node = ns.Node(name=name, in_ports=ports["in"], out_ports=ports["out"],
                       in_salvo_conditions=conditions["in"], out_salvo_conditions=conditions["out"])
        return _Node(node, functions, types, options)

    def function(self, path: str, where: str) -> Callable[..., Any]:
        try:
            func = import_from_path(path)
        except ConfigError as exc:
            raise self.fail(where, str(exc)) from exc
        if not callable(func):
            raise self.fail(where, f"{path!r} is not a function (got {type(func).__name__})")
        return func

    def factory_node(self, name: str, spec: dict, options: dict, notes: _Notes) -> _Node:
        where = f"node {name!r}"
        explicit = [key for key in (*PORT_KEYS, *FUNC_ROLES) if key in spec]
        if explicit:
            raise self.fail(where, f"has a factory and {', '.join(explicit)}: a factory node takes its ports, salvo "
                                   "conditions and functions from the factory", node=name)
        path = self.string(spec["factory"], f"{where} factory")
        args = self.table(spec.get("factory_args", {}), f"{where} factory_args")
        try:
            check_factory_args(args, where)
            node_spec, *funcs = from_factory(path, **args)
            node = node_from_spec(node_spec, name, where=f"factory {path!r}")
        except ConfigError as exc:
            raise self.fail(where, str(exc), node=name) from exc
        notes.factories[name] = (path, args)
        functions = {key: func for key, func in zip(FUNC_ROLES, funcs) if func is not None}
        return _Node(node, functions, {"in": {}, "out": {}}, options)

    # -- ports and salvo conditions ------------------------------------------------------------
    def ports(self, value: Any, side: str, types: dict, where: str) -> dict[str, ns.Port]:
        where = f"{where} {side}_ports"
        slots: dict[str, int | None] = {}
        if isinstance(value, list):
            for item in value:
                port = self.string(item, f"{where} item")
                if port in slots:
                    raise self.fail(where, f"lists port {port!r} twice")
                slots[port] = None
        elif isinstance(value, dict):
            for port, spec in value.items():
                here = f"{where}.{port}"
                spec = self.table(spec, here)
                self.keys(spec, ("slots", "type"), here)
                slots[port] = self.count(spec["slots"], f"{here} slots") if "slots" in spec else None
                if "type" in spec:
                    types[port] = self.port_type(spec["type"], f"{here} type")
        else:
            raise self.fail(where, f"must be a list of port names or a table of ports, got {value!r}")
        return {p: ns.Port(ns.PortSlotSpec.infinite() if s is None else ns.PortSlotSpec.finite(s))
                for p, s in slots.items()}

    def port_type(self, value: Any, where: str) -> port_types.PortType:
        raw = value.get("class") if isinstance(value, dict) else value
        if isinstance(raw, str) and ("." in raw or ":" in raw) and not is_import_path(raw):
            raise self.fail(where, f"{raw!r} is neither a class name nor an import path ('module:Class')")
        try:
            return port_types.parse(value, where=where)
        except ConfigError as exc:
            raise _fail(self.source, "", str(exc)) from exc

    def conditions(self, value: Any, side: str, ports: dict, where: str) -> dict[str, ns.SalvoCondition]:
        label = f"{side}_salvo_conditions"
        if value is None:
            return _default_conditions(side, sorted(ports))
        out = {}
        for name, spec in self.table(value, f"{where} {label}").items():
            here = f"{where} {label}.{name}"
            spec = self.table(spec, here)
            self.keys(spec, CONDITION_KEYS, here)
            if "when" not in spec:
                raise self.fail(here, "needs 'when', an expression such as \"nonempty(port)\"", key="when")
            try:
                term = expressions.parse(spec["when"], ports=set(ports), where=f"{here} when")
            except ConfigError as exc:
                raise _fail(self.source, "", str(exc), key="when") from exc
            counts = self.condition_ports(spec.get("ports"), side, ports, f"{here} ports")
            max_salvos = spec.get("max_salvos", _DEFAULT_MAX_SALVOS[side])
            if max_salvos != "infinite":
                max_salvos = self.count(max_salvos, f"{here} max_salvos (or \"infinite\")")
            out[name] = ns.SalvoCondition(
                ns.MaxSalvos.infinite() if max_salvos == "infinite" else ns.MaxSalvos.finite(max_salvos),
                counts, term)
        return out

    def condition_ports(self, value: Any, side: str, ports: dict, where: str) -> dict[str, ns.PacketCount]:
        if value is None:
            return {p: ns.PacketCount.all() for p in sorted(ports)}
        if isinstance(value, list):
            value = {self.string(p, f"{where} item"): "all" for p in value}
        counts = {}
        for port, count in self.table(value, where).items():
            if port not in ports:
                raise self.fail(where, f"names port {port!r}, which is not an {_SIDES[side]} port of the node "
                                       f"({_SIDES[side]} ports: {_name_list(ports)})", key=port)
            counts[port] = (ns.PacketCount.all() if count == "all"
                            else ns.PacketCount.count(self.count(count, f"{where}.{port} (or \"all\")")))
        return counts

    # -- edges ---------------------------------------------------------------------------
    def edges(self, value: Any, nodes: dict[str, ns.Node], notes: _Notes) -> list[ns.Edge]:
        if not isinstance(value, list):
            raise self.fail("edges", f"must be a list of {{ from = \"Node.port\", to = \"Node.port\" }}, got {value!r}")
        seen: set[EdgeKey] = set()
        edges = []
        for i, spec in enumerate(value, 1):
            where = f"edge {i}"
            spec = self.table(spec, where)
            self.keys(spec, EDGE_KEYS, where)
            for key in ("from", "to"):
                if key not in spec:
                    raise self.fail(where, f"needs {key!r} (\"Node.port\")", key=key)
            ends = [self.string(spec[key], f"{where} {key}") for key in ("from", "to")]
            where = f"edge {i} ({ends[0]!r} -> {ends[1]!r})"
            source = self.port_ref(ends[0], "out", nodes, where)
            target = self.port_ref(ends[1], "in", nodes, where)
            key = (*source, *target)
            if key in seen:
                raise self.fail(where, "is listed twice")
            seen.add(key)
            if "meta" in spec:
                notes.edge_meta[key] = self.table(spec["meta"], f"{where} meta")
            edges.append(ns.Edge(ns.PortRef(source[0], ns.PortType.Output, source[1]),
                                 ns.PortRef(target[0], ns.PortType.Input, target[1])))
        return edges

    def port_ref(self, text: str, side: str, nodes: dict[str, ns.Node], where: str) -> tuple[str, str]:
        found = _split_port_ref(text, side, nodes)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise self.fail(where, f"{text!r} is ambiguous: it could be " + " or ".join(
                f"node {n!r} port {p!r}" for n, p in found))
        node, dot, port = text.rpartition(".")
        if not dot:
            raise self.fail(where, f"{text!r} must be \"Node.port\"")
        if node not in nodes:
            raise self.fail(where, f"names node {node!r}, which the definition does not have "
                                   f"(nodes: {_name_list(nodes)})", node=node)
        ports = nodes[node].in_ports if side == "in" else nodes[node].out_ports
        raise self.fail(where, f"node {node!r} has no {_SIDES[side]} port {port!r} "
                               f"({_SIDES[side]} ports: {_name_list(ports)})", node=node)


def _split_port_ref(text: str, side: str, nodes: dict[str, ns.Node]) -> list[tuple[str, str]]:
    """Every (node, port) that "node.port" can mean; node names may contain dots."""
    found = []
    for i, char in enumerate(text):
        if char == ".":
            node, port = text[:i], text[i + 1:]
            if node in nodes and port in (nodes[node].in_ports if side == "in" else nodes[node].out_ports):
                found.append((node, port))
    return found


def _default_conditions(side: str, ports: list[str]) -> dict[str, ns.SalvoCondition]:
    if not ports:
        return {}
    nonempty = {p: ns.SalvoConditionTerm.port(p, ns.PortState.non_empty()) for p in ports}
    if side == "in":
        term = nonempty[ports[0]] if len(ports) == 1 else ns.SalvoConditionTerm.and_(list(nonempty.values()))
        return {"default": ns.SalvoCondition(ns.MaxSalvos.finite(1), {p: ns.PacketCount.all() for p in ports}, term)}
    return {f"send_{p}": ns.SalvoCondition(ns.MaxSalvos.infinite(), {p: ns.PacketCount.all()}, nonempty[p])
            for p in ports}


# -- reading -------------------------------------------------------------------------------
def _read_source(path_or_text: str | os.PathLike) -> tuple[str, str]:
    """(text, source): a path (PathLike, or a one-line string naming a .toml or existing file) or TOML text."""
    if isinstance(path_or_text, str) and ("\n" in path_or_text or not (
            path_or_text.endswith(".toml") or os.path.isfile(path_or_text))):
        return path_or_text, STRING_SOURCE
    if not isinstance(path_or_text, (str, os.PathLike)):
        raise DefinitionError(f"a definition is a path or TOML text, got {type(path_or_text).__name__}")
    path = os.fspath(path_or_text)
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8"), path
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{path}: cannot read the definition: {exc}", path=path) from exc


def _parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError; so is a too-long integer
        raise _fail(source, "", f"invalid TOML: {exc}") from exc


def load_definition(path_or_text: str | os.PathLike, *, db: str | os.PathLike | None = None,
                    **config_overrides: Any) -> Net:
    """A new net from a TOML definition (a file path or the text itself).

    Everything is checked before the database is created: options, ports, types, salvo
    expressions, functions (imported), factories (run), edges and the graph. The net
    stores the canonical definition, so `Net.resume(db)` needs nothing but the file
    (with `restore_definition` for factory-made functions). `config_overrides` are Net
    options that win over the file's `[net]`.

    Raises:
        DefinitionError: anything wrong in the definition, naming file and node/edge/key.
        ConfigError: a bad option in `config_overrides`. StorageError: `db` cannot be used.
    """
    from .net import Net

    text, source = _read_source(path_or_text)
    definition = _Reader(source).read(_parse_toml(text, source))
    created = db is not None and not os.path.exists(db)
    net = Net(definition.graph, db=db, **{**definition.net_options, **config_overrides})
    try:
        for name, node in sorted(definition.nodes.items()):
            where = f"node {name!r}"
            try:
                if node.options:
                    net.set_node_config(name, **node.options)
                for port, port_type in node.port_types["in"].items():
                    net.set_input_port_type(name, port, port_type)
                for port, port_type in node.port_types["out"].items():
                    net.set_output_port_type(name, port, port_type)
                if node.functions:
                    net.set_node_exec(name, **node.functions)
            except ConfigError as exc:
                raise _fail(source, where, str(exc), node=name) from exc
        # The stored definition is the file's (canonical): options given here are the net's, kept in its config.
        text = _dumps(net, definition.notes, parse_net_config(definition.net_options).to_json())
        net._rt.journal.add("INSERT OR REPLACE INTO net_meta (key, value) VALUES ('definition', ?)", (text,))
        net._rt.journal.commit()
    except BaseException:
        net.close()
        if created:  # a half-made database of ours: leave no file behind
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(os.fspath(db) + suffix):
                    os.remove(os.fspath(db) + suffix)
        raise
    return net


# -- writing -------------------------------------------------------------------------------
def _stored_definition(net: Net) -> str | None:
    row = net._rt.journal.conn.execute("SELECT value FROM net_meta WHERE key = 'definition'").fetchone()
    return row[0] if row else None


def _stored_notes(net: Net) -> _Notes:
    """The notes of the definition stored with the net (written by `load_definition`)."""
    notes = _Notes()
    text = _stored_definition(net)
    if text is None:
        return notes
    source = f"{net.db_path} (stored definition)"
    doc = _parse_toml(text, source)
    nodes = net._rt.graph_nodes
    notes.net_meta = doc.get("net", {}).get("meta")
    for name, spec in doc.get("nodes", {}).items():
        if name not in nodes:
            continue
        if "meta" in spec:
            notes.node_meta[name] = spec["meta"]
        if "factory" in spec:
            notes.factories[name] = (spec["factory"], spec.get("factory_args", {}))
    for spec in doc.get("edges", []):
        if "meta" in spec:
            ends = [_split_port_ref(spec[key], side, nodes) for key, side in (("from", "out"), ("to", "in"))]
            if all(len(found) == 1 for found in ends):
                notes.edge_meta[(*ends[0][0], *ends[1][0])] = spec["meta"]
    return notes


def _non_default(values: dict[str, Any], defaults: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if value == defaults[key]:
            continue
        if value is None:
            raise _fail(source, where, f"option {key!r} is None, which TOML cannot write; set a value", key=key)
        out[key] = value
    return out


def _ports_doc(ports: dict[str, int | None], types: dict[str, Any]) -> list | dict:
    if not types and all(s is None for s in ports.values()):
        return sorted(ports)
    out = {}
    for port in sorted(ports):
        spec: dict[str, Any] = {}
        if ports[port] is not None:
            spec["slots"] = ports[port]
        if port in types:
            spec["type"] = types[port]
        out[port] = spec
    return out


def _conditions_doc(conditions: dict[str, dict], side: str, ports: dict, source: str, where: str) -> dict:
    out = {}
    for name in sorted(conditions):
        data = conditions[name]
        try:
            spec: dict[str, Any] = {"when": expressions.to_text(term_from_data(data["term"]))}
        except ConfigError as exc:
            raise _fail(source, f"{where} {side}_salvo_conditions.{name}", str(exc)) from exc
        counts = data["ports"]
        if counts != {p: "all" for p in ports}:
            spec["ports"] = (sorted(counts) if all(c == "all" for c in counts.values())
                             else {p: counts[p] for p in sorted(counts)})
        if data["max_salvos"] != _DEFAULT_MAX_SALVOS[side]:
            spec["max_salvos"] = data["max_salvos"]
        out[name] = spec
    return out


def _functions_doc(net: Net, name: str, stored: dict[str, str | None], source: str) -> dict[str, str]:
    """TOML key -> import path of each registered function; refuses one that cannot be imported back."""
    if name in net.unrestored_functions:
        raise _fail(source, f"node {name!r}", f"its {', '.join(net.unrestored_functions[name])} function could not "
                                              "be restored on resume; register it with set_node_exec first", node=name)
    registered = net._rt.functions[name]
    out = {}
    for key, role in _ROLE.items():
        func = getattr(registered, role)
        if func is None:
            continue
        path = stored.get(role)
        try:
            if path is None or import_from_path(path) != func:
                raise ConfigError("it is not reachable by an import path")
        except ConfigError as exc:
            raise _fail(source, f"node {name!r}", f"its {key} {func!r} cannot be saved ({exc}); use a module-level "
                                                  "function, or a factory", node=name, key=key) from None
        out[key] = path
    return out


def _document(net: Net, notes: _Notes, config: dict[str, Any]) -> dict:
    """The canonical TOML document of `net` with net options `config`: sorted, only non-default options."""
    source = net.db_path
    doc: dict[str, Any] = {}
    net_doc = _non_default(config, NetConfig().to_json(), "[net]", source)
    if notes.net_meta is not None:
        net_doc["meta"] = notes.net_meta
    if net_doc:
        doc["net"] = net_doc
    stored = dict(net._rt.journal.conn.execute("SELECT node_name, functions FROM node_settings").fetchall())
    graph = graph_to_data(net._rt.sim.graph)
    nodes: dict[str, Any] = {}
    for data in graph["nodes"]:
        name = data["name"]
        where = f"node {name!r}"
        spec: dict[str, Any] = {}
        types = net.get_port_types(name)
        if name in notes.factories:
            if any(types.values()):
                raise _fail(source, where, "comes from a factory, so its port types cannot be written; set them in "
                                           "the factory's node instead", node=name)
            path, args = notes.factories[name]
            try:
                check_factory_args(args, where)
            except ConfigError as exc:
                raise _fail(source, "", str(exc), node=name) from exc
            spec["factory"] = path
            if args:
                spec["factory_args"] = args
        else:
            spec.update(_functions_doc(net, name, json.loads(stored.get(name, "{}")), source))
            for side in _SIDES:
                if data[f"{side}_ports"]:
                    spec[f"{side}_ports"] = _ports_doc(data[f"{side}_ports"], types[side])
                if data[f"{side}_ports"] or data[f"{side}_salvo_conditions"]:
                    spec[f"{side}_salvo_conditions"] = _conditions_doc(
                        data[f"{side}_salvo_conditions"], side, data[f"{side}_ports"], source, where)
        options = _non_default(net.get_node_config(name), NodeConfig().to_json(), f"{where} options", source)
        if options:
            spec["options"] = options
        if name in notes.node_meta:
            spec["meta"] = notes.node_meta[name]
        nodes[name] = spec
    if nodes:
        doc["nodes"] = nodes
    edges = []
    for key in graph["edges"]:
        edge: dict[str, Any] = {"from": f"{key[0]}.{key[1]}", "to": f"{key[2]}.{key[3]}"}
        if tuple(key) in notes.edge_meta:
            edge["meta"] = notes.edge_meta[tuple(key)]
        edges.append(edge)
    if edges:
        doc["edges"] = edges
    return doc


def _dumps(net: Net, notes: _Notes, config: dict[str, Any]) -> str:
    doc = _document(net, notes, config)
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError) as exc:  # a meta value TOML cannot write
        raise _fail(net.db_path, "", f"cannot be written as TOML: {exc}") from exc


def dumps_definition(net: Net) -> str:
    """The net's definition as canonical TOML text (deterministic: load and dump again gives the same text).

    Works for any open net; meta and factories come from the definition stored by
    `load_definition`, if any.

    Raises:
        DefinitionError: a node function that cannot be imported back by its path (a
            lambda, a closure), factory arguments that are not JSON data, or an option
            TOML cannot write (None).
    """
    net._live()
    return _dumps(net, _stored_notes(net), net._config.to_json())


def save_definition(net: Net, path: str | os.PathLike) -> None:
    """Write the net's definition (`dumps_definition`) to `path`, atomically (a temporary file renamed).

    Raises:
        DefinitionError: as `dumps_definition`, or the file cannot be written.
    """
    text = dumps_definition(net)
    target = os.fspath(path)
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise DefinitionError(f"{target}: cannot write the definition: {exc}", path=target) from exc


def restore_definition(net: Net) -> None:
    """After `Net.resume`: register again the functions of factory nodes, by running their factories.

    Import-path functions are restored by `Net.resume` itself. A net without a stored
    definition is left as it is. Idempotent.

    Raises:
        DefinitionError: a factory fails, or now makes a node other than the stored one.
    """
    net._live()
    notes = _stored_notes(net)
    for name, (path, args) in sorted(notes.factories.items()):
        where = f"node {name!r}"
        source = f"{net.db_path} (stored definition)"
        try:
            node_spec, *funcs = from_factory(path, **args)
            made = node_from_spec(node_spec, name, where=f"factory {path!r}")
        except ConfigError as exc:
            raise _fail(source, where, str(exc), node=name) from exc
        if _node_data(made) != _node_data(net._rt.graph_nodes[name]):
            raise _fail(source, where, f"factory {path!r} now makes a node other than the stored one (ports or salvo "
                                       "conditions changed); resume with the factory's old version", node=name)
        if any(funcs):
            net.set_node_exec(name, *funcs)
        net.unrestored_functions.pop(name, None)


def _node_data(node: ns.Node) -> dict:
    return graph_to_data(ns.Graph([node], []))["nodes"][0]
