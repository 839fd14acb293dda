"""Word frequencies over the corpus shipped with netrun, run durably on a database file.

    python -m netrun.examples.wordfreq [DB] [--top N] [--corpus DIR]

Pipeline: each document is injected at Split.in; Split emits one packet per line,
Tokenize turns a line into words, Count counts them, Merge adds the counts up. Every
step is in DB afterwards: the script ends with an SQL query over its history.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from pathlib import Path

import netrun
from netrun.graphs import edge, simple_node

CORPUS = Path(__file__).with_name("corpus")
STOPWORDS = frozenset(
    "a an and are as at be but by for from had has have he her his i in is it its me my no not of on or "
    "she so some that the their them then there they this to was we were what when which who will with "
    "you your".split())
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def split(ctx, packets):
    name, text = ctx.consume_packet(packets["in"][0])
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines:
        ctx.load_output_port("out", ctx.create_packet(line))
    ctx.send_output_salvo("send_out")
    print(f"split {name}: {len(lines)} lines")


def tokenize(ctx, packets):
    line = ctx.consume_packet(packets["in"][0])
    words = [w for w in WORD.findall(line.lower()) if w not in STOPWORDS]
    ctx.load_output_port("out", ctx.create_packet(words))
    ctx.send_output_salvo("send_out")


def count(ctx, packets):
    words = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(dict(Counter(words))))
    ctx.send_output_salvo("send_out")


class Merge:
    """The sink: adds partial counts into one Counter."""

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.parts = 0

    def __call__(self, ctx, packets):
        self.totals.update(ctx.consume_packet(packets["in"][0]))
        self.parts += 1


def build(db: str, corpus: Path) -> tuple[netrun.Net, Merge, list[Path]]:
    docs = sorted(p for p in corpus.glob("*.txt") if p.name != "README.txt")
    if not docs:
        raise SystemExit(f"no .txt documents in {corpus}")
    graph = netrun.Graph(
        [simple_node("Split", ["in"], ["out"]), simple_node("Tokenize", ["in"], ["out"]),
         simple_node("Count", ["in"], ["out"]), simple_node("Merge", ["in"], [])],
        [edge("Split", "Tokenize"), edge("Tokenize", "Count"), edge("Count", "Merge")])
    net = netrun.Net(graph, db=db)
    merge = Merge()
    net.set_node_exec("Split", split)
    net.set_node_exec("Tokenize", tokenize)
    net.set_node_exec("Count", count)
    net.set_node_exec("Merge", merge)
    net.set_node_config("Split", echo_stdout=True)  # progress on the terminal, and in node_logs
    return net, merge, docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Word frequencies over a text corpus, run by netrun.")
    parser.add_argument("db", nargs="?", default="wordfreq.db", help="database file (replaced if it exists)")
    parser.add_argument("--top", type=int, default=15, help="how many words to show")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder of .txt documents")
    args = parser.parse_args(argv)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(args.db + suffix):
            os.remove(args.db + suffix)
    net, merge, docs = build(args.db, args.corpus)
    with net:
        print(f"netrun {netrun.__version__}: word frequencies over {len(docs)} documents -> {args.db}")
        for doc in docs:
            net.inject_packet("Split", "in", (doc.name, doc.read_text(encoding="utf-8")))
        net.start()
        print(f"\nmerged {merge.parts} partial counts; top {args.top} words:")
        for word, n in sorted(merge.totals.items(), key=lambda kv: (-kv[1], kv[0]))[:args.top]:
            print(f"  {word:<14} {n:>4}")
        rows = net.query(
            "SELECT node_name, count(*) AS epochs, "
            "round(avg((julianday(finished_at) - julianday(started_at)) * 86400000.0), 3) AS avg_ms "
            "FROM epochs WHERE state = 'finished' GROUP BY node_name ORDER BY min(created_at)")
        print("\nSQL over the run's history: SELECT node_name, count(*), avg duration FROM epochs ...")
        for row in rows:
            print(f"  {row['node_name']:<9} {row['epochs']:>4} epochs  {row['avg_ms']:>7} ms avg")
        events = net.query("SELECT count(*) AS n FROM history")[0]["n"]
        print(f"\n{events} history rows in {args.db}; try: sqlite3 {args.db} "
              "\"SELECT name, count(*) FROM history GROUP BY name\"")
    return 0


if __name__ == "__main__":
    sys.exit(main())
