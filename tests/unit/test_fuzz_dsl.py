"""Malformed definitions and expressions, generated: each one loads, or raises a netrun error with a
message; none raises anything else or hangs.

A deterministic hand-written generator (random.Random(seed)) mutates small valid documents:
truncations, inserted, deleted and replaced characters, dropped and repeated lines, and
mutations of the parsed document (wrong types, unknown keys, bad edges, bad expressions,
renamed nodes) written back as TOML. Expressions get random token sequences and character
mutations. Inputs stay small, so each case is bounded in time.
"""

from __future__ import annotations

import copy
import datetime
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import tomli_w
import tomllib

import netrun

from netrun.expressions import parse, to_text
from netrun.graphio import term_to_data
from tests.dsl_fixtures.definitions import (
    PIPELINE,
    SPEC_EXAMPLES,
    SPEC_FACTORY_CALLABLE_ARG,
    SPEC_NET,
    SPEC_NODE_PORT_TABLES,
    TYPED_PORTS,
)

SEED = 20261128
DOCUMENTS = 8_000
EXPRESSIONS = 6_000

# Small valid documents to mutate: every construct of the DSL appears in one of them.
BASES = [PIPELINE, SPEC_NET + SPEC_NODE_PORT_TABLES, SPEC_EXAMPLES["edges_inline"], SPEC_FACTORY_CALLABLE_ARG,
         TYPED_PORTS]

CHARS = list("[]{}=\".,'#:\n \t-_0123456789aAzZé\\") + ["\x00", "\x7f", "\u2028"]
WRONG_VALUES = [0, -1, 3, 2**63, 1.5, float("nan"), True, "", "x", "A.out", "nonempty(", "in", [], [1, "a"],
                {}, {"a": 1}, {"slots": -1}, {"when": 1}, datetime.date(2024, 1, 2), ["in", "in"]]
SMALL_WRONG_VALUES = [v for v in WRONG_VALUES if not (isinstance(v, int) and abs(v) > 10)]
BAD_REFS = ["", ".", "A", "A.", ".in", "A.out.x", "Z.in", "Source.in", "Sink.out", "a b.c", "Double..out"]
BAD_WHEN = ["", "nonempty(", "nonempty(in1) and", "count(in1) = 2", "count(in1) >= -1", "nonempty(zz)", "not",
            "((((true", "true)", "empty(in1) or or full(in1)", "count(in1) >= 99999999999999999999",
            "nonempty('in1)"]


def _mutate_text(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(6)
        pos = rng.randrange(len(text) + 1)
        if kind == 0:
            text = text[:pos]
        elif kind == 1:
            text = text[:pos] + rng.choice(CHARS) + text[pos:]
        elif kind == 2:
            text = text[:pos] + text[pos + rng.randint(1, 4):]
        elif kind == 3:
            text = text[:pos] + rng.choice(CHARS) + text[pos + 1:]
        else:
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            if kind == 4:
                del lines[i]
            else:
                lines.insert(rng.randrange(len(lines) + 1), lines[i])
            text = "\n".join(lines)
        if not text:
            break
    return text


def _tables(value: object, path: tuple = ()) -> list[tuple]:
    """Paths of every table in a parsed document (the root is ())."""
    found = [path] if isinstance(value, dict) else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _tables(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _tables(item, (*path, i))
    return found


def _at(doc: dict, path: tuple) -> object:
    for key in path:
        doc = doc[key]
    return doc


def _mutate_document(rng: random.Random, doc: dict) -> dict:
    for _ in range(rng.randint(1, 2)):
        table = _at(doc, rng.choice(_tables(doc)))
        edges = [e for e in doc["edges"] if isinstance(e, dict)] if isinstance(doc.get("edges"), list) else []
        nodes = doc["nodes"] if isinstance(doc.get("nodes"), dict) else None
        kind = rng.randrange(6)
        if kind == 0 and table:  # a wrong value
            key = rng.choice(sorted(table, key=str))
            # A factory builds what its arguments say: a huge num_inputs would be a huge node, not a netrun bug.
            in_factory_args = "num_inputs" in table or "func" in table
            table[key] = copy.deepcopy(rng.choice(SMALL_WRONG_VALUES if in_factory_args else WRONG_VALUES))
        elif kind == 1:  # an unknown key
            key = rng.choice(["colour", "slot", "ports", "when", "type", "meta", "factory"])
            table[key] = copy.deepcopy(rng.choice(WRONG_VALUES))
        elif kind == 2 and table:  # a key removed
            del table[rng.choice(sorted(table, key=str))]
        elif kind == 3 and edges:  # a bad edge end
            rng.choice(edges)[rng.choice(["from", "to"])] = rng.choice(BAD_REFS)
        elif kind == 4 and nodes is not None:  # a bad expression
            conditions = [c for n in nodes.values() if isinstance(n, dict) for side in ("in", "out")
                          if isinstance(n.get(f"{side}_salvo_conditions"), dict)
                          for c in n[f"{side}_salvo_conditions"].values() if isinstance(c, dict)]
            if conditions:
                rng.choice(conditions)["when"] = rng.choice(BAD_WHEN)
            else:
                nodes["N"] = {"in_ports": ["in"], "in_salvo_conditions": {"go": {"when": rng.choice(BAD_WHEN)}}}
        elif kind == 5 and nodes:  # a node renamed: its edges now point nowhere
            name = rng.choice(sorted(nodes))
            nodes[name + rng.choice(["2", ".x", " "])] = nodes.pop(name)
    return doc


def documents(rng: random.Random, count: int):
    for i in range(count):
        base = rng.randrange(len(BASES))
        if i % 2:
            yield _mutate_text(rng, BASES[base])
            continue
        doc = _mutate_document(rng, tomllib.loads(BASES[base]))
        try:
            yield tomli_w.dumps(doc)
        except (TypeError, ValueError):  # a value TOML cannot write (nan in an array...): mutate the text instead
            yield _mutate_text(rng, BASES[base])


TOKENS = ["nonempty", "empty", "full", "nonfull", "count", "(", ")", "and", "or", "not", "true", "false", "==",
          "<=", ">=", "<", ">", "!=", "a", "b", "in1", "zz", "3", "0", "99999999999999999999", "'q'", "'", '"', ",",
          "!", "@", "é", " ", "\t", "\n", "-"]
VALID = ["nonempty(a) and (count(b) >= 2 or not full(in1))", "count(a) == 3", "not not empty(b)",
         "(nonempty(a) or nonempty(b)) and not full(in1)"]


def expressions(rng: random.Random, count: int):
    for i in range(count):
        if i % 2:
            yield "".join(rng.choice(TOKENS) + rng.choice(["", " "]) for _ in range(rng.randint(0, 12)))
        else:
            yield _mutate_text(rng, rng.choice(VALID))


MAX_CASE_SECONDS = 2.0  # no single case may take long: nothing loops or recurses on its input


def _check(kind: str, case: str, run) -> bool:
    """True if `run()` succeeded, False if it raised a netrun error with a message; anything else fails."""
    started = time.monotonic()
    try:
        run()
    except netrun.NetrunError as exc:
        assert str(exc).strip(), f"empty message for {kind} {case!r}"
        return False
    except Exception as exc:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{kind} {case!r} raised {type(exc).__name__}: {exc}")
    finally:
        assert time.monotonic() - started < MAX_CASE_SECONDS, f"{kind} {case!r} took too long"
    return True


def test_malformed_definitions_and_expressions_raise_only_netrun_errors(tmp_path, monkeypatch, capsys, request):
    monkeypatch.chdir(tmp_path)  # a mutated document may name relative files
    rng = random.Random(SEED)
    started = time.monotonic()
    counts = {"documents": 0, "documents_loaded": 0, "expressions": 0, "expressions_parsed": 0}

    # Databases of the documents that load go to a RAM disk where there is one: the disk is not under test.
    scratch = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp_path))
    request.addfinalizer(lambda: shutil.rmtree(scratch, ignore_errors=True))

    def load(text: str) -> None:
        try:
            netrun.Net.load_definition(text, db=scratch / "net.db").close()
        finally:
            for leftover in scratch.iterdir():
                leftover.unlink()

    for text in documents(rng, DOCUMENTS):
        counts["documents"] += 1
        counts["documents_loaded"] += _check("document", text, lambda: load(text))

    ports = {"a", "b", "in1"}
    for text in expressions(rng, EXPRESSIONS):
        counts["expressions"] += 1
        if _check("expression", text, lambda: parse(text, ports=ports)):
            counts["expressions_parsed"] += 1
            term = parse(text, ports=ports)
            assert term_to_data(parse(to_text(term))) == term_to_data(term)

    elapsed = time.monotonic() - started
    total = counts["documents"] + counts["expressions"]
    with capsys.disabled():
        print(f"\nfuzz: {total} cases ({counts}) in {elapsed:.1f} s")
    assert total >= 10_000
    # Most cases must be malformed, or the test would prove little.
    assert counts["documents_loaded"] < counts["documents"] / 4
    assert elapsed < 120  # a bound on a hang only: each case has its own (MAX_CASE_SECONDS); a loaded machine is slow
