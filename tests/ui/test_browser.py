"""`netrun ui` in a real browser (headless Chromium) against real runs: the graph and its live
counts during a background run in another process, a packet's lineage back to its source, a dead
letter replayed only when writes are allowed, and the SQL box refusing a write."""

from __future__ import annotations

import time
from pathlib import Path

import netrun

from tests.cli.conftest import rows, scalar

from .conftest import HERE, STEPS_TOML, WAIT, child_env, follow, open_page

VALUES = 60
STEP_SECONDS = 0.05  # per value: the background run lasts ~3 s


def _counts(page) -> dict[str, dict[str, int]]:
    """The counts the graph shows, per node and state."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#graph .gnode')].map(g =>
        [g.dataset.node, Object.fromEntries([...g.querySelectorAll('[data-count]')].map(t =>
            [t.dataset.count, Number(t.textContent)]))]))""")


def test_the_graph_shows_every_node_and_its_counts_move_with_a_background_run_then_settle(
        tmp_path: Path, serve, page, monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))
    db = tmp_path / "live.db"
    with netrun.Net.load_definition(STEPS_TOML, db=db) as net:  # stopped: one source epoch waits
        net.inject_source_epoch("Emit")
    server = serve(db)
    open_page(page, server)
    page.wait_for_function("() => document.getElementById('state').dataset.state === 'stopped'")
    names = page.locator("#graph .gnode .title").all_text_contents()
    assert sorted(names) == ["Emit", "Sink", "Step"]
    assert _counts(page)["Emit"]["startable"] == 1

    import subprocess
    import sys
    run = subprocess.Popen([sys.executable, "-m", "netrun", "resume", str(db), "--path", str(HERE), "--no-progress"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env=child_env(NETRUN_UI_TEST_VALUES=str(VALUES), NETRUN_UI_TEST_STEP=str(STEP_SECONDS)))
    try:
        seen: set[int] = set()
        states: set[str] = set()
        waiting_seen = False
        deadline = time.monotonic() + WAIT
        while run.poll() is None and time.monotonic() < deadline:
            seen.add(_counts(page)["Step"]["finished"])
            states.add(page.get_attribute("#state", "data-state"))
            waiting_seen |= bool(page.locator("#graph [data-edge]:not(:empty), #graph [data-port]:not(:empty)").count())
            time.sleep(0.1)
        assert run.wait(timeout=WAIT) == 0, run.stderr.read()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        run.stderr.close()
    # the page followed the run without a reload: several counts between none and all
    assert "running" in states
    assert len({n for n in seen if 0 < n < VALUES}) >= 2, sorted(seen)
    assert waiting_seen  # packets waiting on the edge or at the port were shown meanwhile
    page.wait_for_function("() => document.getElementById('state').dataset.state === 'finished'")
    page.wait_for_function(f"() => Number(document.querySelector('[data-node=Sink] [data-count=finished]').textContent) "
                           f"=== {VALUES}")
    counts = _counts(page)
    assert counts == {
        "Emit": {"startable": 0, "queued": 0, "running": 0, "finished": 1, "failed": 0},
        "Step": {"startable": 0, "queued": 0, "running": 0, "finished": VALUES, "failed": 0},
        "Sink": {"startable": 0, "queued": 0, "running": 0, "finished": VALUES, "failed": 0},
    }
    assert {(r["node_name"], r["n"]) for r in rows(db, "SELECT node_name, n FROM node_counts")} == {
        ("Emit", 1), ("Step", VALUES), ("Sink", VALUES)}
    assert page.locator("#graph [data-edge]:not(:empty)").count() == 0  # nothing left on an edge
    shot = tmp_path / "graph.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot of the graph page: {shot}")


def test_a_packets_lineage_page_reaches_its_source(steps_db: Path, serve, page):
    server = serve(steps_db)
    open_page(page, server)
    page.click("#graph [data-node=Sink]")  # the node's epochs
    page.wait_for_selector("main[data-page=epochs][data-ready]")
    follow(page.locator("main table a[href^='#/epoch/']").first)
    assert "of Sink" in page.inner_text("h1")
    follow(page.locator("main table a[href^='#/packet/']").first)  # its input packet
    assert "made by Step" in page.text_content("#lineage")
    for _ in range(5):  # follow the oldest ancestor drawn until the packet has none
        ancestors = page.locator("#lineage .lnode[data-depth^='-']")
        if ancestors.count() == 0:
            break
        oldest = min(range(ancestors.count()), key=lambda i: int(ancestors.nth(i).get_attribute("data-depth")))
        target = ancestors.nth(oldest).get_attribute("data-packet")
        ancestors.nth(oldest).click()
        page.wait_for_url(f"**#/packet/{target}")
        page.wait_for_selector(f'main[data-route="packet/{target}"][data-ready]')
    assert page.locator("#lineage .lnode[data-depth^='-']").count() == 0
    assert "of Emit" in page.inner_text("#origin")  # created by the source's epoch
    source = scalar(steps_db, "SELECT id FROM epochs WHERE node_name = 'Emit'")
    assert page.locator(f"#origin a[href='#/epoch/{source}']").count() == 1


def test_a_dead_letter_is_replayed_only_when_writes_are_allowed(failing_db: Path, serve, page):
    read_only = serve(failing_db)
    open_page(page, read_only, "dlq")
    page.wait_for_selector("main table a[href='#/dlq/1']")
    assert page.locator("#replay, #discard, input[type=checkbox][data-seq]").count() == 0
    answer = page.request.post(read_only.url + "api/dlq/replay", data={"seqs": [1]},
                               headers={"Content-Type": "application/json"})
    assert answer.status in (404, 405)
    read_only.stop()

    writable = serve(failing_db, "--allow-writes")
    open_page(page, writable, "dlq")
    page.check("input[data-seq='1']")
    page.click("#replay")
    assert "Replay 1 dead letter(s): #1?" in page.inner_text("#confirm")
    page.click("#confirm-yes")
    page.wait_for_selector("#dlq-message .notice")
    assert "dead letter #1: replayed as packet" in page.inner_text("#dlq-message")
    letters = rows(failing_db, "SELECT seq, status, replayed_as FROM dead_letters ORDER BY seq")
    assert [(r["seq"], r["status"]) for r in letters] == [(1, "replayed"), (2, "pending"), (3, "pending")]
    new_packet = letters[0]["replayed_as"]
    assert page.locator(f"#dlq-message a[href='#/packet/{new_packet}']").count() == 1
    # the list now shows the two still pending; a dead letter's packet page shows its value
    page.wait_for_function("() => document.querySelectorAll('input[data-seq]').length === 2")
    follow(page.locator("main table a[href='#/dlq/2']"))
    assert "ValueError: odd value 3 refused" in page.inner_text("main")
    assert "Traceback" in page.inner_text("main pre.traceback")
    follow(page.locator("main .fields a[href^='#/packet/']"))
    assert page.inner_text("#value") == "3"


def test_the_sql_box_shows_rows_and_refuses_a_write(failing_db: Path, serve, page):
    server = serve(failing_db)
    open_page(page, server, "sql")
    page.fill("#sql", "SELECT node_name, count(*) AS n FROM epochs GROUP BY 1 ORDER BY 1")
    page.click("#run")
    page.wait_for_selector("#sql-result table")
    assert page.locator("#sql-result tbody tr").all_inner_texts() == ["Check\t6", "Sink\t3", "Source\t1"]
    csv = page.request.get(server.url.rstrip("/") + page.get_attribute("#csv", "href").removeprefix(server.url.rstrip("/")))
    assert csv.text().splitlines() == ["node_name,n", "Check,6", "Sink,3", "Source,1"]
    before = scalar(failing_db, "SELECT count(*) FROM epochs")
    page.fill("#sql", "DELETE FROM epochs")
    page.click("#run")
    page.wait_for_selector("#sql-result .error")
    assert "read-only" in page.inner_text("#sql-result .error")
    assert scalar(failing_db, "SELECT count(*) FROM epochs") == before == 10
