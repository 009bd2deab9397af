"""Hint-strength diagnostic: its numbers are the trainer's, on the same batch."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from gopd import objective
from gopd.data import load_split
from gopd.pool import load_model, load_tokenizer
from gopd.prompts import PromptBuilder
from gopd.scoring import Route, Scorer, completion_logprobs
from gopd.tools import diagnose, trainconf

HINTS = ["hint_answer", "hint_solution", "hint_soft"]
# A chat template that reads a template variable, as Qwen3's reads enable_thinking.
THINKING = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and "
            "enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def world(toy_world_mini):
    tok = load_tokenizer(str(toy_world_mini / "student"))
    student = load_model(str(toy_world_mini / "student"))
    rows = load_split(str(toy_world_mini / "data"), "train").select(range(3)).to_list()
    batch = diagnose.sample_batch(student, tok, rows, n=2, max_new_tokens=12, seed=0, prompts_per_call=2)
    return tok, student, batch, toy_world_mini


@pytest.mark.parametrize("pressure,alpha", [("full", 1.0), ("positive", 2.0), ("flip_correct", 1.5)])
def test_table_equals_the_objective_diagnostics_on_the_same_batch(world, pressure, alpha):
    tok, student, batch, _ = world
    table = diagnose.hint_table(student, tok, batch, HINTS, alpha=alpha, pressure=pressure, reference="student")
    pad, mask = tok.pad_token_id, batch.mask
    s = completion_logprobs(student, batch.prompt_ids, batch.completion_ids, mask, pad)  # as module._token_loss
    from gopd.rollout import decode
    from gopd.verifier import verify_batch

    correct = torch.tensor(verify_batch(decode(tok, batch.completion_ids, mask), [r["answer"] for r in batch.rows]))
    assert [row["hint"] for row in table] == HINTS
    for row, h in zip(table, HINTS):
        q = Scorer({"hinted": Route(student, PromptBuilder(tok, hint_field=h))}).score(batch.rows, batch.completion_ids,
                                                                                         mask, pad)
        opd = objective.token_advantages(s, q, s, mask, alpha=alpha, pressure=pressure, correct=correct)
        want = objective.opd_diagnostics(s, q, s, mask, opd)
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key
        delta = objective.token_delta(s, q, s, alpha=alpha)[mask.bool()]
        assert row["delta/mean"] == pytest.approx(float(delta.mean()), rel=1e-6, abs=1e-7)
        assert row["delta/max"] == pytest.approx(float(delta.max()), rel=1e-6, abs=1e-7)
        assert row["delta/min"] <= row["delta/mean"] <= row["delta/max"]
        if pressure == "positive":
            assert row["opd/neg_mass"] == 0


def test_reference_teacher_makes_alpha_inert_and_opd_teacher_adds_agreement(world):
    tok, student, batch, mini = world
    teacher = load_model(str(mini / "teacher"))
    one = diagnose.hint_table(student, tok, batch, ["hint_soft"], alpha=1.0)
    two = diagnose.hint_table(student, tok, batch, ["hint_soft"], alpha=3.0, reference="teacher", opd_teacher=teacher)
    assert two[0]["delta/mean"] == pytest.approx(one[0]["delta/mean"], abs=1e-7)
    assert 0 <= two[0]["agree/pos"] <= 1 and 0 <= two[0]["agree/neg"] <= 1
    with pytest.raises(ValueError, match="needs ref_model"):
        diagnose.hint_table(student, tok, batch, ["hint_soft"], reference="pre_rl")


def test_concatenated_rollout_slices_keep_groups_apart(world):
    tok, student, batch, _ = world
    assert batch.group_ids.tolist() == [0, 0, 1, 1, 2, 2]  # sampled in two calls of 2 and 1 prompts
    assert batch.completion_ids.shape == batch.mask.shape and len(batch.prompt_ids) == 6


def test_cli_prints_and_saves_the_table(world, tmp_path, capsys):
    *_, mini = world
    out = tmp_path / "hints"
    code = diagnose.main(["model.toy_variant=mini", "alpha=2", "pressure=positive", "rollout.n=2",
                          "rollout.max_new_tokens=8", "--prompts", "2", "--eval-problems", "4", "--out", str(out)])
    assert code == 0
    with open(out.with_suffix(".csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["hint"] for r in rows] == ["(student)", *HINTS]
    assert all(r["teacher/accuracy"] != "" for r in rows) and all(r["opd/pos_mass"] for r in rows[1:])
    assert all(r["solution/exact"] != "" for r in rows)
    assert all(r["target/exact@2"] != "" and r["target/exact@3"] != "" for r in rows[1:])
    md = (tmp_path / "hints.md").read_text()
    assert "| hint_soft |" in md and "alpha=2.0" in md and "student=toy://student" in md  # as written, not a path
    assert f"world=mini@{json.loads((mini / 'manifest.json').read_text())['recipe_hash']}" in md  # which world
    assert "hint strength" in capsys.readouterr().out
    assert diagnose.main(["model.toy_variant=mini", "--hints", "hint_x", "--out", str(out)]) == 2
    assert "hint_x not in the data" in capsys.readouterr().err


def test_solution_exact_hand_computed():
    logp = torch.log_softmax(torch.tensor([[[0.0, 5.0, 0.0], [5.0, 0.0, 0.0]],     # argmax 1, 0
                                           [[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]]), -1)  # argmax 1, 2
    ids = torch.tensor([[1, 0], [1, 0]])
    assert diagnose.solution_exact(logp, ids, torch.tensor([[1, 1], [1, 1]])).tolist() == [True, False]
    assert diagnose.solution_exact(logp, ids, torch.tensor([[1, 1], [1, 0]])).tolist() == [True, True]  # padding ignored


def test_target_table_alpha_one_is_the_teacher_and_exact_implies_correct(world):
    tok, student, _, mini = world
    teacher = load_model(str(mini / "teacher"))
    rows = load_split(str(mini / "data"), "test").select(range(24)).to_list()
    teachers = {"hint_answer": (student, PromptBuilder(tok, hint_field="hint_answer")), "rl": (teacher, PromptBuilder(tok))}
    found = diagnose.target_table(student, tok, rows, teachers, [1.0, 2.0], rows_per_call=7)
    for name in teachers:
        assert found[name]["target/exact@1"] == found[name]["solution/exact"]  # pi* = pi_T at alpha = 1
        assert 0 <= found[name]["target/exact@2"] <= 1
    # greedy decoding that reproduces the reference solution gets the answer right: exact <= accuracy
    from gopd.evaluate import greedy_accuracy

    acc = greedy_accuracy(student, tok, PromptBuilder(tok), rows, answer_field="answer", domain_field="domain",
                          max_new_tokens=64, batch_size=24)["accuracy"]
    assert found["(student)"]["solution/exact"] <= acc + 1e-9
    inert = diagnose.target_table(student, tok, rows, teachers, [2.0], reference="teacher")
    assert not any(k.startswith("target/") for k in inert["rl"])  # alpha is inert: no target columns
    base = diagnose.target_table(student, tok, rows, {"rl": teachers["rl"]}, [1.0], reference="pre_rl", ref_model=student)
    assert base["rl"]["target/exact@1"] == found["rl"]["target/exact@1"]  # alpha = 1 ignores the reference
    with pytest.raises(ValueError, match="needs ref_model"):
        diagnose.target_table(student, tok, rows, teachers, [2.0], reference="pre_rl")


def test_prompts_are_the_trainers_with_a_problem_template_and_chat_template_kwargs(toy_world_mini):
    """The student's prompt (rollouts, scores, accuracies) is the trainer's ``PromptBuilder`` prompt
    (``gopd.run.Session._build``) and each hinted prompt is ``teachers.hinted_teacher``'s."""
    from gopd.pool import ModelPool
    from gopd.prompts import prompt_style
    from gopd.teachers import Context, hinted_teacher

    cfg = trainconf.load(["model.toy_variant=mini", "data.problem_template='Solve: {problem} Box it.'",
                          "+model.chat_template_kwargs.enable_thinking=false"]).cfg
    tok = load_tokenizer(cfg.model.path)
    tok.chat_template = THINKING
    student = load_model(cfg.model.path)
    row = load_split(cfg.data.path, cfg.data.train_split)[0]
    trainer = PromptBuilder(tok, problem_field=cfg.data.problem_field, **prompt_style(cfg))
    prompts = diagnose.Prompts.from_config(cfg)
    text = prompts.student(tok).text(row)
    assert text == trainer.text(row)
    assert f"Solve: {row['problem']} Box it." in text and text.endswith("<think>\n\n</think>\n\n")
    batch = diagnose.sample_batch(student, tok, [row], n=1, max_new_tokens=2, prompts=prompts)
    assert batch.prompt_ids[0] == trainer.ids(row)  # what the rollouts were sampled from
    ctx = Context(student=student, student_path=cfg.model.path, tokenizer=tok, pool=ModelPool(cfg.model.dtype),
                  problem_field=cfg.data.problem_field, domain_field=cfg.data.domain_field,
                  chunk_size=cfg.loss.chunk_size, prompt_style=prompt_style(cfg))
    teacher = hinted_teacher(cfg.teacher, ctx).routes["hinted"].prompts
    assert prompts.hinted(tok, cfg.teacher.hint_field).text(row) == teacher.text(row)


@pytest.mark.parametrize("override,says", [("alpha=-1", "alpha must be a number > 0"),
                                           ("nope=1", "Could not override 'nope'"),
                                           ("pressure=sideways", "Could not find 'pressure/sideways'")])
def test_bad_override_is_one_line_and_exit_2(override, says, capsys):
    assert diagnose.main([override, "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0]
    with pytest.raises(SystemExit) as stop:
        trainconf.load_or_exit([override])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and says in err[0]


def test_terminal_table_keeps_every_number_whole_at_100_columns(capsys, monkeypatch):
    from rich.console import Console

    rows = [{"hint": f"hint_{i}", **{c: -12.345678 + k for k, c in enumerate(diagnose.COLUMNS[1:])},
             "target/exact@1.5": 0.25, "target/exact@2": 0.125} for i in range(3)]
    monkeypatch.setattr("rich.console.Console", lambda **kw: Console(width=100, force_terminal=True, color_system=None))
    diagnose.print_table(rows, {"alpha": 2})
    out = capsys.readouterr().out
    assert "…" not in out and out.count("hint_0") >= 2  # split into parts, the hint column in each
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "alpha=2" in out
