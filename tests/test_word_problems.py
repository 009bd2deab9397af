"""The shipped word-problem task (gopd.tasks.word_problems): reproducible, verifiable, graded hints."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gopd.tasks.word_problems import make_splits
from gopd.verifier import extract_answer, verify

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "gopd" / "tasks" / "word_problems"


def shipped(split: str) -> list[dict]:
    return [json.loads(line) for line in (SHIPPED / f"{split}.jsonl").read_text().splitlines()]


def test_the_shipped_files_are_the_generator_at_seed_0():
    assert make_splits(seed=0) == {"train": shipped("train"), "test": shipped("test")}


def test_every_solution_verifies_and_the_hints_are_graded():
    rows = shipped("train") + shipped("test")
    assert len({r["problem"] for r in rows}) == len(rows) == 1200  # test problems never seen in training
    assert {r["domain"] for r in rows} == {"add", "mul"}
    for r in rows:
        a, b = map(int, re.findall(r"\d+", r["problem"])[:2])
        assert int(r["answer"]) == (a + b if r["domain"] == "add" else a * b)
        assert verify(r["solution"], r["answer"]) and extract_answer(r["hint_answer"]) == r["answer"]
        assert r["hint_solution"] == r["solution"] and not any(c.isdigit() for c in r["hint_soft"])
