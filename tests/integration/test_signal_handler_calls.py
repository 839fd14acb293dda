"""A signal handler that calls the net's methods during a foreground run, in the thread running it.

Such a handler runs between any two bytecodes of netrun's own code in that thread. Called there,
`inject_packet` or `query` crashed the run (UNIQUE constraint failed: history_ids.n), and even
`get_startable_epochs()` silently corrupted the file: epochs left `running`, epoch rows missing, a
consumed packet `live`, and finished epochs cancelled on resume (found by attacking netrun). Now a
call that would interrupt netrun's own code is refused with ContextUsageError; one made while the
owner waits (or while user code runs) is answered. Run in a child process: timers and signal
handlers are the whole process's, and a hang fails the test after a bound."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import collections, json, signal, sys, time
    import netrun
    from netrun.graphs import chain

    db, mode = sys.argv[1], sys.argv[2]
    got = []

    def work(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        if mode == "waiting":
            time.sleep(0.3)
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    def sink(ctx, packets):
        got.append(ctx.consume_packet(packets["in"][0]))

    options = {"thread_pools": {"p": {"size": 1}}} if mode == "waiting" else {}
    net = netrun.Net(chain("Source", "Work", "Sink"), db=db, **options)
    net.set_node_exec("Work", work)
    net.set_node_exec("Sink", sink)
    if mode == "waiting":
        net.set_node_config("Work", pool="p")
    values = 1 if mode == "waiting" else 1500
    for i in range(values):
        net.inject_packet("Work", "in", i)

    cap = 3 if mode == "waiting" else 10 ** 9  # (each late value of "waiting" takes 0.3 s)
    outcomes = collections.Counter()
    injected = []
    messages = []
    calls = [
        lambda: net.query("SELECT count(*) AS n FROM packets"),
        lambda: net.get_startable_epochs(),
        lambda: (net.inject_packet("Work", "in", f"late-{len(injected)}"), injected.append(f"late-{len(injected)}"))
        if len(injected) < cap else net.query("SELECT 1"),
        lambda: net.dead_letter_queue.get_all(),
    ]

    def handler(signum, frame):
        call = calls[sum(outcomes.values()) % len(calls)]
        try:
            call()
        except netrun.ContextUsageError as exc:
            outcomes["refused"] += 1
            messages.append(str(exc))
        except Exception as exc:
            outcomes[type(exc).__name__] += 1
            messages.append(repr(exc))
        else:
            outcomes["answered"] += 1

    signal.signal(signal.SIGALRM, handler)
    interval = 0.02 if mode == "waiting" else 0.0005
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        net.start()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    net.start()  # what the handler injected
    states = net.query("SELECT state, count(*) AS n FROM epochs GROUP BY state")
    packets = net.query("SELECT state, count(*) AS n FROM packets GROUP BY state")
    net.close()
    with netrun.Net.resume(db) as again:
        resumed = again.query("SELECT state, count(*) AS n FROM epochs GROUP BY state")
        letters = again.query("SELECT count(*) AS n FROM dead_letters")[0]["n"]
    print(json.dumps({"got": got, "injected": injected, "outcomes": outcomes, "messages": messages[:3],
                      "states": states, "packets": packets, "resumed": resumed, "letters": letters,
                      "values": values}))
""")


def _run(tmp_path, mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "run.db"), mode], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_calls_from_a_signal_handler_never_corrupt_the_run(tmp_path):
    result = _run(tmp_path, "busy")
    outcomes = result["outcomes"]
    assert set(outcomes) <= {"refused", "answered"}, result["messages"]
    assert outcomes["refused"] > 0, outcomes  # the handler did land in netrun's own code, and was refused
    message = next(m for m in result["messages"] if "refused" in m)
    assert "signal handler" in message and "net.pause()" in message, message
    expected = list(range(result["values"])) + result["injected"]
    assert sorted(map(str, result["got"])) == sorted(map(str, expected))  # each value once, none lost
    epochs = 2 * len(expected)
    assert result["states"] == [{"state": "finished", "n": epochs}]
    assert result["packets"] == [{"state": "consumed", "n": 2 * len(expected)}]
    assert result["resumed"] == [{"state": "finished", "n": epochs}]  # nothing cancelled on resume
    assert result["letters"] == 0


def test_a_signal_handler_is_answered_while_the_owner_waits(tmp_path):
    result = _run(tmp_path, "waiting")
    outcomes = result["outcomes"]
    assert set(outcomes) <= {"refused", "answered"}, result["messages"]
    assert outcomes["answered"] > 0, outcomes  # the owner waited for the pool's 0.3 s epochs: at rest
    expected = [0] + result["injected"]
    assert sorted(map(str, result["got"])) == sorted(map(str, expected))
    assert result["resumed"] == [{"state": "finished", "n": 2 * len(expected)}]
    assert result["letters"] == 0
