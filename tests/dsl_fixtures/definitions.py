"""TOML definitions shared by the DSL tests: the spec's examples ("DSL Format", "Node Factories"), with
import paths pointed at tests.dsl_fixtures, and a small pipeline that runs."""

from __future__ import annotations

SPEC_NET = """\
[net]
# Net-level configuration
on_error = "continue"
history_file = "./history.jsonl"

[net.thread_pools.io]
size = 10

[net.process_pools.heavy]
size = 4

[net.meta]
# Freeform metadata
author = "..."
version = "1.0"
"""

SPEC_NODE_REST = """\
[nodes.MyNode.in_salvo_conditions.default]
when = "nonempty(in1) and nonempty(in2)"
ports = ["in1", "in2"]  # Optional; if omitted, all input ports are included

[nodes.MyNode.out_salvo_conditions.send]
when = "nonempty(out)"
max_salvos = "infinite"  # or a positive integer

[nodes.MyNode.options]
pool = "io"
retries = 3
defer_net_actions = true
timeout = 30.0

[nodes.MyNode.meta]
description = "Processes data"
"""

SPEC_NODE_PORT_LIST = """\
[nodes.MyNode]
in_ports = ["in1", "in2"]
out_ports = ["out"]
""" + SPEC_NODE_REST

# The spec's "Or with port configuration" form; in2, which its condition names, gets a table too.
SPEC_NODE_PORT_TABLES = """\
[nodes.MyNode]
out_ports = ["out"]

# Or with port configuration
[nodes.MyNode.in_ports.in1]
slots = 5
type = "DataFrame"

[nodes.MyNode.in_ports.in2]
""" + SPEC_NODE_REST

SPEC_EXEC_FUNCS = """\
[nodes.MyNode]
exec_node_func = "tests.dsl_fixtures.nodes.my_exec_func"
start_node_func = "tests.dsl_fixtures.nodes.my_start_func"
stop_node_func = "tests.dsl_fixtures.nodes.my_stop_func"
exec_failed_node_func = "tests.dsl_fixtures.nodes.my_failed_func"
"""

SPEC_FACTORY = """\
[nodes.MyNode]
factory = "tests.dsl_fixtures.my_factory"
factory_args = { num_inputs = 3, timeout = 30 }
"""

SPEC_FACTORY_CALLABLE_ARG = """\
[nodes.MyNode]
factory = "tests.dsl_fixtures.func_to_node"
factory_args = { func = "tests.dsl_fixtures.nodes.my_processor", timeout = 30 }
"""

ABCD = """
[nodes.A]
out_ports = ["out"]
[nodes.B]
in_ports = ["in"]
out_ports = ["out", "copy"]
[nodes.C]
in_ports = ["in1"]
[nodes.D]
in_ports = ["in"]
"""

SPEC_EDGES_INLINE = """\
edges = [
    { from = "A.out", to = "B.in" },
    { from = "B.out", to = "C.in1" },
    { from = "B.out", to = "D.in" },
]
""" + ABCD

# netrun-sim allows one edge per output port, so the spec's B.out -> D.in leaves from a second port.
SPEC_EDGES_INLINE_ONE_EDGE_PER_PORT = SPEC_EDGES_INLINE.replace('from = "B.out", to = "D.in"',
                                                                'from = "B.copy", to = "D.in"')

SPEC_EDGES_TABLES = ABCD + """
# Or with metadata
[[edges]]
from = "A.out"
to = "B.in"
[edges.meta]
label = "main flow"
"""

SPEC_EXAMPLES = {
    "net": SPEC_NET,
    "node_port_list": SPEC_NET + SPEC_NODE_PORT_LIST,
    "node_port_tables": SPEC_NET + SPEC_NODE_PORT_TABLES,
    "exec_funcs": SPEC_EXEC_FUNCS,
    "factory": SPEC_FACTORY,
    "factory_callable_arg": SPEC_FACTORY_CALLABLE_ARG,
    "edges_inline": SPEC_EDGES_INLINE_ONE_EDGE_PER_PORT,
    "edges_tables": SPEC_EDGES_TABLES,
}

TYPED_PORTS = """\
[nodes.Points]
out_ports = ["out"]

[nodes.Out.in_ports.exact]
type = { class = "tests.dsl_fixtures.nodes:Point", isinstance = false }

[nodes.Out.in_ports.classes]
slots = 2
type = { class = "tests.dsl_fixtures.nodes:Point", subclass = true }

[nodes.Out.in_ports.named]
type = "Point"

[[edges]]
from = "Points.out"
to = "Out.exact"
"""

PIPELINE = """\
[net]
on_error = "raise"

[net.meta]
purpose = "doubling"

[nodes.Source]
out_ports = ["out"]
exec_node_func = "tests.dsl_fixtures.nodes.source"

[nodes.Double]
in_ports = ["in"]
out_ports = ["out"]
exec_node_func = "tests.dsl_fixtures.nodes.double"

[nodes.Sum]
factory = "tests.dsl_fixtures.my_factory"
factory_args = { num_inputs = 1 }

[nodes.Sink]
in_ports = ["in"]
exec_node_func = "tests.dsl_fixtures.nodes.sink"
[nodes.Sink.meta]
description = "collects"

[[edges]]
from = "Source.out"
to = "Double.in"
[edges.meta]
label = "numbers"

[[edges]]
from = "Double.out"
to = "Sum.in0"

[[edges]]
from = "Sum.out"
to = "Sink.in"
"""
