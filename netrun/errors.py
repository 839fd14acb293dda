"""netrun's own errors.

`NetrunError` is the root of every error netrun raises itself. netrun-sim's errors
are re-exported from `netrun` under their own names, with their base available as
`netrun.NetActionError`, so `except netrun.NetrunError` never catches a sim error
by accident.

Branches, by whose fault the failure is:
- `ConfigError`: bad options, graph or definition given by the user.
- `StorageError`: the database file (foreign, too new, corrupt, unwritable).
- `ContextUsageError`: a node function misused its context (wrong packet, port...).
- `NodeExecutionFailed`, `ValueFunctionFailed`, `EpochTimeout`: user code failed;
  the original exception is chained as `__cause__`.
- `NotFoundError`: a node, epoch or packet the caller named does not exist.

Every error is built as `Cls(message, **fields)`: the message goes to
`Exception.args` and the fields to `__dict__`, so errors survive a pickle round trip
(process pools carry them between processes).
"""

from __future__ import annotations

from typing import Any


class NetrunError(Exception):
    """Base class for netrun-specific errors."""

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.__dict__.update(fields)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message


class ConfigError(NetrunError, ValueError):
    """An option, graph or definition given by the user is invalid."""


class StorageError(NetrunError):
    """The database file cannot be used."""


class NotANetrunDatabase(StorageError):
    """The file is not a netrun database (not SQLite, or another program's SQLite file)."""


class DatabaseVersionError(StorageError):
    """The database was written by a newer netrun than this one."""


class CorruptDatabase(StorageError):
    """The database file is damaged or truncated."""


class NetInUse(StorageError):
    """Another live process is running the net in this database file (`pid` names it)."""


class CheckpointError(StorageError):
    """A checkpoint cannot be written now (an epoch is running) or read from that folder."""


class QueryError(NetrunError):
    """A read-only SQL query failed: its syntax, an unknown table or column, or the wrong
    number of parameters (the message has SQLite's reason and the statement)."""


class ReadOnlyQueryError(QueryError):
    """`Net.query()` was given a statement that would write."""


class NotFoundError(NetrunError, LookupError):
    """A node, epoch or packet named by the caller does not exist."""


class NetClosedError(NetrunError):
    """The net was closed; its database file keeps everything it did."""


class ContextUsageError(NetrunError):
    """A node function misused its execution context."""


class PacketNotInEpoch(ContextUsageError):
    """The packet is not inside the epoch that tried to use it."""


class PortNotFound(ContextUsageError):
    """The node has no such port."""


class PortFull(ContextUsageError):
    """The output port is at capacity."""


class SalvoConditionError(ContextUsageError):
    """The output salvo condition is unknown, not met, or exhausted."""


class UnfinishedEpochError(ContextUsageError):
    """The exec function returned with packets still inside the epoch or unsent output."""


class PacketTypeMismatch(NetrunError, TypeError):
    """A packet value does not match its port type."""


class ValueFunctionFailed(NetrunError):
    """A packet's value function raised; the original is the `__cause__`."""


class NodeExecutionFailed(NetrunError):
    """A node's exec function raised; the original is the `__cause__`, and `traceback` its formatted
    traceback (text: it survives pickling, and comes from the worker for a process-pool epoch)."""


class EpochTimeout(NetrunError):
    """An epoch ran longer than its node's `timeout`."""


class WorkerLost(NetrunError):
    """The pool worker running an epoch died, or stopped renewing its lease (frozen, or hung)."""


class EpochCancelled(NetrunError):
    """Raised by `ctx.cancel_epoch()`: the epoch is cancelled, not failed (no retry)."""


class StoredValueUnreadable(StorageError):
    """A packet's stored value cannot be read back (tampered with, or its class is gone); `packet_id`
    names the packet. Raised where the value is needed: an epoch consuming it fails (dead letter)."""


class UnpicklableValue(NetrunError, TypeError):
    """A packet value or value function cannot be serialized into the database."""


class DefinitionError(ConfigError):
    """A net definition (TOML DSL) is invalid; the message names the file and the node, edge or key.

    `line` and `column` (1-based, in the definition's text) say where, when known; the message
    then starts with `file:LINE:` or `file:LINE:COLUMN:`.
    """

    line: int | None = None
    column: int | None = None


class ExpressionError(ConfigError):
    """A salvo condition expression does not parse (the message shows the column and what was expected)."""
