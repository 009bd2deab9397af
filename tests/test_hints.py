"""Offline hint rewriting: rows added, resumable after a kill, idempotent, missing solutions."""

from __future__ import annotations

import json
import re

import datasets
import pytest
import torch

from gopd.tools import hints
from gopd.tools.hints import HintError, HintTemplate, clean_hint, load_template, mentions_answer, rewrite

TEMPLATE = HintTemplate(name="t", column="hint_new", prompt="Problem: {problem}\nSolution: {solution}\nHint:",
                        max_new_tokens=6)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny models are ~100x slower with 2 threads on 2 busy cores
    yield
    torch.set_num_threads(n)


class Fake:
    """A deterministic generator; ``fail_at`` raises KeyboardInterrupt on that call (a kill)."""

    def __init__(self, fail_at: int | None = None):
        self.calls, self.prompts, self.fail_at = 0, 0, fail_at

    def generate(self, prompts):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt
        self.prompts += len(prompts)
        return [" Hint: " + p.split("\n")[0].removeprefix("Problem: ") + " <think>x" for p in prompts]


def read(out, split="train"):
    return datasets.Dataset.from_parquet(str(out / f"{split}.parquet"))


def test_tiny_generator_adds_a_hint_column(toy_world_mini, tmp_path):
    man = rewrite(str(toy_world_mini / "data"), tmp_path, TEMPLATE, generator=str(toy_world_mini / "student"),
                  splits=["train", "test"], limit=5, batch_size=3, shard_size=4, progress=False)
    src = datasets.Dataset.from_parquet(str(toy_world_mini / "data" / "train.parquet"))
    out = read(tmp_path)
    assert out.num_rows == 5 and out.column_names == src.column_names + ["hint_new"]
    assert out.to_list()[0]["problem"] == src[0]["problem"]
    assert all(isinstance(h, str) for h in out["hint_new"])
    assert read(tmp_path, "test").num_rows == 5
    assert man["splits"]["train"]["generated"] == 5 and man["skipped"] == []
    on_disk = json.loads((tmp_path / hints.MANIFEST).read_text())
    assert on_disk["column"] == "hint_new" and set(on_disk["splits"]) == {"train", "test"}


def test_interrupted_rewrite_resumes_then_is_idempotent(toy_world_mini, tmp_path):
    data = str(toy_world_mini / "data")
    kw = dict(generator="fake", splits=["train"], limit=20, batch_size=2, shard_size=4, progress=False)
    killed = Fake(fail_at=5)  # shards of 4 rows = 2 calls each: shards 0 and 1 are saved, shard 2 is not
    with pytest.raises(KeyboardInterrupt):
        rewrite(data, tmp_path, TEMPLATE, make_generator=lambda: killed, **kw)
    assert not (tmp_path / "train.parquet").exists()
    assert len(list((tmp_path / hints.WORK_DIR / "train").glob("shard-*.jsonl"))) == 2

    resumed = Fake()
    man = rewrite(data, tmp_path, TEMPLATE, make_generator=lambda: resumed, **kw)
    assert resumed.prompts == 12  # only the 12 rows not saved before the kill
    assert man["splits"]["train"]["generated"] == 12 and man["splits"]["train"]["resumed"] == 8

    fresh = tmp_path / "fresh"
    rewrite(data, fresh, TEMPLATE, make_generator=Fake, **kw)
    assert read(tmp_path).to_list() == read(fresh).to_list()  # same as an uninterrupted run
    assert read(tmp_path)["hint_new"][0] == read(tmp_path)["problem"][0]  # cleaned: label and <think> dropped

    def must_not_load():
        raise AssertionError("a finished split must not load the generator")

    again = rewrite(data, tmp_path, TEMPLATE, make_generator=must_not_load, **kw)
    assert again["skipped"] == ["train"]
    with pytest.raises(HintError, match="another configuration"):
        rewrite(data, tmp_path, TEMPLATE, make_generator=Fake, **{**kw, "limit": 12})


def _data_with_a_gap(tmp_path):
    rows = [{"id": "r1", "problem": "1+1", "solution": "2 \\boxed{2}", "answer": "2"},
            {"id": "r2", "problem": "2+2", "solution": None, "answer": "4"},
            {"id": "r3", "problem": "3+3", "solution": "  ", "answer": "6"}]
    path = tmp_path / "data" / "train.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path.parent


def test_missing_solution_is_a_one_line_error_naming_the_row(tmp_path, capsys):
    data = _data_with_a_gap(tmp_path)
    with pytest.raises(HintError, match=r"row r2 \(index 1\) of split 'train' has no 'solution' \(and 1 more\)"):
        rewrite(str(data), tmp_path / "out", TEMPLATE, generator="x", splits=["train"], make_generator=Fake,
                progress=False)
    capsys.readouterr()
    code = hints.main([f"data.path={data}", "data.test_split=null", "--out", str(tmp_path / "out2"),
                       "--generator", "/no/such/model"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: row r2 (index 1)") and "--skip-missing" in err[0]
    assert not (tmp_path / "out2" / "train.parquet").exists()


def test_skip_missing_leaves_a_null_hint(tmp_path):
    data = _data_with_a_gap(tmp_path)
    fake = Fake()
    man = rewrite(str(data), tmp_path / "out", TEMPLATE, generator="x", splits=["train"], make_generator=lambda: fake,
                  skip_missing=True, progress=False)
    assert read(tmp_path / "out")["hint_new"] == ["1+1", None, None]
    assert fake.prompts == 1 and man["splits"]["train"]["missing_solution"] == 2


def test_bad_template_field_and_existing_column_are_errors(toy_world_mini, tmp_path):
    bad = HintTemplate(name="b", column="hint_new", prompt="{problem} {rationale}")
    data = str(toy_world_mini / "data")
    with pytest.raises(HintError, match=r"reads \{rationale\}"):
        rewrite(data, tmp_path, bad, generator="x", splits=["train"], make_generator=Fake)
    with pytest.raises(HintError, match="already has a column 'hint_soft'"):
        rewrite(data, tmp_path, TEMPLATE, generator="x", splits=["train"], column="hint_soft", make_generator=Fake)


@pytest.mark.parametrize("name", ["answer", "structural", "minimal"])
def test_shipped_templates_load_and_every_key_is_commented(name):
    t = load_template(name)
    assert set(t.fields()) <= {"problem", "solution", "answer"} and t.column.startswith("hint_")
    assert t.reveals_answer == (name == "answer")
    keys = [ln for ln in (hints.TEMPLATE_DIR / f"{name}.yaml").read_text().splitlines() if re.match(r"^\w+:", ln)]
    assert keys and all("#" in ln for ln in keys), keys


def test_unknown_template_names_the_shipped_ones():
    with pytest.raises(HintError, match="one of: answer, minimal, structural"):
        load_template("nope")


def test_clean_hint_and_answer_mentions():
    assert clean_hint("<think>long</think>\n Hint: try carries ") == "try carries"
    assert clean_hint("Guidance: a <think>unfinished") == "a"
    assert mentions_answer("the answer is 842.", "842") and not mentions_answer("8420 is close", "842")
    assert mentions_answer("\\boxed{842}", 842) and not mentions_answer("", "842")


def test_cli_reads_the_trainers_data_config_and_world(toy_world_mini, tmp_path, capsys):
    """Overrides pick the data, its splits and the toy world; --generator's toy:// resolves in that world."""
    out = tmp_path / "out"
    code = hints.main(["model.toy_variant=mini", "seed=3", "--generator", "toy://student", "--template", "minimal",
                       "--out", str(out), "--limit", "2", "--max-new-tokens", "3", "--no-progress", "--show", "0"])
    assert code == 0, capsys.readouterr().err
    man = json.loads((out / hints.MANIFEST).read_text())
    assert set(man["splits"]) == {"train", "test"}  # data.train_split, data.test_split
    assert man["source"] == "toy://data" and man["generator"] == "toy://student"  # as written, not this machine's paths
    config = json.loads((out / hints.WORK_DIR / "train" / "config.json").read_text())
    assert config["seed"] == 3 and config["fields"] == {"problem": "problem", "solution": "solution", "answer": "answer"}
    assert read(out).num_rows == 2
    assert "train on it: python src/train.py model.toy_variant=mini seed=3 data.path=" in capsys.readouterr().out


def test_template_fields_are_the_data_configs(tmp_path):
    """``{problem}`` / ``{solution}`` read data.problem_field / data.solution_field (e.g. DeepMath's columns)."""
    rows = [{"id": "a", "question": "1+1", "r1": "so 2", "final": "2"}]
    path = tmp_path / "data" / "train.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(rows[0]) + "\n")
    fake = Fake()
    rewrite(str(path.parent), tmp_path / "out", TEMPLATE, generator="x", splits=["train"], problem_field="question",
            solution_field="r1", answer_field="final", make_generator=lambda: fake, progress=False)
    assert read(tmp_path / "out")["hint_new"] == ["1+1"]  # the Fake echoes the rendered {problem}


@pytest.mark.parametrize("override", ["nope=1", "model.toy_variant=tiny", "data=nosuch"])
def test_bad_override_is_one_line_and_exit_2(override, tmp_path, capsys):
    assert hints.main([override, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (tmp_path / "out").exists()


def test_cli_maps_rows_as_training_does(toy_world_mini, tmp_path):
    """``gopd.data.prepare`` first: one row per ``data.dedupe_field`` value, as the trainer reads the data."""
    rows = [{"id": i, "problem": p, "solution": f"{p} \\boxed{{2}}", "answer": "2"} for i, p in enumerate("aab")]
    path = tmp_path / "data" / "train.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code = hints.main(["model.toy_variant=mini", f"data.path={path.parent}", "data.test_split=null",
                       "data.dedupe_field=problem", "--generator", "toy://student", "--template", "minimal",
                       "--out", str(tmp_path / "out"), "--max-new-tokens", "2", "--no-progress", "--show", "0"])
    assert code == 0 and read(tmp_path / "out")["id"] == [0, 2]
