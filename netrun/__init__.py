"""netrun: run flow-based development graphs, with every step durable in SQLite.

Layers (imports flow downwards only):

    net          public facade: validates input, delegates
      runtime    the loop: run until blocked, queue epochs, run them, apply results
        actions / context   what a node function sees and does
        queue    epoch job queue table (claim with a lease, complete)
        journal  sim steps -> history/epochs/packets rows, committed atomically
        values   packet values and value functions (pickle / cloudpickle)
        sim      the only importer of netrun_sim.NetSim; netrun <-> sim ID maps
        history / capture   JSONL export and print capture
      migrate    schema migrations and file checks
        db       apsw connections, pragmas, IMMEDIATE transactions
    config, errors, clock, graphio   leaves used by all of the above
    dsl -> definition -> {expressions, factories, port_types}   the TOML definition layer
    control, pools -> worker   background runs; thread and process pool workers
    ownership    the owner lock: one process runs a net at a time

    cli          the `netrun` command, over net and:
      inspector -> lineage   a database file read-only: status, history, logs, trace
      graphtext              a graph as Mermaid, DOT or JSON text
"""


from .version import __version__  # noqa: E402

from netrun_sim import (  # noqa: E402 - graph types and sim errors, re-exported
    CannotFinishNonEmptyEpochError,
    CannotMovePacketFromRunningEpochError,
    CannotMovePacketIntoRunningEpochError,
    Edge,
    EdgeNotFoundError,
    EpochNotFoundError,
    EpochNotRunningError,
    EpochNotStartableError,
    Graph,
    GraphValidationError,
    GraphValidationErrorInfo,
    InputPortFullError,
    InputPortNotFoundError,
    MaxSalvos,
    MaxSalvosExceededError,
    Node,
    NodeNotFoundError,
    OutputPortFullError,
    OutputPortNotFoundError,
    PacketCount,
    PacketNotAtInputPortError,
    PacketNotFoundError,
    PacketNotInAnyNodeError,
    Port,
    PortRef,
    PortSlotSpec,
    PortState,
    PortType,
    SalvoCondition,
    SalvoConditionNotFoundError,
    SalvoConditionNotMetError,
    SalvoConditionTerm,
    UnsentOutputSalvoError,
)
from netrun_sim import NetrunError as NetActionError  # noqa: E402 - the sim errors' base

from .context import NodeExecutionContext, NodeFailureContext, Packet  # noqa: E402
from .deadletters import DeadLetter, DeadLetterQueue  # noqa: E402
from .deferred import DeferredPacket  # noqa: E402
from .errors import (  # noqa: E402
    CheckpointError,
    ConfigError,
    ContextUsageError,
    CorruptDatabase,
    DatabaseVersionError,
    DefinitionError,
    EpochCancelled,
    EpochTimeout,
    ExpressionError,
    NetClosedError,
    NetInUse,
    NetrunError,
    NodeExecutionFailed,
    NotANetrunDatabase,
    NotFoundError,
    PacketNotInEpoch,
    PacketTypeMismatch,
    PortFull,
    PortNotFound,
    QueryError,
    ReadOnlyQueryError,
    SalvoConditionError,
    StorageError,
    UnfinishedEpochError,
    UnpicklableValue,
    ValueFunctionFailed,
)
from .factories import import_from_path  # noqa: E402
from .control import NetStatus  # noqa: E402
from .net import Net  # noqa: E402
from .inspector import NetInspector  # noqa: E402
from .checkpoint import checkpoint_file  # noqa: E402
from .definition import read_definition  # noqa: E402
from .graphtext import render_graph  # noqa: E402

__all__ = [
    "CannotFinishNonEmptyEpochError",
    "CannotMovePacketFromRunningEpochError",
    "CannotMovePacketIntoRunningEpochError",
    "CheckpointError",
    "ConfigError",
    "ContextUsageError",
    "CorruptDatabase",
    "DatabaseVersionError",
    "DeadLetter",
    "DeadLetterQueue",
    "DeferredPacket",
    "DefinitionError",
    "Edge",
    "EdgeNotFoundError",
    "EpochCancelled",
    "EpochNotFoundError",
    "EpochNotRunningError",
    "EpochNotStartableError",
    "EpochTimeout",
    "ExpressionError",
    "Graph",
    "GraphValidationError",
    "GraphValidationErrorInfo",
    "InputPortFullError",
    "InputPortNotFoundError",
    "MaxSalvos",
    "MaxSalvosExceededError",
    "Net",
    "NetActionError",
    "NetClosedError",
    "NetInUse",
    "NetInspector",
    "NetStatus",
    "NetrunError",
    "Node",
    "NodeExecutionContext",
    "NodeExecutionFailed",
    "NodeFailureContext",
    "NodeNotFoundError",
    "NotANetrunDatabase",
    "NotFoundError",
    "OutputPortFullError",
    "OutputPortNotFoundError",
    "Packet",
    "PacketCount",
    "PacketNotAtInputPortError",
    "PacketNotFoundError",
    "PacketNotInAnyNodeError",
    "PacketNotInEpoch",
    "PacketTypeMismatch",
    "Port",
    "PortFull",
    "PortNotFound",
    "PortRef",
    "PortSlotSpec",
    "PortState",
    "PortType",
    "QueryError",
    "ReadOnlyQueryError",
    "SalvoCondition",
    "SalvoConditionError",
    "SalvoConditionNotFoundError",
    "SalvoConditionNotMetError",
    "SalvoConditionTerm",
    "StorageError",
    "UnfinishedEpochError",
    "UnpicklableValue",
    "UnsentOutputSalvoError",
    "ValueFunctionFailed",
    "__version__",
    "checkpoint_file",
    "import_from_path",
    "read_definition",
    "render_graph",
]
