"""Word frequencies over the corpus shipped with netrun, run durably on a database file.

The pipeline is defined in `wordfreq.toml` beside this file, and the `netrun` command runs it:

    netrun run netrun/examples/wordfreq.toml --db wordfreq.db

This module holds its node functions, and a `main` that does the same through the library:

    python -m netrun.examples.wordfreq [DB] [--top N] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import Counter
from pathlib import Path

import netrun

CORPUS = Path(__file__).with_name("corpus")
DEFINITION = Path(__file__).with_name("wordfreq.toml")
STOPWORDS = frozenset(
    "a an and are as at be but by for from had has have he her his i in is it its me my no not of on or "
    "she so some that the their them then there they this to was we were what when which who will with "
    "you your".split())
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def documents(corpus: Path = CORPUS) -> list[Path]:
    return sorted(p for p in corpus.glob("*.txt") if p.name != "README.txt")


def read_corpus(ctx, packets):
    """The source: one (name, text) packet per document of the shipped corpus, and an empty total."""
    for doc in documents():
        ctx.load_output_port("out", ctx.create_packet((doc.name, doc.read_text(encoding="utf-8"))))
    ctx.send_output_salvo("send_out")
    ctx.load_output_port("seed", ctx.create_packet({}))
    ctx.send_output_salvo("send_seed")


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


def merge(ctx, packets):
    """Add every waiting partial count into the total; the new total goes back to Merge.total,
    most frequent words first (so a preview of the value shows the top words)."""
    total = Counter(ctx.consume_packet(packets["total"][0]))
    for packet in packets["in"]:
        total.update(ctx.consume_packet(packet))
    ctx.load_output_port("total", ctx.create_packet(dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))))
    ctx.send_output_salvo("send_total")


def final_total(net: netrun.Net) -> dict[str, int]:
    """The total waiting at Merge.total once the net is blocked."""
    rows = net.query("SELECT id FROM packets WHERE state = 'live' AND location = 'input_port' "
                     "AND node_name = 'Merge' AND port_name = 'total'")
    return net.get_packet_value(rows[0]["id"]) if rows else {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Word frequencies over a text corpus, run by netrun.")
    parser.add_argument("db", nargs="?", default="wordfreq.db", help="database file (replaced if it exists)")
    parser.add_argument("--top", type=int, default=15, help="how many words to show")
    parser.add_argument("--corpus", type=Path, help="a folder of .txt documents instead of the shipped corpus")
    args = parser.parse_args(argv)
    docs = documents(args.corpus or CORPUS)
    if not docs:
        parser.error(f"no .txt documents in {args.corpus}")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(args.db + suffix):
            os.remove(args.db + suffix)
    with netrun.Net.load_definition(DEFINITION, db=args.db) as net:
        print(f"netrun {netrun.__version__}: word frequencies over {len(docs)} documents -> {args.db}")
        if args.corpus is None:
            net.inject_source_epoch("Read")
        else:
            for doc in docs:
                net.inject_packet("Split", "in", (doc.name, doc.read_text(encoding="utf-8")))
            net.inject_packet("Merge", "total", {})
        net.start()
        total = final_total(net)
        print(f"\n{len(total)} distinct words; top {args.top}:")
        for word, n in list(total.items())[:args.top]:
            print(f"  {word:<14} {n:>4}")
        rows = net.query(
            "SELECT node_name, count(*) AS epochs, "
            "round(avg((julianday(finished_at) - julianday(started_at)) * 86400000.0), 3) AS avg_ms "
            "FROM epochs WHERE state = 'finished' GROUP BY node_name ORDER BY min(created_at)")
        print("\nSQL over the run's history: SELECT node_name, count(*), avg duration FROM epochs ...")
        for row in rows:
            print(f"  {row['node_name']:<9} {row['epochs']:>4} epochs  {row['avg_ms']:>7} ms avg")
        events = net.query("SELECT count(*) AS n FROM history")[0]["n"]
        print(f"\n{events} history rows in {args.db}; try: netrun status {args.db}, "
              f"netrun history {args.db} --node Merge")
    return 0


if __name__ == "__main__":
    sys.exit(main())
