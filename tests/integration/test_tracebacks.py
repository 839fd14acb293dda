"""Every failed attempt keeps its formatted traceback: `epoch_attempts.traceback`, the dead
letter's `traceback`, `NodeExecutionFailed.traceback`, from the main thread and from pools
(a process worker sends the text along, even for an exception that cannot be pickled). And
bad input: each a clear error naming the thing, nothing already stored lost."""

from __future__ import annotations

import pickle
import threading

import pytest

import netrun
from netrun.graphs import chain
from netrun.tracebacks import shorten
from tests.integration import pool_nodes
from tests.integration.helpers import rows


def consume_then_raise(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    raise KeyError("missing_key")


POOLS = {"main": {}, "thread": {"thread_pools": {"t": {"size": 1}}},
         "process": {"process_pools": {"p": {"size": 1}}}}


@pytest.mark.parametrize("mode", ["main", "deferred", "thread", "process"])
def test_a_failure_keeps_its_traceback_in_attempts_dead_letters_and_the_error(tmp_path, db, mode):
    failures: list = []
    pooled = mode in ("thread", "process")
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue", error_callback=failures.append,
                    **POOLS.get(mode, {})) as net:
        net.set_node_exec("A", pool_nodes.consume_then_raise if pooled else consume_then_raise)
        if mode == "deferred":
            net.set_node_config("A", defer_net_actions=True, retries=1)
        if pooled:
            net.set_node_config("A", pool=mode[0])
        net.inject_packet("A", "in", "v")
        net.start()
        [entry] = net.dead_letter_queue.get_all()
    attempts = rows(db, "SELECT attempt, error, error_type, traceback FROM epoch_attempts ORDER BY attempt")
    assert len(attempts) == (2 if mode == "deferred" else 1)
    source = "pool_nodes.py" if pooled else "test_tracebacks.py"
    for attempt in attempts:
        assert (attempt["error"], attempt["error_type"]) == ("KeyError: 'missing_key'", "KeyError")
        text = attempt["traceback"]
        assert text.startswith("Traceback (most recent call last):")
        assert source in text and "in consume_then_raise" in text and 'raise KeyError("missing_key")' in text
        assert text.rstrip().endswith("KeyError: 'missing_key'")
        # it starts in the node's code, not in netrun's call of it
        assert "_call_exec" not in text
    assert entry.traceback == attempts[-1]["traceback"]
    assert rows(db, "SELECT traceback FROM dead_letters") == [{"traceback": entry.traceback}]
    [failure] = failures
    assert failure.traceback == entry.traceback
    assert pickle.loads(pickle.dumps(failure)).traceback == failure.traceback


def test_an_exception_a_process_worker_cannot_pickle_is_recorded_with_its_text_and_traceback(tmp_path, db):
    failures: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue", error_callback=failures.append,
                    process_pools={"p": {"size": 1}}) as net:
        net.set_node_exec("A", pool_nodes.raise_unpicklable)
        net.set_node_config("A", pool="p")
        net.inject_packet("A", "in", "kept")
        net.start()
        [entry] = net.dead_letter_queue.get_all()
    assert (entry.reason, entry.value, entry.error) == ("failed", "kept", "UnpicklableError: cannot travel")
    assert "in raise_unpicklable" in entry.traceback and entry.traceback.rstrip().endswith("cannot travel")
    [epoch] = rows(db, "SELECT state, error, error_type FROM epochs WHERE node_name = 'A'")
    assert epoch == {"state": "failed", "error": "UnpicklableError: cannot travel", "error_type": "UnpicklableError"}
    [attempt] = rows(db, "SELECT error_type, traceback FROM epoch_attempts")
    assert attempt == {"error_type": "UnpicklableError", "traceback": entry.traceback}
    [failure] = failures
    assert "UnpicklableError: cannot travel" in str(failure) and failure.traceback == entry.traceback


def test_a_value_function_that_raises_fails_with_both_tracebacks_and_keeps_the_function(tmp_path, db):
    def broken():
        return {}["nope"]

    def make(ctx, packets):
        ctx.load_output_port("out", ctx.create_packet_from_value_func(broken))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("Source", make)
        net.set_node_exec("A", consume_then_raise)
        net.inject_source_epoch("Source")
        net.start()
        [entry] = net.dead_letter_queue.get_all()
    assert entry.error.startswith("ValueFunctionFailed: the value function of packet")
    assert entry.packet_id in entry.error and "KeyError" in entry.error
    assert "in broken" in entry.traceback and "The above exception was the direct cause" in entry.traceback
    assert entry.value_kind == "func"  # the function itself is kept, to be replayed once fixed


def test_an_unpicklable_value_is_refused_naming_node_and_epoch_and_the_input_is_kept(tmp_path, db):
    def make_lock(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        ctx.create_packet(threading.Lock())

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", make_lock)
        net.inject_packet("A", "in", "input")
        net.start()
        [entry] = net.dead_letter_queue.get_all()
    assert entry.error.startswith("UnpicklableValue: node 'A' epoch ")
    assert "lock" in entry.error and entry.value == "input"


@pytest.mark.parametrize("defer", [False, True])
def test_a_value_function_returning_an_unpicklable_value_when_consumed_values_are_kept(tmp_path, db, defer):
    def lock_source(ctx, packets):
        ctx.load_output_port("out", ctx.create_packet_from_value_func(threading.Lock))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, consumed_packet_storage=True, on_error="continue") as net:
        net.set_node_exec("Source", lock_source)
        net.set_node_exec("A", consume_then_raise)
        net.set_node_config("A", defer_net_actions=defer)
        net.inject_source_epoch("Source")
        net.start()
        [entry] = net.dead_letter_queue.get_all()
    assert entry.error.startswith("UnpicklableValue: node 'A' epoch ")
    assert entry.packet_id in entry.error and "consumed_packet_storage" in entry.error
    assert (entry.value_kind, entry.port_name) == ("func", "in")


def test_an_interrupted_attempt_keeps_its_traceback(tmp_path, db):
    def interrupted(ctx, packets):
        raise KeyboardInterrupt

    net = netrun.Net(chain("Source", "A", "Sink"), db=db)
    net.set_node_exec("A", interrupted)
    net.inject_packet("A", "in", "v")
    with pytest.raises(KeyboardInterrupt):
        net.start()
    net.close()
    [attempt] = rows(db, "SELECT outcome, error_type, traceback FROM epoch_attempts")
    assert (attempt["outcome"], attempt["error_type"]) == ("cancelled", "KeyboardInterrupt")
    assert "in interrupted" in attempt["traceback"]
    [letter] = rows(db, "SELECT reason, traceback FROM dead_letters")
    assert letter == {"reason": "interrupted", "traceback": attempt["traceback"]}


def test_shorten_keeps_the_innermost_frames_of_each_exception():
    def deep(n):
        if n == 0:
            raise ValueError("bottom")
        deep(n - 1)

    try:
        try:
            deep(6)
        except ValueError as exc:
            raise RuntimeError("top") from exc
    except RuntimeError as exc:
        from netrun.tracebacks import format_traceback
        text = format_traceback(exc)
    short = shorten(text, frames=2)
    assert short.count("Traceback (most recent call last):") == 2
    assert "frames hidden (--full shows them)" in short
    assert short.count('  File "') == 3  # two innermost of the cause, the one of the outer error
    assert "ValueError: bottom" in short and short.endswith("RuntimeError: top")
    assert shorten(None) is None and shorten("KeyError: 'x'") == "KeyError: 'x'"


def test_an_unpicklable_injected_value_is_refused_naming_node_and_port_and_nothing_is_stored(tmp_path, db):
    with netrun.Net(chain("Source", "A", "Sink"), db=db) as net:
        kept = net.inject_packet("A", "in", "kept")
        with pytest.raises(netrun.UnpicklableValue, match=r"inject_packet\('A', 'in'\).*lock"):
            net.inject_packet("A", "in", threading.Lock())
    assert rows(db, "SELECT id FROM packets") == [{"id": kept}]


class _NeedsTwo(Exception):
    """Pickles, but cannot be unpickled (its __init__ wants two arguments, args holds one)."""

    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


class _BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no text")


@pytest.mark.parametrize("error", [_NeedsTwo(1, 2), _BadStr()])
def test_an_error_that_cannot_cross_processes_travels_as_text(error):
    from netrun.tracebacks import error_text, error_type, format_traceback
    from netrun.worker import RemoteError, _portable_error

    try:
        raise error
    except Exception as exc:
        text = format_traceback(exc)
    carried = _portable_error(error, text)
    if isinstance(error, _NeedsTwo):
        assert isinstance(carried, RemoteError)
        back = pickle.loads(pickle.dumps(carried))
        assert (error_text(back), error_type(back), format_traceback(back)) == ("_NeedsTwo: 1-2", "_NeedsTwo", text)
    else:
        assert error_text(carried).startswith("_BadStr: <str() raised RuntimeError>")


def print_and_raise_value(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    print("got", value)
    raise ValueError(f"bad {value}")


def raise_with_surrogate(_arg):
    raise RuntimeError("callback \udcfe")


@pytest.mark.parametrize("mode", ["main", "deferred", "thread", "process"])
def test_text_with_a_lone_surrogate_is_stored_escaped_and_the_run_goes_on(tmp_path, mode):
    # A file name decoded with surrogateescape (os.listdir of a non-UTF-8 name) is a str that SQLite
    # cannot store: printed or put in an error message, it once failed the commit and stopped the run
    # with a UnicodeEncodeError, leaving the net interrupted.
    db = str(tmp_path / "net.db")
    pooled = mode in ("thread", "process")
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue", error_callback=raise_with_surrogate,
                    **POOLS.get(mode, {})) as net:
        net.set_node_exec("A", pool_nodes.print_and_raise_value if pooled else print_and_raise_value,
                          exec_failed_node_func=raise_with_surrogate)
        if mode == "deferred":
            net.set_node_config("A", defer_net_actions=True, retries=1)
        if pooled:
            net.set_node_config("A", pool=mode[0])
        net.inject_packet("A", "in", "name-\udc80.txt")
        net.start()
        [entry] = net.dead_letter_queue.get_all()
    assert entry.value == "name-\udc80.txt"  # the value itself is kept exactly (pickled)
    assert entry.error.startswith("ValueError: bad name-\\udc80.txt")
    assert "ValueError: bad name-\\udc80.txt" in entry.traceback
    [epoch] = rows(db, "SELECT state, error FROM epochs WHERE node_name = 'A'")
    assert epoch["state"] == "failed" and epoch["error"] == entry.error
    logs = [r["text"] for r in rows(db, "SELECT text FROM node_logs ORDER BY seq")]
    assert "got name-\\udc80.txt" in logs
    assert "exec_failed_node_func raised RuntimeError: callback \\udcfe" in logs
    assert "error_callback raised RuntimeError: callback \\udcfe" in logs
