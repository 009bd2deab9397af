"""Real datasets' column layouts through the data configs' mapping, from local files; the
math-verify reward on boxed answers, in and out of the main thread."""

from __future__ import annotations

import json
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from gopd.data import PromptStream, last_assistant_text, load_split, load_splits
from gopd.verifier import verify, verify_batch

ROOT = Path(__file__).resolve().parents[1]


def data_cfg(name: str, path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"data={name}", f"data.path={path}", *overrides]).data


# Column names and value shapes as published (zwhe99/DeepMath-103K's README features;
# nvidia/Nemotron-Math-v2 rows; siyanzhao/Openthoughts_math_30k_opsd as read by siyan-zhao/OPSD).
def deepmath_rows(n: int) -> list[dict]:
    return [{"question": f"Compute {i} + {i}.", "final_answer": str(2 * i), "difficulty": 5.0,
             "topic": "Mathematics -> Algebra -> Prealgebra" if i % 2 else "Mathematics -> Number Theory",
             "r1_solution_1": f"{i} + {i} = {2 * i}, so \\boxed{{{2 * i}}}", "r1_solution_2": "...",
             "r1_solution_3": "..."} for i in range(n)]


def nemotron_rows(n_problems: int, per_problem: int = 3) -> list[dict]:
    rows = []
    for i in range(n_problems):
        for j in range(per_problem):
            rows.append({
                "uuid": f"{i}-{j}", "problem": f"Find x if x - {i} = 0.", "expected_answer": str(i),
                "changed_answer_to_majority": False, "data_source": "aops" if i % 2 else "stackexchange",
                "metadata": {"reason_low_no_tool": {"accuracy": 0.5, "count": 8}},
                "tools": [], "messages": [
                    {"role": "user", "content": f"Find x if x - {i} = 0."},
                    {"role": "assistant", "content": f"Trajectory {j}: x = {i}. \\boxed{{{i}}}"}],
            })
    return rows


def opsd_rows(n: int) -> list[dict]:
    rows = [{"problem": f"What is {i} squared?", "solution": f"{i}*{i} = {i * i}. The answer is \\boxed{{{i * i}}}."}
            for i in range(n)]
    rows.append({"problem": "Prove that there are infinitely many primes.", "solution": "Euclid's argument."})
    return rows


def test_deepmath_layout_from_parquet(tmp_path):
    pd.DataFrame(deepmath_rows(20)).to_parquet(tmp_path / "train.parquet")
    d = data_cfg("deepmath", tmp_path, "data.holdout=5")
    train, test, _ = load_splits(d)
    assert (len(train), len(test)) == (15, 5)
    assert not set(train[d.problem_field]) & set(test[d.problem_field])  # held out, not overlapping
    row = train[0]
    assert row[d.answer_field] == str(2 * int(row[d.problem_field].split()[1]))
    assert row[d.domain_field].startswith("Mathematics ->") and "\\boxed{" in row[d.solution_field]
    assert d.hint_field == "final_answer" and d.hint_field in train.column_names
    assert load_splits(d)[1][d.problem_field] == test[d.problem_field]  # the same held-out set every time


def test_nemotron_layout_from_jsonl_one_row_per_problem(tmp_path):
    path = tmp_path / "low.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in nemotron_rows(12)))
    d = data_cfg("nemotron_math_v2", path, "data.holdout=4")
    train, test, _ = load_splits(d)
    assert len(train) + len(test) == 12  # 36 trajectories, 12 problems
    row = train[0]
    x = row[d.problem_field].split(" - ")[1].split(" ")[0]
    assert row[d.answer_field] == x and row[d.domain_field] in {"aops", "stackexchange"}
    assert row[d.solution_field] == f"Trajectory 0: x = {x}. \\boxed{{{x}}}"  # last assistant turn, as text
    assert verify(row[d.solution_field], row[d.answer_field])


def test_opsd_layout_answer_from_solution(tmp_path):
    pd.DataFrame(opsd_rows(10)).to_parquet(tmp_path / "data.parquet")
    d = data_cfg("opsd_openthoughts_math", tmp_path / "data.parquet", "data.holdout=3")
    train, test, _ = load_splits(d)
    assert len(train) + len(test) == 10  # the proof without a boxed answer is dropped
    for row in train.to_list() + test.to_list():
        n = int(row["problem"].split()[2])
        assert row[d.answer_field] == str(n * n) and row[d.hint_field] == row["solution"]


def test_local_directory_split_slicing(tmp_path):
    pd.DataFrame(deepmath_rows(10)).to_parquet(tmp_path / "train.parquet")
    assert len(load_split(str(tmp_path), "train[:3]")) == 3
    assert load_split(str(tmp_path), "train[8:]")["final_answer"] == ["16", "18"]
    d = data_cfg("deepmath", tmp_path, "data.train_split='train[:6]'", "data.test_split='train[6:]'")
    train, test, _ = load_splits(d)
    assert (len(train), len(test)) == (6, 4)


def test_last_assistant_text():
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a1"},
            {"role": "tool", "content": "out"}, {"role": "assistant", "content": "a2"}]
    assert last_assistant_text(msgs) == "a2"
    assert last_assistant_text("plain") == "plain" and last_assistant_text([]) == []


def test_prompt_stream_ranks_take_disjoint_batches(monkeypatch):

    rows = [{"i": i} for i in range(40)]
    import datasets

    ds = datasets.Dataset.from_list(rows)
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr("gopd.distributed.rank", lambda r=rank: r)
        monkeypatch.setattr("gopd.distributed.world_size", lambda: 2)
        it = iter(PromptStream(ds, 4, seed=0))
        seen.append([r["i"] for _ in range(3) for r in next(it)])
    assert not set(seen[0]) & set(seen[1])


# ------------------------------------------------------------------------------- math-verify

GRADES = [
    # (completion, reference answer, correct?)
    ("so the answer is \\boxed{\\frac{1}{2}}", "0.5", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{\\dfrac{3}{6}}", "1/2", True),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}", True),
    ("\\boxed{x = 3}", "3", True),
    ("\\boxed{(1, 2)}", "(1,2)", True),
    ("\\boxed{\\pi/2}", "\\frac{\\pi}{2}", True),
    ("\\boxed{1,000}", "1000", True),
    ("\\boxed{10\\%}", "10\\%", True),
    ("\\boxed{\\frac{1}{3}}", "0.5", False),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{8}", False),
    ("\\boxed{-3}", "3", False),
    ("\\boxed{(2, 1)}", "(1,2)", False),
    ("the answer is 0.5", "0.5", False),           # no box
    ("\\boxed{0.5", "0.5", False),                 # unterminated box
    ("\\boxed{}", "0.5", False),                   # empty box
    ("\\boxed{\\frac{1}{}", "0.5", False),         # malformed LaTeX
    ("\\boxed{\\frac{{1}{2}}", "\\frac{1}{2}", False),  # unbalanced braces
    ("\\boxed{@@#}", "0.5", False),                # garbage
]


@pytest.mark.parametrize("completion,answer,ok", GRADES)
def test_math_verify_grades_boxed_answers(completion, answer, ok):
    assert verify(completion, answer) is ok


def test_math_verify_is_safe_off_the_main_thread():
    """math-verify times out with signal.alarm, which raises off the main thread: the verifier
    switches its timeouts off there; results must match the main thread's, and no alarm is left."""
    completions, answers = zip(*[(c, a) for c, a, _ in GRADES])
    expected = [ok for _, _, ok in GRADES]
    assert verify_batch(completions, answers) == expected
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0) and signal.alarm(0) == 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: verify(completions[i], answers[i]), range(len(GRADES))))
    assert results == expected
    errors = []

    def worker():
        try:
            assert verify_batch(completions, answers) == expected
        except BaseException as e:  # noqa: BLE001 - report any failure of the thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
