"""Net definitions as TOML (SPEC "DSL Format", "Partial Serialization"): load, save, and restore on resume.

`definition` reads and checks a document; this module makes the net from it, and writes
any net back. `dumps_definition` writes a canonical text (sorted, only non-default options,
defaults spelled out where omitting them would mean something else), so save -> load ->
save is byte-identical. A net loaded from a definition keeps that canonical text in
`net_meta` ('definition'): node and edge `meta` and factories live there, since the graph
has no place for them, and `restore_definition` re-runs the factories when the net is
resumed from its file.
"""

from __future__ import annotations

import json
import os
from typing import Any

import netrun_sim as ns
import tomli_w

from . import expressions
from .config import NetConfig, NodeConfig, parse_net_config
from .definition import DEFAULT_MAX_SALVOS, SIDES, Notes, fail, parse_toml, read_definition, split_port_ref
from .errors import ConfigError, DefinitionError
from .factories import FUNC_ROLES, check_factory_args, dotted_path, from_factory, import_from_path, node_from_spec
from .graphio import graph_to_data, term_from_data

# `net.py` calls into this module (Net.load_definition, Net.resume, save_definition) and hands it
# the net, or the Net class to build one with: this module never imports `net` (no import cycle).
Net = Any

# TOML key of a node function -> the role stored in node_settings.functions
_ROLE = dict(zip(FUNC_ROLES, ("exec", "start", "stop", "failed")))


def load_definition(path_or_text: str | os.PathLike, *, net_class: Any, db: str | os.PathLike | None = None,
                    **config_overrides: Any) -> Net:
    """A new net from a TOML definition (a file path or the text itself).

    Everything is checked before the database is created: options, ports, types, salvo
    expressions, functions (imported), factories (run), edges and the graph. The net
    stores the canonical definition, so `Net.resume(db)` needs nothing but the file
    (with `restore_definition` for factory-made functions). `config_overrides` are Net
    options that win over the file's `[net]`. `net_class`: `netrun.Net` (passed by it).

    Raises:
        DefinitionError: anything wrong in the definition, naming file and node/edge/key.
        ConfigError: a bad option in `config_overrides`. StorageError: `db` cannot be used.
    """
    definition = read_definition(path_or_text)
    source = definition.source
    created = db is not None and not os.path.exists(db)
    net = net_class(definition.graph, db=db, **{**definition.net_options, **config_overrides})
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
                raise fail(source, where, str(exc), node=name) from exc
        # The stored definition is the file's (canonical): options given here are the net's, kept in its config.
        text = _dumps(net, definition.notes, parse_net_config(definition.net_options).to_json())
        net._rt.journal.add("INSERT OR REPLACE INTO net_meta (key, value) VALUES ('definition', ?)", (text,))
        net._rt.journal.commit()
    except BaseException:
        net.close()
        if created:  # a half-made database of ours: leave no file behind
            for suffix in ("", "-wal", "-shm", "-journal", "-lock"):
                if os.path.exists(os.fspath(db) + suffix):
                    os.remove(os.fspath(db) + suffix)
        raise
    return net


# -- writing -------------------------------------------------------------------------------
def _stored_definition(net: Net) -> str | None:
    row = net._rt.journal.conn.execute("SELECT value FROM net_meta WHERE key = 'definition'").fetchone()
    return row[0] if row else None


def _stored_notes(net: Net) -> Notes:
    """The notes of the definition stored with the net (written by `load_definition`)."""
    notes = Notes()
    text = _stored_definition(net)
    if text is None:
        return notes
    source = f"{net.db_path} (stored definition)"
    doc = parse_toml(text, source)
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
            ends = [split_port_ref(spec[key], side, nodes) for key, side in (("from", "out"), ("to", "in"))]
            if all(len(found) == 1 for found in ends):
                notes.edge_meta[(*ends[0][0], *ends[1][0])] = spec["meta"]
    return notes


def _non_default(values: dict[str, Any], defaults: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    out = {}
    for key, value in values.items():
        if value == defaults[key]:
            continue
        if value is None:
            raise fail(source, where, f"option {key!r} is None, which TOML cannot write; set a value", key=key)
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
            spec["type"] = _dotted_type(types[port])
        out[port] = spec
    return out


def _dotted_type(data: Any) -> Any:
    """A port type's data with its class as the spec's dotted import path (a class name stays as it is)."""
    if not isinstance(data, dict):
        return data
    return {**data, "class": dotted_path(data["class"], import_from_path(data["class"]))}


def _conditions_doc(conditions: dict[str, dict], side: str, ports: dict, source: str, where: str) -> dict:
    out = {}
    for name in sorted(conditions):
        data = conditions[name]
        try:
            spec: dict[str, Any] = {"when": expressions.to_text(term_from_data(data["term"]))}
        except ConfigError as exc:
            raise fail(source, f"{where} {side}_salvo_conditions.{name}", str(exc)) from exc
        counts = data["ports"]
        if counts != {p: "all" for p in ports}:
            spec["ports"] = (sorted(counts) if all(c == "all" for c in counts.values())
                             else {p: counts[p] for p in sorted(counts)})
        if data["max_salvos"] != DEFAULT_MAX_SALVOS[side]:
            spec["max_salvos"] = data["max_salvos"]
        out[name] = spec
    return out


def _functions_doc(net: Net, name: str, stored: dict[str, str | None], source: str) -> dict[str, str]:
    """TOML key -> import path of each registered function; refuses one that cannot be imported back."""
    if name in net.unrestored_functions:
        raise fail(source, f"node {name!r}", f"its {', '.join(net.unrestored_functions[name])} function could not "
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
            raise fail(source, f"node {name!r}", f"its {key} {func!r} cannot be saved ({exc}); use a module-level "
                                                  "function, or a factory", node=name, key=key) from None
        out[key] = dotted_path(path, func)  # the spec's form: "module.func"
    return out


def _document(net: Net, notes: Notes, config: dict[str, Any]) -> dict:
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
                raise fail(source, where, "comes from a factory, so its port types cannot be written; set them in "
                                           "the factory's node instead", node=name)
            path, args = notes.factories[name]
            try:
                check_factory_args(args, where)
            except ConfigError as exc:
                raise fail(source, "", str(exc), node=name) from exc
            spec["factory"] = path
            if args:
                spec["factory_args"] = args
        else:
            spec.update(_functions_doc(net, name, json.loads(stored.get(name, "{}")), source))
            for side in SIDES:
                if data[f"{side}_ports"]:
                    spec[f"{side}_ports"] = _ports_doc(data[f"{side}_ports"], types[side])
                if data[f"{side}_ports"] or data[f"{side}_salvo_conditions"]:
                    spec[f"{side}_salvo_conditions"] = _conditions_doc(
                        data[f"{side}_salvo_conditions"], side, data[f"{side}_ports"], source, where)
        options = _non_default(net.get_node_config(name), NodeConfig().to_json(), f"{where} options", source)
        params = options.pop("params", None)
        if options:
            spec["options"] = options
        if params:
            spec["params"] = params
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


def _dumps(net: Net, notes: Notes, config: dict[str, Any]) -> str:
    doc = _document(net, notes, config)
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError) as exc:  # a meta value TOML cannot write
        raise fail(net.db_path, "", f"cannot be written as TOML: {exc}") from exc


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


def restore_definition(net: Net) -> dict[str, str]:
    """After `Net.resume`: register again the functions of factory nodes, by running their factories.

    Import-path functions are restored by `Net.resume` itself. A net without a stored
    definition is left as it is. Like resume, this never fails for a function it cannot
    bring back: a factory that cannot be imported, raises, or now makes a node other than
    the stored one leaves its node unregistered (in `net.unrestored_functions`; its epochs
    stay startable) and is reported in the result. Idempotent.

    Returns:
        node -> why its factory's functions were not restored (empty when all were).
    """
    net._live()
    source = f"{net.db_path} (stored definition)"
    failed: dict[str, str] = {}
    for name, (path, args) in sorted(_stored_notes(net).factories.items()):
        try:
            node_spec, *funcs = from_factory(path, **args)
            made = node_from_spec(node_spec, name, where=f"factory {path!r}")
            if _node_data(made) != _node_data(net._rt.graph_nodes[name]):
                raise ConfigError(f"factory {path!r} now makes a node other than the stored one (ports or salvo "
                                  "conditions changed); resume with the factory's old version")
        except ConfigError as exc:
            failed[name] = f"{source}: node {name!r}: {exc}"
            net.unrestored_functions.setdefault(name, ["exec"])
            continue
        if any(funcs):
            net.set_node_exec(name, *funcs)
        net.unrestored_functions.pop(name, None)
    return failed


def _node_data(node: ns.Node) -> dict:
    return graph_to_data(ns.Graph([node], []))["nodes"][0]
