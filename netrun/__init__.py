"""netrun: run flow-based development graphs, with every step durable in SQLite.

Layers (each imports only what stands below it; tests/unit/test_layers.py checks there is no
import cycle, type-only imports included):

    net            public facade: validates input, hands every call to the owner
    dsl            TOML definitions (handed the Net class; never imports net)
    runtime        the owner loop: the one place that changes run state; each part below gets the
                   collaborators it uses (journal, values, sim, ...) and callables for the owner's
                   operations it needs, not the runtime
      control      background runner, pause, SIGINT, poll (counters the owner keeps)
      pools        the owner's side of pools: hands thread/process workers their jobs, applies
                   results, sweeps leases; remote pools through the queue table
      restore      resume: rebuild the sim from the tables, crash semantics
      request_desk stops and injections other processes ask for
      epoch        one epoch's attempts and its end; actions / deferred: what ctx does
      inbox, deadletters   injected work; the dead-letter queue
      host         protocols: EpochHost (an epoch's attempts, in the owner or a pool worker),
                   NetHandle (the net as node code sees it)
    owner          who owns the run state; calls handed over from other threads
    worker         pool workers: take jobs (from the owner, or claimed from the table), run them,
                   renew the lease, report (compare-and-set)
    jobs           epoch_jobs transitions, each a compare-and-set
    journal        sim steps -> rows, committed atomically; values: packet values
    sim            the only importer of netrun_sim.NetSim; netrun <-> sim ID maps
    store          where a net lives: FileStore (SQLite) or PgStore (PostgreSQL), one interface
      pgstore      a net's schema, migrations, owner (advisory lock + fenced record), checkpoints
      pgconn       a psycopg connection behind apsw's API (statements translated once); dialect:
                   the PostgreSQL text of the few statements that differ
    remote         `netrun worker`: the worker loop on a remote pool, on the database's clock
      wakeups      LISTEN/NOTIFY between the owner and remote workers (polling behind them)
    migrate, db, ownership, readonly, history, capture, checkpoint   the SQLite store
    config -> params, errors, clock, graphio, faults, version   leaves used by all of the above
    jsontext       compact JSON text by json's C encoder, made once (history rows, values)
    reentry        which calls made in the owning thread would interrupt netrun's own code (a
                   signal handler's): refused; where netrun calls user code or waits, they may
    definition -> {expressions, factories, port_types}   the TOML definition layer

    cli            the `netrun` command, over net and:
      repairs                dead letters replayed or discarded (`dlq`, and the web page)
      inspector -> lineage   a database file read-only: status, history, logs, trace
      graphtext              a graph as Mermaid, DOT or JSON text
    ui             `netrun ui`, the web page (the optional extra `ui`: starlette, uvicorn);
                   over inspector and repairs, imported by nothing but the command's `ui`
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
    RequestCycleDetectedError,
    RequestNodeNotFoundError,
    RequestUnconnectedPortError,
    SalvoCondition,
    SalvoConditionNotFoundError,
    SalvoConditionNotMetError,
    SalvoConditionTerm,
    UndoError,
    UndoInternalError,
    UndoNotFoundError,
    UndoNotUndoableError,
    UndoStateMismatchError,
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
    StoredValueUnreadable,
    UnfinishedEpochError,
    UnpicklableValue,
    ValueFunctionFailed,
    WorkerLost,
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
    "RequestCycleDetectedError",
    "RequestNodeNotFoundError",
    "RequestUnconnectedPortError",
    "SalvoCondition",
    "SalvoConditionError",
    "SalvoConditionNotFoundError",
    "SalvoConditionNotMetError",
    "SalvoConditionTerm",
    "StorageError",
    "StoredValueUnreadable",
    "UndoError",
    "UndoInternalError",
    "UndoNotFoundError",
    "UndoNotUndoableError",
    "UndoStateMismatchError",
    "UnfinishedEpochError",
    "UnpicklableValue",
    "UnsentOutputSalvoError",
    "ValueFunctionFailed",
    "WorkerLost",
    "__version__",
    "checkpoint_file",
    "import_from_path",
    "read_definition",
    "render_graph",
]
