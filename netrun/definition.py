"""Reading a net definition (SPEC "DSL Format"): TOML text -> a checked graph and node settings.

Pure: no database. Everything a definition says is checked here, before a net is made:
options (with the same validation as `Net`), ports, port types, salvo expressions,
functions (imported), factories (run), edges and the graph (netrun-sim's validation).

    [net]                          Net options; [net.meta] is freeform
    [nodes.<name>]                 in_ports / out_ports: a list of names, or tables with
                                   `slots` and `type`; in_salvo_conditions / out_salvo_conditions
                                   (`when`, `ports`, `max_salvos`); options; params (the
                                   node's `ctx.params`); meta; functions by import path; or
                                   `factory` + `factory_args`
    edges = [{ from = "A.out", to = "B.in" }]   or   [[edges]] tables with a `meta` table

Defaults (DESIGN "open points" 10): an input condition's `max_salvos` is 1, an output
one's "infinite"; omitted `ports` means every port of that side (all packets). A node with
input ports and no `in_salvo_conditions` gets `default`: every input port non-empty; one
with output ports and no `out_salvo_conditions` gets `send_<port>` per output port.

Every problem raises `DefinitionError` naming the file (or "<string>") and the node, edge
or key; the errors of the layers below are its `__cause__`. It also says where in the text:
`file:LINE: ...` (`file:LINE:COLUMN: ...` for a TOML syntax error or a character of a `when`
expression). tomllib keeps no positions, so `Locator` finds them again in the text, only
when there is an error to report.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import netrun_sim as ns

from . import expressions, port_types
from .config import NodeConfig, parse_net_config, update_node_config
from .errors import ConfigError, DefinitionError
from .params import Params, check_params
from .factories import FUNC_ROLES, check_factory_args, from_factory, generator_problem, import_from_path, is_import_path, node_from_spec
from .tomlpos import KeyPath, Locator, toml_error_position

STRING_SOURCE = "<string>"
MAX_COUNT = expressions.MAX_COUNT
TOP_KEYS = ("net", "nodes", "edges")
PORT_KEYS = ("in_ports", "out_ports", "in_salvo_conditions", "out_salvo_conditions")
NODE_KEYS = ("factory", "factory_args", *FUNC_ROLES, *PORT_KEYS, "options", "params", "meta")
CONDITION_KEYS = ("when", "ports", "max_salvos")
EDGE_KEYS = ("from", "to", "meta")
SIDES = {"in": "input", "out": "output"}
DEFAULT_MAX_SALVOS = {"in": 1, "out": "infinite"}

EdgeKey = tuple[str, str, str, str]  # from node, from port, to node, to port
_OPTION_PART = re.compile(r"""\[(?:'([^']*)'|"([^"]*)")\]|([^.\[\]]+)""")  # thread_pools['io'].size


@dataclass
class Notes:
    """What a definition says that the graph and the node settings cannot hold."""

    net_meta: dict | None = None
    node_meta: dict[str, dict] = field(default_factory=dict)
    factories: dict[str, tuple[str, dict]] = field(default_factory=dict)  # node -> (path, args)
    edge_meta: dict[EdgeKey, dict] = field(default_factory=dict)


@dataclass
class NodeDef:
    """One checked node: the netrun-sim node and the settings the net applies to it."""

    node: ns.Node
    functions: dict[str, Callable[..., Any]]  # TOML key -> function
    port_types: dict[str, dict[str, port_types.PortType]]  # side -> port -> type
    options: dict[str, Any]


@dataclass
class Definition:
    """A checked definition, ready to become a net."""

    source: str  # the file, or "<string>"
    net_options: dict[str, Any]
    nodes: dict[str, NodeDef]
    graph: ns.Graph
    notes: Notes


def fail(source: str, where: str, message: str, *, line: int | None = None, column: int | None = None,
         **fields: Any) -> DefinitionError:
    """The error for `message` about `where` (a node, edge or key) in `source`, at `line`/`column` if known."""
    position = "" if line is None else f":{line}" + ("" if column is None else f":{column}")
    place = f"{source}{position}: {where}: " if where else f"{source}{position}: "
    return DefinitionError(place + message, path=source, line=line, column=column, **fields)


def _name_list(names: Any) -> str:
    return ", ".join(sorted(names)) or "none"


class Reader:
    """Checks one parsed TOML document and builds the graph it describes (no database).

    Every check names the place it looks at twice: `where` for the message ("node 'N' options")
    and `at`, its key path, for the line of the error (found in `text`, when given).
    """

    def __init__(self, source: str, text: str | None = None, *, collect: bool = False) -> None:
        self.source = source
        self.text = text
        self._locator: Locator | None = None
        # collect=True: record every error and go on with the other nodes and edges (`check_definition`)
        self.errors: list[DefinitionError] | None = [] if collect else None
        self.failed_nodes: set[str] = set()

    def each(self, default: Any, check: Callable[..., Any], *args: Any) -> Any:
        """`check(*args)`; when collecting, an error is recorded and `default` returned instead."""
        if self.errors is None:
            return check(*args)
        try:
            return check(*args)
        except DefinitionError as exc:
            self.errors.append(exc)
            return default

    def fail(self, where: str, message: str, at: KeyPath = (), *, within: int | None = None,
             **fields: Any) -> DefinitionError:
        """The error at key path `at` (`within`: the index of the character meant in its string value)."""
        if self.text is None:
            return fail(self.source, where, message, **fields)
        if self._locator is None:  # built on the first error only: a good definition costs no second scan
            self._locator = Locator(self.text)
        line, column = self._locator.position(at, within)
        return fail(self.source, where, message, line=line, column=column, **fields)

    def table(self, value: Any, where: str, at: KeyPath) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a table, got {value!r}", at)
        return value

    def keys(self, table: dict, allowed: tuple[str, ...], where: str, at: KeyPath) -> None:
        unknown = sorted(set(table) - set(allowed))
        if unknown:
            raise self.fail(where, f"unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}",
                            (*at, unknown[0]), key=unknown[0])

    def string(self, value: Any, where: str, at: KeyPath) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"must be a string, got {value!r}", at)
        return value

    def count(self, value: Any, where: str, at: KeyPath) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
            raise self.fail(where, f"must be a whole number from 0 to {MAX_COUNT}, got {value!r}", at)
        return value

    # -- the document ----------------------------------------------------------------------
    def read(self, doc: dict) -> Definition:
        self.each(None, self.keys, doc, TOP_KEYS, "", ())
        notes = Notes()
        net_options = self.each({}, self.net, doc.get("net", {}), notes)
        pools = {p for kind in ("thread_pools", "process_pools", "remote_pools") for p in net_options.get(kind, {})}
        nodes_table = self.each({}, self.table, doc.get("nodes", {}), "[nodes]", ("nodes",))
        nodes = {}
        for name, spec in nodes_table.items():
            node = self.each(None, lambda: self.node(name, self.table(spec, f"node {name!r}", ("nodes", name)), pools,
                                                     notes))
            if node is None:
                self.failed_nodes.add(name)
            else:
                nodes[name] = node
        edges = self.each([], self.edges, doc.get("edges", []), {n: d.node for n, d in nodes.items()}, notes)
        graph = ns.Graph([d.node for d in nodes.values()], edges)
        if self.errors:  # a graph with parts left out would report problems that are not there
            return Definition(self.source, net_options, nodes, graph, notes)
        problems = graph.validate()
        if problems and self.errors is not None:
            self.errors.extend(self.fail("", f"the graph is invalid: {p.message}", graph_problem_place(p, edges))
                               for p in problems)
        elif problems:
            raise self.fail("", "the graph is invalid: " + "; ".join(p.message for p in problems),
                            graph_problem_place(problems[0], edges))
        return Definition(self.source, net_options, nodes, graph, notes)

    def net(self, value: Any, notes: Notes) -> dict[str, Any]:
        options = dict(self.table(value, "[net]", ("net",)))
        if "meta" in options:
            notes.net_meta = self.table(options.pop("meta"), "[net.meta]", ("net", "meta"))
        try:
            parse_net_config(options)
        except ConfigError as exc:
            option = getattr(exc, "option", None)
            raise self.fail("[net]", str(exc), ("net", *option_path(option)), key=option) from exc
        return options

    def node(self, name: str, spec: dict, pools: set[str], notes: Notes) -> NodeDef:
        where, at = f"node {name!r}", ("nodes", name)
        self.keys(spec, NODE_KEYS, where, at)
        if "meta" in spec:
            notes.node_meta[name] = self.table(spec["meta"], f"{where} meta", (*at, "meta"))
        options = self.table(spec.get("options", {}), f"{where} options", (*at, "options"))
        if "params" in options:
            raise self.fail(f"{where} options", "params go in a table of their own: [nodes.NAME.params]",
                            (*at, "options", "params"), node=name, key="params")
        try:
            update_node_config(name, NodeConfig(), options, pools=pools)
        except ConfigError as exc:
            raise self.fail(f"{where} options", str(exc), (*at, "options", *option_path(getattr(exc, "option", None))),
                            node=name) from exc
        if "params" in spec:
            options = {**options, "params": self.params(name, spec["params"], where, at)}
        if "factory" in spec:
            return self.factory_node(name, spec, options, notes)
        if "factory_args" in spec:
            raise self.fail(where, "has factory_args but no factory", (*at, "factory_args"), node=name)
        types: dict[str, dict[str, port_types.PortType]] = {"in": {}, "out": {}}
        ports = {side: self.ports(spec.get(f"{side}_ports", []), side, types[side], where, at) for side in SIDES}
        conditions = {side: self.conditions(spec.get(f"{side}_salvo_conditions"), side, ports[side], where, at)
                      for side in SIDES}
        functions = {}
        for key in FUNC_ROLES:  # each checked: a node with two bad functions reports both
            if key in spec:
                here = f"{where} {key}"
                func = self.each(None, lambda: self.function(self.string(spec[key], here, (*at, key)), here, (*at, key)))
                if func is not None:
                    functions[key] = func
        node = ns.Node(name=name, in_ports=ports["in"], out_ports=ports["out"],
                       in_salvo_conditions=conditions["in"], out_salvo_conditions=conditions["out"])
        return NodeDef(node, functions, types, options)

    def params(self, name: str, value: Any, where: str, at: KeyPath) -> Params:
        table = self.table(value, f"{where} params", (*at, "params"))
        try:
            return check_params(name, table)
        except ConfigError as exc:
            keys = getattr(exc, "keys", ())
            raise self.fail("", str(exc), (*at, "params", *keys), node=name, key=getattr(exc, "key", None)) from exc

    def function(self, path: str, where: str, at: KeyPath) -> Callable[..., Any]:
        try:
            func = import_from_path(path)
        except ConfigError as exc:
            raise self.fail(where, str(exc), at) from exc
        if not callable(func):
            raise self.fail(where, f"{path!r} is not a function (got {type(func).__name__})", at)
        problem = generator_problem(func)
        if problem is not None:
            raise self.fail(where, f"{path!r}: {problem}", at)
        return func

    def factory_node(self, name: str, spec: dict, options: dict, notes: Notes) -> NodeDef:
        where, at = f"node {name!r}", ("nodes", name)
        explicit = [key for key in (*PORT_KEYS, *FUNC_ROLES) if key in spec]
        if explicit:
            raise self.fail(where, f"has a factory and {', '.join(explicit)}: a factory node takes its ports, salvo "
                                   "conditions and functions from the factory", (*at, explicit[0]), node=name)
        path = self.string(spec["factory"], f"{where} factory", (*at, "factory"))
        args = self.table(spec.get("factory_args", {}), f"{where} factory_args", (*at, "factory_args"))
        try:
            check_factory_args(args, where)
        except ConfigError as exc:
            raise self.fail(where, str(exc), (*at, "factory_args"), node=name) from exc
        try:
            node_spec, *funcs = from_factory(path, **args)
            node = node_from_spec(node_spec, name, where=f"factory {path!r}")
        except ConfigError as exc:
            raise self.fail(where, str(exc), (*at, "factory"), node=name) from exc
        notes.factories[name] = (path, args)
        functions = {key: func for key, func in zip(FUNC_ROLES, funcs) if func is not None}
        return NodeDef(node, functions, {"in": {}, "out": {}}, options)

    # -- ports and salvo conditions ------------------------------------------------------------
    def ports(self, value: Any, side: str, types: dict, where: str, at: KeyPath) -> dict[str, ns.Port]:
        where, at = f"{where} {side}_ports", (*at, f"{side}_ports")
        slots: dict[str, int | None] = {}
        if isinstance(value, list):
            for i, item in enumerate(value):
                port = self.string(item, f"{where} item", (*at, i))
                if port in slots:
                    raise self.fail(where, f"lists port {port!r} twice", (*at, i))
                slots[port] = None
        elif isinstance(value, dict):
            for port, spec in value.items():
                here, there = f"{where}.{port}", (*at, port)
                spec = self.table(spec, here, there)
                self.keys(spec, ("slots", "type"), here, there)
                slots[port] = self.count(spec["slots"], f"{here} slots", (*there, "slots")) if "slots" in spec else None
                if "type" in spec:
                    types[port] = self.port_type(spec["type"], f"{here} type", (*there, "type"))
        else:
            raise self.fail(where, f"must be a list of port names or a table of ports, got {value!r}", at)
        return {p: ns.Port(ns.PortSlotSpec.infinite() if s is None else ns.PortSlotSpec.finite(s))
                for p, s in slots.items()}

    def port_type(self, value: Any, where: str, at: KeyPath) -> port_types.PortType:
        raw = value.get("class") if isinstance(value, dict) else value
        if isinstance(raw, str) and ("." in raw or ":" in raw) and not is_import_path(raw):
            raise self.fail(where, f"{raw!r} is neither a class name nor an import path ('module:Class')", at)
        try:
            return port_types.parse(value, where=where)
        except ConfigError as exc:
            raise self.fail("", str(exc), at) from exc

    def conditions(self, value: Any, side: str, ports: dict, where: str, at: KeyPath) -> dict[str, ns.SalvoCondition]:
        label = f"{side}_salvo_conditions"
        if value is None:
            return default_conditions(side, sorted(ports))
        out = {}
        for name, spec in self.table(value, f"{where} {label}", (*at, label)).items():
            here, there = f"{where} {label}.{name}", (*at, label, name)
            spec = self.table(spec, here, there)
            self.keys(spec, CONDITION_KEYS, here, there)
            if "when" not in spec:
                raise self.fail(here, "needs 'when', an expression such as \"nonempty(port)\"", there, key="when")
            try:
                term = expressions.parse(spec["when"], ports=set(ports), where=f"{here} when")
            except ConfigError as exc:
                column = getattr(exc, "column", None)  # 1-based, in the expression
                raise self.fail("", str(exc), (*there, "when"), within=None if column is None else column - 1,
                                key="when") from exc
            counts = self.condition_ports(spec.get("ports"), side, ports, f"{here} ports", (*there, "ports"))
            max_salvos = spec.get("max_salvos", DEFAULT_MAX_SALVOS[side])
            if max_salvos != "infinite":
                max_salvos = self.count(max_salvos, f"{here} max_salvos (or \"infinite\")", (*there, "max_salvos"))
            out[name] = ns.SalvoCondition(
                ns.MaxSalvos.infinite() if max_salvos == "infinite" else ns.MaxSalvos.finite(max_salvos),
                counts, term)
        return out

    def condition_ports(self, value: Any, side: str, ports: dict, where: str,
                        at: KeyPath) -> dict[str, ns.PacketCount]:
        if value is None:
            return {p: ns.PacketCount.all() for p in sorted(ports)}
        places: dict[str, KeyPath] = {}  # port -> its place, when `value` is a list
        if isinstance(value, list):
            places = {self.string(p, f"{where} item", (*at, i)): (*at, i) for i, p in enumerate(value)}
            value = dict.fromkeys(places, "all")
        counts = {}
        for port, count in self.table(value, where, at).items():
            there = places.get(port, (*at, port))
            if port not in ports:
                raise self.fail(where, f"names port {port!r}, which is not an {SIDES[side]} port of the node "
                                       f"({SIDES[side]} ports: {_name_list(ports)})", there, key=port)
            counts[port] = (ns.PacketCount.all() if count == "all"
                            else ns.PacketCount.count(self.count(count, f"{where}.{port} (or \"all\")", there)))
        return counts

    # -- edges ---------------------------------------------------------------------------
    def edges(self, value: Any, nodes: dict[str, ns.Node], notes: Notes) -> list[ns.Edge]:
        if not isinstance(value, list):
            raise self.fail("edges", f"must be a list of {{ from = \"Node.port\", to = \"Node.port\" }}, got {value!r}",
                            ("edges",))
        seen: set[EdgeKey] = set()
        edges = [self.each(None, self.edge, i, spec, nodes, notes, seen) for i, spec in enumerate(value, 1)]
        return [edge for edge in edges if edge is not None]

    def edge(self, i: int, spec: Any, nodes: dict[str, ns.Node], notes: Notes, seen: set[EdgeKey]) -> ns.Edge | None:
        """Edge number `i` (from 1); None for one that names a node whose own errors were reported."""
        where, at = f"edge {i}", ("edges", i - 1)
        spec = self.table(spec, where, at)
        self.keys(spec, EDGE_KEYS, where, at)
        for key in ("from", "to"):
            if key not in spec:
                raise self.fail(where, f"needs {key!r} (\"Node.port\")", at, key=key)
        ends = [self.string(spec[key], f"{where} {key}", (*at, key)) for key in ("from", "to")]
        if any(end.startswith(f"{name}.") for end in ends for name in self.failed_nodes):
            return None
        where = f"edge {i} ({ends[0]!r} -> {ends[1]!r})"
        source = self.port_ref(ends[0], "out", nodes, where, (*at, "from"))
        target = self.port_ref(ends[1], "in", nodes, where, (*at, "to"))
        key = (*source, *target)
        if key in seen:
            raise self.fail(where, "is listed twice", at)
        seen.add(key)
        if "meta" in spec:
            notes.edge_meta[key] = self.table(spec["meta"], f"{where} meta", (*at, "meta"))
        return ns.Edge(ns.PortRef(source[0], ns.PortType.Output, source[1]),
                       ns.PortRef(target[0], ns.PortType.Input, target[1]))

    def port_ref(self, text: str, side: str, nodes: dict[str, ns.Node], where: str, at: KeyPath) -> tuple[str, str]:
        found = split_port_ref(text, side, nodes)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise self.fail(where, f"{text!r} is ambiguous: it could be " + " or ".join(
                f"node {n!r} port {p!r}" for n, p in found), at)
        node, dot, port = text.rpartition(".")
        if not dot:
            raise self.fail(where, f"{text!r} must be \"Node.port\"", at)
        if node not in nodes:
            raise self.fail(where, f"names node {node!r}, which the definition does not have "
                                   f"(nodes: {_name_list(nodes)})", at, node=node)
        ports = nodes[node].in_ports if side == "in" else nodes[node].out_ports
        raise self.fail(where, f"node {node!r} has no {SIDES[side]} port {port!r} "
                               f"({SIDES[side]} ports: {_name_list(ports)})", at, node=node)


def option_path(option: str | None) -> KeyPath:
    """The key path of a config error's option label: "thread_pools['io'].size" -> ("thread_pools", "io", "size")."""
    return tuple("".join(parts) for parts in _OPTION_PART.findall(option or ""))


def graph_problem_place(problem: ns.GraphValidationErrorInfo, edges: list[ns.Edge]) -> KeyPath:
    """The key path a netrun-sim graph problem is about, as far as its details tell (else the document)."""
    details = problem.details
    port = details.get("output_port")
    if isinstance(port, ns.PortRef):  # too many edges from one output: point at the second one
        indexes = [i for i, edge in enumerate(edges)
                   if (edge.source.node_name, edge.source.port_name) == (port.node_name, port.port_name)]
        return ("edges", indexes[1]) if len(indexes) > 1 else ("edges",)
    node, condition = details.get("node_name"), details.get("condition_name")
    if not isinstance(node, str):
        return ()
    if isinstance(condition, str) and problem.kind == "InputSalvoConditionInvalidMaxSalvos":
        return ("nodes", node, "in_salvo_conditions", condition, "max_salvos")
    return ("nodes", node)


def split_port_ref(text: str, side: str, nodes: dict[str, ns.Node]) -> list[tuple[str, str]]:
    """Every (node, port) that "node.port" can mean; node names may contain dots."""
    found = []
    for i, char in enumerate(text):
        if char == ".":
            node, port = text[:i], text[i + 1:]
            if node in nodes and port in (nodes[node].in_ports if side == "in" else nodes[node].out_ports):
                found.append((node, port))
    return found


def default_conditions(side: str, ports: list[str]) -> dict[str, ns.SalvoCondition]:
    if not ports:
        return {}
    nonempty = {p: ns.SalvoConditionTerm.port(p, ns.PortState.non_empty()) for p in ports}
    if side == "in":
        term = nonempty[ports[0]] if len(ports) == 1 else ns.SalvoConditionTerm.and_(list(nonempty.values()))
        return {"default": ns.SalvoCondition(ns.MaxSalvos.finite(1), {p: ns.PacketCount.all() for p in ports}, term)}
    return {f"send_{p}": ns.SalvoCondition(ns.MaxSalvos.infinite(), {p: ns.PacketCount.all()}, nonempty[p])
            for p in ports}


# -- positions -------------------------------------------------------------------------------
# -- reading -------------------------------------------------------------------------------
def read_source(path_or_text: str | os.PathLike) -> tuple[str, str]:
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


def parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError is a ValueError; so is a too-long integer
        line, column = toml_error_position(exc, text)
        raise fail(source, "", f"invalid TOML: {exc}", line=line, column=column) from exc


def read_definition(path_or_text: str | os.PathLike) -> Definition:
    """Read and check a definition (a file path or TOML text); nothing is written.

    Raises:
        DefinitionError: anything wrong in it, naming the file and the node, edge or key, with
            the line (`file:LINE: ...`, and `line`/`column` fields) of its place in the text.
    """
    text, source = read_source(path_or_text)
    return Reader(source, text).read(parse_toml(text, source))
