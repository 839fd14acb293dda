"""The word-frequency example runs end to end and leaves its whole run in the database."""

from __future__ import annotations

import re
from collections import Counter

import netrun

from netrun.examples import wordfreq

from .helpers import rows, scalar

DOCS = sorted(p for p in wordfreq.CORPUS.glob("*.txt") if p.name != "README.txt")


def non_empty_lines(path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def test_wordfreq_prints_top_words_and_sql_summary(tmp_path, capsys):
    db = tmp_path / "wf.db"
    assert wordfreq.main([str(db)]) == 0
    out = capsys.readouterr().out
    assert f"word frequencies over {len(DOCS)} documents" in out
    assert re.search(r"^\d+ distinct words; top 15:$", out, re.MULTILINE)
    # counted by hand in the corpus: "sister" twice in Alice, once in Frankenstein;
    # "whenever" three times in Moby Dick
    assert re.search(r"^\s+sister\s+3$", out, re.MULTILINE)
    assert re.search(r"^\s+whenever\s+3$", out, re.MULTILINE)
    top = re.findall(r"^  ([a-z']+)\s+(\d+)$", out, re.MULTILINE)
    assert len(top) == 15
    counts = [int(n) for _, n in top]
    assert counts == sorted(counts, reverse=True)
    assert not {word for word, _ in top} & wordfreq.STOPWORDS
    assert "SQL over the run's history" in out
    lines = sum(non_empty_lines(d) for d in DOCS)
    for node, epochs in (("Read", 1), ("Split", len(DOCS)), ("Tokenize", lines), ("Count", lines)):
        assert re.search(rf"^\s+{node}\s+{epochs} epochs\s+[\d.]+ ms avg$", out, re.MULTILINE), node
    # Merge takes every partial count waiting when it starts: between 1 and `lines` epochs
    merges = int(re.search(r"^\s+Merge\s+(\d+) epochs", out, re.MULTILINE).group(1))
    assert merges in range(1, lines + 1)
    history = scalar(db, "SELECT count(*) FROM history")
    assert f"{history} history rows in {db}" in out


def test_wordfreq_database_holds_the_finished_run(tmp_path, capsys):
    db = tmp_path / "wf.db"
    assert wordfreq.main([str(db), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^  ([a-z']+)\s+(\d+)$", out, re.MULTILINE)) == 3
    lines = sum(non_empty_lines(d) for d in DOCS)
    by_node = {r["node_name"]: (r["state"], r["n"])
               for r in rows(db, "SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2")}
    merges = by_node.pop("Merge")
    assert by_node == {"Read": ("finished", 1), "Split": ("finished", len(DOCS)), "Tokenize": ("finished", lines),
                       "Count": ("finished", lines)}
    assert merges[0] == "finished" and merges[1] in range(1, lines + 1)
    # every packet was consumed but the final total, which waits at Merge.total
    left = rows(db, "SELECT location, node_name, port_name FROM packets WHERE state != 'consumed'")
    assert left == [{"location": "input_port", "node_name": "Merge", "port_name": "total"}]
    split_logs = [r["text"] for r in rows(db, "SELECT text FROM node_logs WHERE node_name = 'Split' ORDER BY seq")]
    assert sorted(split_logs) == sorted(f"split {d.name}: {non_empty_lines(d)} lines" for d in DOCS)
    assert scalar(db, "SELECT count(*) FROM node_logs WHERE node_name != 'Split'") == 0
    # Split echoes its progress to the terminal too
    for line in split_logs:
        assert line in out


def test_wordfreq_replaces_an_existing_database(tmp_path, capsys):
    db = tmp_path / "wf.db"
    assert wordfreq.main([str(db)]) == 0
    first = scalar(db, "SELECT count(*) FROM epochs")
    assert wordfreq.main([str(db)]) == 0
    capsys.readouterr()
    assert scalar(db, "SELECT count(*) FROM epochs") == first


def test_wordfreq_total_counts_every_word_of_the_corpus(tmp_path, capsys):
    db = tmp_path / "wf.db"
    assert wordfreq.main([str(db)]) == 0
    capsys.readouterr()
    expected = Counter(w for d in DOCS for w in wordfreq.WORD.findall(d.read_text(encoding="utf-8").lower())
                       if w not in wordfreq.STOPWORDS)
    with netrun.Net.resume(db) as net:
        total = wordfreq.final_total(net)
    assert total == dict(expected)
    assert list(total.values()) == sorted(total.values(), reverse=True)
