"""Bad data files and rows: one line naming the file and line (or the row), before any model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faults import one_error_line, train

from gopd.data import row_problem
from gopd.datafiles import file_problem


def _rows(n: int = 12) -> list[dict]:
    return [{"id": i, "problem": f"{i}+{i}", "answer": str(2 * i), "domain": "add",
             "hint_answer": f"the answer is \\boxed{{{2 * i}}}"} for i in range(10, 10 + n)]


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _with(rows, i: int, **changes) -> list[dict]:
    rows = [dict(r) for r in rows]
    for key, value in changes.items():
        if value is ...:
            rows[i].pop(key)
        else:
            rows[i][key] = value
    return rows


CSV_HEADER = "id,problem,answer,domain,hint_answer\n"


def _csv(rows) -> str:
    return CSV_HEADER + "".join(f"{r['id']},{r['problem']},{r['answer']},add,hint\n" for r in rows)


# ------------------------------------------------------------------------------------ file_problem
def test_a_good_file_has_no_problem(tmp_path):
    assert file_problem(_write(tmp_path / "a.jsonl", _jsonl(_rows()))) is None
    assert file_problem(_write(tmp_path / "a.csv", _csv(_rows()))) is None
    assert file_problem(_write(tmp_path / "a.json", json.dumps(_rows()))) is None


@pytest.mark.parametrize("name,content,expected", [
    ("e.jsonl", "", "e.jsonl: empty file (no rows)"),
    ("b.jsonl", "\n\n  \n", "b.jsonl: no rows (only blank lines)"),
    ("t.jsonl", _jsonl(_rows())[:-25], "t.jsonl, line 12: not valid JSON (the file ends mid-row: truncated?)"),
    ("m.jsonl", _jsonl(_rows()[:3]) + "{oops\n" + _jsonl(_rows()[:2]), "m.jsonl, line 4: not valid JSON: "),
    ("u.jsonl", _jsonl(_rows()[:5]).encode() + b'{"problem": "caf\xe9"}\n', "u.jsonl, line 6: not UTF-8 (byte 0xe9)"),
    ("l.jsonl", _jsonl(_rows()[:2]) + "[1, 2]\n", "l.jsonl, line 3: a JSON list, not an object"),
    ("x.jsonl", _jsonl(_with(_rows(), 7, problem=12)), "x.jsonl, line 8: 'problem' is a number here but a string on line 1"),
    ("r.csv", _csv(_rows()).replace("15,15+15,30,add,hint", "15,15+15,30,add,hint,extra"),
     "r.csv, line 7: 6 fields, the header has 5"),
])
def test_each_bad_file_is_one_line_naming_file_and_line(tmp_path, name, content, expected):
    problem = file_problem(_write(tmp_path / name, content))
    assert problem is not None and "\n" not in problem
    assert problem.startswith(str(tmp_path / expected.split(":")[0].split(",")[0])) and expected in problem


def test_a_truncated_parquet_file_is_named(tmp_path):
    import datasets

    path = tmp_path / "train.parquet"
    datasets.Dataset.from_list(_rows()).to_parquet(str(path))
    assert file_problem(path) is None
    path.write_bytes(path.read_bytes()[:-40])
    assert file_problem(path).startswith(f"{path}: not a readable Parquet file")


@pytest.mark.parametrize("row,expected", [
    ({"problem": "1+1", "answer": "2"}, None),
    ({"problem": "1+1", "answer": 2}, None),          # a numeric answer is read as text
    ({"problem": "1+1", "answer": 2.5}, None),
    ({"problem": "1+1", "answer": None}, "answer is null or missing"),
    ({"problem": "1+1"}, "answer is null or missing"),
    ({"problem": "1+1", "answer": " "}, "answer is empty"),
    ({"problem": "1+1", "answer": True}, "answer is bool True, not text or a number"),
    ({"problem": "1+1", "answer": [2]}, "answer is list [2], not text or a number"),
    ({"problem": "1+1", "answer": float("nan")}, "answer is nan"),
    ({"problem": None, "answer": "2"}, "problem is null or missing"),
    ({"problem": 12, "answer": "2"}, "problem is int 12, not text"),
    ({"problem": "", "answer": "2"}, "problem is empty"),
])
def test_row_problem(row, expected):
    assert row_problem(row, "problem", "answer") == expected


def test_usable_rows_drops_only_when_asked_and_counts(tmp_path):
    from omegaconf import OmegaConf

    from gopd.data import DataError, load_splits

    rows = _with(_with(_with(_rows(), 3, answer=None), 5, answer=...), 7, problem=None)
    _write(tmp_path / "train.jsonl", _jsonl(rows))
    _write(tmp_path / "test.jsonl", _jsonl(_rows(4)))
    d = OmegaConf.create({"path": str(tmp_path), "train_split": "train", "test_split": "test", "problem_field": "problem",
                          "answer_field": "answer", "drop_invalid": False})
    with pytest.raises(DataError, match=r"row 4 \(id 13\) of 'train' .*: answer is null or missing; 3 of 12 rows"):
        load_splits(d)
    d.drop_invalid = True
    splits = load_splits(d)
    assert len(splits.train) == 9 and splits.dropped == {"train_split": 3, "test_split": 0}
    assert 13 not in splits.train["id"] and 15 not in splits.train["id"] and 17 not in splits.train["id"]


# ------------------------------------------------------------------------------- through the real CLI
DATA_CASES = {
    "empty": ("train.jsonl", "", "train.jsonl: empty file"),
    "truncated": ("train.jsonl", _jsonl(_rows())[:-25], "train.jsonl, line 12: not valid JSON (the file ends mid-row"),
    "not_utf8": ("train.jsonl", _jsonl(_rows()).encode() + b'{"problem": "caf\xe9", "answer": "1"}\n',
                 "train.jsonl, line 13: not UTF-8"),
    "ragged_csv": ("train.csv", _csv(_rows()).replace("15,15+15,30,add,hint", "15,15+15,30,add,hint,extra"),
                   "train.csv, line 7: 6 fields, the header has 5"),
    "null_answer": ("train.jsonl", _jsonl(_with(_rows(), 3, answer=None)), "row 4 (id 13) of 'train'"),
    "missing_answer": ("train.jsonl", _jsonl(_with(_rows(), 5, answer=...)), "row 6 (id 15) of 'train'"),
    "integer_problems": ("train.jsonl", _jsonl([{**r, "problem": r["id"]} for r in _rows()]),
                         "row 1 (id 10) of 'train' in"),
    "one_row": ("train.jsonl", _jsonl(_rows(1)), "data.train_split: 1 usable row(s)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_bad_data_stops_with_one_line_before_any_model_loads(toy_world_mini, tmp_path, case):
    name, content, expected = DATA_CASES[case]
    data = tmp_path / "data"
    data.mkdir()
    _write(data / name, content)
    _write(data / "test.jsonl", _jsonl(_rows(4)))
    run_dir = tmp_path / "run"
    line = one_error_line(train(run_dir, f"data.path={data}", "data.test_split=test"), 2)
    assert expected in line, line
    assert str(data) in line
    assert {p.name for p in run_dir.iterdir()} <= {".hydra", ".lock", "train.log"}  # no model, no metrics


@pytest.mark.slow
def test_drop_invalid_trains_on_the_rest_and_counts_them(toy_world_mini, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "train.jsonl", _jsonl(_with(_with(_rows(), 2, answer=None), 4, problem=7)))
    _write(data / "test.jsonl", _jsonl(_rows(4)))
    proc = train(tmp_path / "run", f"data.path={data}", "data.test_split=test", "data.drop_invalid=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "data.train_split: dropped 2 of 12 rows without a usable problem or answer" in proc.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["data_dropped"] == {"train_split": 2, "test_split": 0}
