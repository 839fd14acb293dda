"""The web app's routes through Starlette's test client: what each answers, and what it refuses
(writes without the token, from another origin or host, or when writes are not allowed; a write
through the SQL box; bad parameters; file paths outside the page's own files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import netrun
from netrun.graphs import chain
from netrun.inspector import NetInspector
from netrun.ui import queries

from tests.cli.conftest import rows

from .conftest import Client

TOKEN = "the-token-of-this-start"


@pytest.fixture
def read_only(failing_db: Path, app_client) -> Client:
    return app_client(failing_db)


@pytest.fixture
def writable(failing_db: Path, app_client) -> Client:
    return app_client(failing_db, allow_writes=True, token=TOKEN)


WRITE = {"X-Netrun-Token": TOKEN, "Content-Type": "application/json"}


# -- what the pages read ------------------------------------------------------------------------
def test_the_overview_has_every_node_with_its_ports_placed(read_only: Client):
    answer = read_only.get("/api/overview").json()
    placed = {n["name"]: n for n in answer["layout"]["nodes"]}
    assert sorted(placed) == ["Check", "Sink", "Source"]
    assert [p["name"] for p in placed["Check"]["in_ports"]] == ["in"]
    assert placed["Source"]["x"] < placed["Check"]["x"] < placed["Sink"]["x"]  # layered: sources first
    assert {(e["from"], e["to"]) for e in answer["layout"]["edges"]} == {("Source", "Check"), ("Check", "Sink")}


def test_live_counts_match_the_tables(read_only: Client, failing_db: Path):
    live = read_only.get("/api/live").json()
    assert live["state"] == "finished" and live["dead_letters_pending"] == 3
    assert live["nodes"]["Check"]["failed"] == 3 and live["nodes"]["Check"]["finished"] == 3
    assert live["nodes"]["Sink"]["finished"] == 3
    assert [f["error"] for f in live["recent_failures"]][:1] == ["ValueError: odd value 5 refused"]
    assert live["packets_left"] == [] and live["edges"] == {} and live["ports"] == {}


def test_the_epochs_page_filters_by_node_and_state_and_pages_through_all(read_only: Client, failing_db: Path,
                                                                          monkeypatch):
    failed = read_only.get("/api/epochs", params={"node": "Check", "state": "failed"}).json()
    assert [e["state"] for e in failed["epochs"]] == ["failed"] * 3 and failed["next"] is None
    assert sorted(e["error"] for e in failed["epochs"]) == [f"ValueError: odd value {n} refused" for n in (1, 3, 5)]
    monkeypatch.setattr(queries, "EPOCH_WINDOW", 3)  # several windows per page
    seen, cursor = [], None
    while True:
        page = read_only.get("/api/epochs", params={"limit": 4, **({"before": cursor} if cursor else {})}).json()
        seen += [e["id"] for e in page["epochs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in rows(failing_db, "SELECT id FROM epochs ORDER BY id DESC")]
    assert read_only.get("/api/epochs", params={"since": "1h"}).json()["epochs"]
    assert read_only.get("/api/epochs", params={"until": "2000-01-01"}).json() == {"epochs": [], "next": None}


def test_a_rare_filter_returns_a_short_page_and_a_cursor_instead_of_scanning_the_run(failing_db: Path, monkeypatch):
    monkeypatch.setattr(queries, "EPOCH_WINDOW", 2)
    monkeypatch.setattr(queries, "HISTORY_WINDOW", 5)
    monkeypatch.setattr(queries, "BUDGET", 0.0)  # one window per request
    with NetInspector(failing_db) as net:
        page = queries.epochs_page(net, state="cancelled")
        assert page["epochs"] == [] and page["next"] is not None
        page = queries.history_page(net, kind="NoSuchRecord")
        assert page["records"] == [] and page["next"] is not None
        total = 0
        while page["next"] is not None:  # paging on reaches the start of the run
            page = queries.history_page(net, kind="NoSuchRecord", before=page["next"])
            total += 1
        assert total > 3


def test_history_pages_newest_first_cover_every_record_once(read_only: Client, failing_db: Path, monkeypatch):
    monkeypatch.setattr(queries, "HISTORY_WINDOW", 7)
    with NetInspector(failing_db) as net:
        expected = [r["seq"] for r in net.history(node="Check")][::-1]
        every = [r["seq"] for r in net.history()][::-1]
    for params, wanted in (({"node": "Check"}, expected), ({}, every)):
        seen, cursor = [], None
        while True:
            page = read_only.get("/api/history", params={**params, "limit": 5, **({"before": cursor} if cursor else {})})
            seen += [r["seq"] for r in page.json()["records"]]
            cursor = page.json()["next"]
            if cursor is None:
                break
        assert seen == wanted


def test_an_epoch_page_has_its_attempts_traceback_logs_and_packets(read_only: Client, failing_db: Path):
    epoch = rows(failing_db, "SELECT id FROM epochs WHERE node_name = 'Check' AND state = 'failed' LIMIT 1")[0]["id"]
    answer = read_only.get(f"/api/epoch/{epoch}").json()
    assert [a["outcome"] for a in answer["attempts"]] == ["failed", "failed"]
    assert "Traceback (most recent call last)" in answer["attempts"][1]["traceback"]
    assert [i["port"] for i in answer["inputs"]] == ["in"]
    ok = rows(failing_db, "SELECT id FROM epochs WHERE node_name = 'Check' AND state = 'finished' LIMIT 1")[0]["id"]
    answer = read_only.get(f"/api/epoch/{ok}").json()
    assert len(answer["outputs"]) == 1 and answer["logs"][0]["text"].startswith("checked ")


def test_a_packet_page_has_its_value_and_its_lineage_graph(read_only: Client, failing_db: Path):
    sunk = rows(failing_db, "SELECT id FROM packets WHERE node_name = 'Sink' LIMIT 1")[0]["id"]
    answer = read_only.get(f"/api/packet/{sunk}").json()
    nodes = {n["packet"]: n for n in answer["graph"]["nodes"]}
    assert nodes[sunk]["depth"] == 0 and min(n["depth"] for n in nodes.values()) == -1
    assert [n["origin"]["node"] for n in nodes.values() if n["depth"] == -1] == ["Source"]
    assert all(b == sunk for _, b in answer["graph"]["edges"])
    source_packet = next(p for p, n in nodes.items() if n["depth"] == -1)
    down = read_only.get(f"/api/packet/{source_packet}").json()
    assert [e for e in down["graph"]["edges"]] == [[source_packet, sunk]]
    letter = rows(failing_db, "SELECT packet_id FROM dead_letters WHERE seq = 1")[0]["packet_id"]
    assert read_only.get(f"/api/packet/{letter}").json()["value"] == {
        "stored": True, "kind": "json", "where": "dead letter", "size": 1, "preview": "1", "text": "1", "cut": False}


def test_a_huge_value_is_cut_and_a_pickled_one_is_never_loaded(tmp_path: Path, app_client):
    db = tmp_path / "values.db"
    with netrun.Net(chain("A", "B"), db=str(db)) as net:
        huge = net.inject_packet("B", "in", "x" * 300_000)
        pickled = net.inject_packet("B", "in", Trap())
    Trap.loaded = False
    c = app_client(db)
    value = c.get(f"/api/packet/{huge}").json()["value"]
    assert value["cut"] and value["size"] == 300_002 and len(value["text"]) == queries.VALUE_CHARS
    value = c.get(f"/api/packet/{pickled}").json()["value"]
    assert value["kind"] == "pickle" and value["text"] is None and "Trap" in value["preview"]
    assert "never unpickles" in value["note"]
    assert c.get("/api/live").json()["packets_left"][1]["value"].startswith("<") and "Trap object" in c.get("/api/live").json()["packets_left"][1]["value"]
    assert Trap.loaded is False


class Trap:
    """A value whose unpickling would be seen."""

    loaded = False

    def __setstate__(self, state):
        Trap.loaded = True


def test_logs_and_dead_letters(read_only: Client):
    lines = read_only.get("/api/logs", params={"node": "Sink"}).json()["lines"]
    assert sorted(line["text"] for line in lines) == ["collected 20", "collected 40", "collected 60"]
    letters = read_only.get("/api/dlq").json()["dead_letters"]
    assert [(d["seq"], d["value"], d["error"], d["replayable"]) for d in letters] == [
        (1, "1", "ValueError: odd value 1 refused", True), (2, "3", "ValueError: odd value 3 refused", True),
        (3, "5", "ValueError: odd value 5 refused", True)]
    one = read_only.get("/api/dlq/2").json()
    assert "Traceback" in one["traceback"] and one["value"]["text"] == "3"


def test_find_resolves_short_ids(read_only: Client, failing_db: Path):
    packet = rows(failing_db, "SELECT id FROM packets LIMIT 1")[0]["id"]
    assert read_only.get("/api/find", params={"id": f"{packet[:8]}~{packet[-4:]}"}).json() == {
        "kind": "packet", "id": packet}
    assert read_only.get("/api/find", params={"id": "ZZZZZZZZ"}).status == 404
    assert read_only.get("/api/find", params={"id": packet, "kind": "epoch"}).status == 404
    epoch = rows(failing_db, "SELECT id FROM epochs LIMIT 1")[0]["id"]
    assert read_only.get("/api/find", params={"id": epoch[:10], "kind": "epoch"}).json() == {"kind": "epoch", "id": epoch}


# -- the SQL box --------------------------------------------------------------------------------
@pytest.mark.parametrize("statement", [
    "DELETE FROM epochs", "UPDATE epochs SET state = 'failed'", "DROP TABLE epochs", "PRAGMA query_only = OFF",
    "ATTACH DATABASE '/tmp/x.db' AS x", "SELECT 1; DELETE FROM epochs", "VACUUM", "CREATE TABLE t (a)",
    "INSERT INTO net_meta VALUES ('a', 'b')", "PRAGMA journal_mode = DELETE"])
def test_the_sql_box_refuses_every_write(read_only: Client, failing_db: Path, statement: str):
    before = rows(failing_db, "SELECT count(*) AS n, group_concat(state) AS s FROM epochs")
    for path in ("/api/sql", "/api/sql.csv"):
        answer = read_only.get(path, params={"q": statement})
        assert answer.status == 400, answer.text
        assert answer.json()["error"] in ("ReadOnlyQueryError", "QueryError")
    assert rows(failing_db, "SELECT count(*) AS n, group_concat(state) AS s FROM epochs") == before
    assert not Path("/tmp/x.db").exists() or "ATTACH" not in statement


def test_the_sql_box_shows_the_first_rows_and_the_csv_has_them_all(read_only: Client, monkeypatch):
    monkeypatch.setattr(queries, "SQL_ROWS", 4)
    answer = read_only.get("/api/sql", params={"q": "SELECT seq FROM history ORDER BY seq"}).json()
    assert answer["columns"] == ["seq"] and answer["rows"] == [[1], [2], [3], [4]] and answer["truncated"]
    csv = read_only.get("/api/sql.csv", params={"q": "SELECT seq, x'00ff' AS b FROM history ORDER BY seq"})
    assert csv.headers["content-disposition"] == 'attachment; filename="query.csv"'
    lines = csv.text.splitlines()
    assert lines[0] == "seq,b" and lines[1] == "1,AP8=" and len(lines) > 100
    assert read_only.get("/api/sql", params={"q": "SELECT x'00ff' AS b"}).json()["rows"] == [["<BLOB, 2 bytes>"]]
    assert read_only.get("/api/sql", params={"q": "SELECT * FROM nowhere"}).json()["error"] == "QueryError"


# -- parameters and paths -----------------------------------------------------------------------
@pytest.mark.parametrize(("path", "params", "status"), [
    ("/api/epochs", {"limit": "x"}, 400), ("/api/epochs", {"limit": "0"}, 400), ("/api/epochs", {"limit": "501"}, 400),
    ("/api/epochs", {"state": "bogus"}, 400), ("/api/epochs", {"node": "Nope"}, 404),
    ("/api/epochs", {"since": "yesterday"}, 400), ("/api/history", {"before": "1e9"}, 400),
    ("/api/history", {"node": "Nope"}, 404), ("/api/logs", {"node": "Nope"}, 404),
    ("/api/epoch/01ABCDEFGHJKMNPQRSTVWXYZ00", {}, 404), ("/api/packet/nope", {}, 404),
    ("/api/packet/nope", {"depth": "99"}, 400), ("/api/dlq/99", {}, 404), ("/api/dlq/0", {}, 404),
])
def test_bad_parameters_are_errors_that_say_what_is_wrong(read_only: Client, path, params, status):
    answer = read_only.get(path, params=params)
    assert answer.status == status
    assert answer.json()["message"]


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/index.html/..",
                                  "/static/queries.py", "/static/", "/static/..%2f..%2fpyproject.toml",
                                  "/../../pyproject.toml"])
def test_only_the_pages_own_files_are_served(read_only: Client, path: str):
    answer = read_only.get(path)
    assert answer.status == 404
    assert "import" not in answer.text


def test_the_page_and_its_files_come_from_the_app_with_safety_headers(read_only: Client):
    page = read_only.get("/")
    assert page.status == 200
    assert "netrun-token" not in page.text and 'content="no"' in page.text
    assert re.findall(r'(?:src|href)="([^"#]+)"', page.text) == ["/static/style.css", "/static/app.js"]
    for name in ("app.js", "style.css"):
        body = read_only.get(f"/static/{name}").text
        assert "http://" not in body.replace('"http://www.w3.org/2000/svg"', "") and "https://" not in body
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]


# -- writes ------------------------------------------------------------------------------------
def test_without_allow_writes_there_is_no_write_route(read_only: Client, failing_db: Path):
    for action in ("replay", "discard"):
        answer = read_only.post(f"/api/dlq/{action}", body=json.dumps({"seqs": [1]}), headers=WRITE)
        assert answer.status in (404, 405)
    assert [r["status"] for r in rows(failing_db, "SELECT status FROM dead_letters")] == ["pending"] * 3


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({"Content-Type": "application/json"}, {"seqs": [1]}, 403),  # no token
    ({"X-Netrun-Token": "guess", "Content-Type": "application/json"}, {"seqs": [1]}, 403),
    ({"X-Netrun-Token": TOKEN[:-1], "Content-Type": "application/json"}, {"seqs": [1]}, 403),
    ({"X-Netrun-Token": TOKEN, "Content-Type": "text/plain"}, {"seqs": [1]}, 415),  # a simple cross-site POST
    ({**WRITE, "Origin": "http://evil.example"}, {"seqs": [1]}, 403),
    (WRITE, {"seqs": []}, 400), (WRITE, {"seqs": ["1"]}, 400), (WRITE, {"seqs": [True]}, 400),
    (WRITE, {"seqs": 1}, 400), (WRITE, {}, 400), (WRITE, {"seqs": [99]}, 404),
    (WRITE, {"seqs": [1, 1]}, 400),
])
def test_a_write_without_the_token_or_from_elsewhere_changes_nothing(writable: Client, failing_db: Path,
                                                                      headers, body, status):
    answer = writable.post("/api/dlq/replay", body=json.dumps(body), headers=headers)
    assert answer.status == status, answer.text
    assert [r["status"] for r in rows(failing_db, "SELECT status FROM dead_letters")] == ["pending"] * 3


def test_a_form_post_from_another_site_changes_nothing(writable: Client, failing_db: Path):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = writable.post("/api/dlq/discard", body="seqs=1&token=x", headers={**form, "Origin": "http://evil.example"})
    assert answer.status == 403
    answer = writable.post("/api/dlq/discard", body="seqs=1", headers=form)
    assert answer.status == 403
    assert [r["status"] for r in rows(failing_db, "SELECT status FROM dead_letters")] == ["pending"] * 3


def test_a_foreign_host_name_is_refused(writable: Client):
    assert writable.get("/", headers={"Host": "rebound.example:8700"}).status == 403
    assert writable.get("/", headers={"Host": "localhost:8700"}).status == 200
    assert writable.get("/", headers={"Host": "[::1]:8700"}).status == 200


def test_with_the_token_dead_letters_are_replayed_and_discarded(writable: Client, failing_db: Path):
    page = writable.get("/").text
    assert f'<meta name="netrun-token" content="{TOKEN}">' in page
    answer = writable.post("/api/dlq/replay", body=json.dumps({"seqs": [1, 3]}), headers=WRITE)
    assert answer.status == 200, answer.text
    done = answer.json()["done"]
    assert [d["seq"] for d in done] == [1, 3] and all(d["replayed_as"] for d in done)
    answer = writable.post("/api/dlq/discard", body=json.dumps({"seqs": [2]}),
                           headers={**WRITE, "Origin": f"http://127.0.0.1:{writable.port}"})
    assert answer.json() == {"done": [{"seq": 2, "discarded": True}], "interrupted": 0}
    stored = rows(failing_db, "SELECT seq, status, replayed_as FROM dead_letters ORDER BY seq")
    assert [(r["seq"], r["status"]) for r in stored] == [(1, "replayed"), (2, "discarded"), (3, "replayed")]
    assert [r["replayed_as"] for r in stored] == [done[0]["replayed_as"], None, done[1]["replayed_as"]]
    again = writable.post("/api/dlq/replay", body=json.dumps({"seqs": [1]}), headers=WRITE)
    assert again.status == 400 and "already replayed" in again.json()["message"]
    # the replayed values wait at Check.in, as after `netrun dlq replay`
    assert writable.get("/api/live").json()["ports"] == {"Check.in": 2}
