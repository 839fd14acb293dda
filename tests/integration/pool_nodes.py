"""Module-level node functions for the pool, background and crash tests.

Process-pool workers are spawned: they unpickle these functions (cloudpickle stores a
module-level function by reference), so they must live in an importable module, never in
a test module. Files and environment variables carry what workers record back to the
test: a spawned worker inherits `os.environ` as it was when the pool started.

- `NETRUN_TEST_LOG`: a file to which lifecycle functions and some exec functions append
  one line per call (`<what> <pid> <thread name>`).
- `NETRUN_TEST_PID_FILE`: where `slow_on_seven` writes its pid before sleeping.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

LOG_ENV = "NETRUN_TEST_LOG"
PID_ENV = "NETRUN_TEST_PID_FILE"
SLOW_VALUE = 7


def record(what: str) -> None:
    """Append `what pid thread` to the file named by $NETRUN_TEST_LOG (one write: atomic enough)."""
    path = os.environ[LOG_ENV]
    line = f"{what} {os.getpid()} {threading.current_thread().name}\n"
    with open(path, "a") as handle:
        handle.write(line)


def read_log(path: str) -> list[tuple[str, int, str]]:
    """The lines `record` wrote: (what, pid, thread name)."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as handle:
        for line in handle:
            what, pid, thread = line.rstrip("\n").split(" ", 2)
            out.append((what, int(pid), thread))
    return out


def _send(ctx, value) -> None:
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def times_ten(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    _send(ctx, value * 10)


def times_ten_recorded(ctx, packets):
    """`times_ten`, recording where it ran."""
    value = ctx.consume_packet(packets["in"][0])
    record(f"exec:{value}")
    _send(ctx, value * 10)


def start_recorded(net):
    record("start")


def stop_recorded(net):
    record("stop")


def fail_on_two(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    if value == 2:
        raise ValueError("two is not welcome")
    _send(ctx, value * 10)


def fail_first_attempt(ctx, packets):
    """Fails on its first attempt (retry_count 0), forwards the value on the next one."""
    value = ctx.consume_packet(packets["in"][0])
    if ctx.retry_count == 0:
        raise RuntimeError(f"first attempt at {value} fails")
    _send(ctx, (value, ctx.retry_count))


def send_then_raise(ctx, packets):
    """Sends a packet of its own, then raises without consuming its input."""
    _send(ctx, "partial")
    raise RuntimeError("raised after sending")


def consume_send_then_raise(ctx, packets):
    """Consumes its input, sends it on, then raises."""
    value = ctx.consume_packet(packets["in"][0])
    _send(ctx, ("sent", value))
    raise RuntimeError("raised after consuming and sending")


async def async_times_ten(ctx, packets):
    """An async exec function: awaits the context; sends (value * 10, pid, its loop's id)."""
    value = await ctx.consume_packet(packets["in"][0])
    await asyncio.sleep(0.01)
    loop_id = id(asyncio.get_running_loop())
    await ctx.load_output_port("out", await ctx.create_packet((value * 10, os.getpid(), loop_id)))
    await ctx.send_output_salvo("send_out")


def make_lock(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    _send(ctx, threading.Lock())


# -- concurrency tracking (thread pools: one process) ------------------------------------------
_running_lock = threading.Lock()
RUNNING = {"now": 0, "max": 0}


def reset_running() -> None:
    with _running_lock:
        RUNNING["now"] = 0
        RUNNING["max"] = 0


def tracked_sleep(ctx, packets):
    """Counts how many epochs of this function run at once (RUNNING['max'])."""
    value = ctx.consume_packet(packets["in"][0])
    with _running_lock:
        RUNNING["now"] += 1
        RUNNING["max"] = max(RUNNING["max"], RUNNING["now"])
    try:
        time.sleep(0.02)
    finally:
        with _running_lock:
            RUNNING["now"] -= 1
    _send(ctx, value)


def sleep_then_forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    time.sleep(0.02)
    _send(ctx, value)


# -- crashes and timeouts ----------------------------------------------------------------------
def slow_on_seven(ctx, packets):
    """Forwards its value; for SLOW_VALUE it first writes its pid to $NETRUN_TEST_PID_FILE and sleeps 2 s.

    On a retry (the epoch runs again after its worker was killed) it does not sleep."""
    value = ctx.consume_packet(packets["in"][0])
    if not _slow_once(value):
        time.sleep(0.01)
    _send(ctx, value)


def quick_but_slow_on_seven(ctx, packets):
    """`slow_on_seven` whose other epochs are quick (a process worker then claims several at once)."""
    value = ctx.consume_packet(packets["in"][0])
    _slow_once(value)
    _send(ctx, value)


def _slow_once(value) -> bool:
    """For SLOW_VALUE, the first time: write the pid to $NETRUN_TEST_PID_FILE and sleep 2 s."""
    if value != SLOW_VALUE or os.path.exists(os.environ[PID_ENV] + ".done"):
        return False
    path = os.environ[PID_ENV]
    with open(path + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    open(path + ".done", "w").close()  # a second run of this epoch goes straight through
    time.sleep(2.0)
    return True


def sleep_five_on_zero(ctx, packets):
    """Value 0: records where it runs, then sleeps 5 s (to be timed out). Others: forwarded at once."""
    value = ctx.consume_packet(packets["in"][0])
    if value == 0:
        record("sleeping")
        time.sleep(5.0)
    _send(ctx, value)


def sleep_long_on_zero(ctx, packets):
    """Value 0: sleeps 4 s (a thread cannot be interrupted). Others: forwarded at once."""
    value = ctx.consume_packet(packets["in"][0])
    if value == 0:
        time.sleep(4.0)
    _send(ctx, value)


# -- SIGINT (main thread of a child process) ----------------------------------------------------
SINK: list = []


def sleepy_forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    time.sleep(0.005)
    _send(ctx, value)


def sleepy_sink(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    time.sleep(0.005)
    SINK.append(value)


# -- frozen workers (test_runtime_owner) ----------------------------------------------------------
FREEZE_ENV = "NETRUN_TEST_FREEZE_FILE"


def freeze_me_on_zero(ctx, packets):
    """Sends (value, pid). Value 0, on its first run only: writes this process's pid to
    $NETRUN_TEST_FREEZE_FILE, then sleeps 10 s (the test freezes the process meanwhile, and the
    owner must take the epoch back once the lease runs out). A second run goes straight through."""
    value = ctx.consume_packet(packets["in"][0])
    path = os.environ[FREEZE_ENV]
    if value == 0 and not os.path.exists(path + ".done"):
        open(path + ".done", "w").close()
        with open(path + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.replace(path + ".tmp", path)
        time.sleep(10.0)
    _send(ctx, (value, os.getpid()))


def consume_then_raise(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    raise KeyError("missing_key")


def print_and_raise_value(ctx, packets):
    """Print the value, then raise with it in the message (text that may not be valid UTF-8)."""
    value = ctx.consume_packet(packets["in"][0])
    print("got", value)
    raise ValueError(f"bad {value}")


def forward_value(ctx, packets):
    _send(ctx, ctx.consume_packet(packets["in"][0]))


class UnpicklableError(Exception):
    """An exception that cannot cross processes: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raise_unpicklable(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    raise UnpicklableError("cannot travel")


def write_through_worker_net(ctx, packets):
    """Tries to write through what a process worker gives node code as `ctx._net`, both ways: the
    guarded query and its raw connection. Sends what each attempt raised."""
    value = ctx.consume_packet(packets["in"][0])
    outcomes = []
    for attempt in (lambda: ctx._net.query("INSERT INTO net_meta (key, value) VALUES ('w', 'x')"),
                    lambda: ctx._net._conn.execute("INSERT INTO net_meta (key, value) VALUES ('w', 'y')")):
        try:
            attempt()
            outcomes.append("written")
        except Exception as exc:  # noqa: BLE001 - reported to the test
            outcomes.append(type(exc).__name__)
    _send(ctx, [value, outcomes])


def printing_forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    print(f"worker saw {value}")
    _send(ctx, value)


def pid_then_sleep(ctx, packets):
    """Writes its worker's pid to $NETRUN_TEST_PIDFILE, then sleeps 30 s (the owner gets killed meanwhile)."""
    import os
    import time

    value = ctx.consume_packet(packets["in"][0])
    path = os.environ["NETRUN_TEST_PIDFILE"]
    with open(path + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(30)
    _send(ctx, value)


def slow_start(net):
    """A start function that takes a second (heavy imports, a model loaded at start)."""
    time.sleep(1.0)


def interrupt_on_two(ctx, packets):
    """Forward the value; on 2 raise the BaseException named by the node's `raise` param (SystemExit
    or KeyboardInterrupt) out of the node's code, after consuming it."""
    value = ctx.consume_packet(packets["in"][0])
    if value == 2:
        raise {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt}[ctx.params["raise"]](3)
    _send(ctx, value)


def call_the_net_from_the_pool(ctx, packets):
    """Call wait_until_blocked(), close(), stop(), start() and run_step() of the net that runs this
    epoch, from a thread pool's worker; print each call's outcome (`name ErrorType: message`) and
    forward the value."""
    value = ctx.consume_packet(packets["in"][0])
    net = ctx._net
    for name in ("wait_until_blocked", "close", "stop", "start", "run_step"):
        try:
            getattr(net, name)()
            print(f"{name} returned")
        except Exception as exc:  # noqa: BLE001 - reported to the test
            print(f"{name} {type(exc).__name__}: {exc}")
    _send(ctx, value)


async def await_the_net_from_async_node_code(ctx, packets):
    """Await async_stop() and async_wait_until_blocked() of the net that runs this epoch (its event
    loop's thread); print each call's outcome and forward the value."""
    value = await ctx.consume_packet(packets["in"][0])
    for name in ("async_wait_until_blocked", "async_stop"):
        try:
            await getattr(ctx._net, name)()
            print(f"{name} returned")
        except Exception as exc:  # noqa: BLE001 - reported to the test
            print(f"{name} {type(exc).__name__}: {exc}")
    await ctx.load_output_port("out", await ctx.create_packet(value))
    await ctx.send_output_salvo("send_out")
