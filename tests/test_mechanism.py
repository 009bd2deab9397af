"""gopd.tools.mechanism: which tokens spell the answer, and the correct/wrong x answer/other split."""

from __future__ import annotations

import math

import torch

from gopd.tools.mechanism import answer_tokens, split_table


def test_split_table_against_hand_computed_means():
    s = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    q = torch.tensor([[-0.5, -2.5, -1.0], [-1.5, -0.25, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    correct = torch.tensor([True, False])
    answer = torch.tensor([[False, False, True], [False, True, True]])  # the padded position never counts
    rows = {(r["outcome"], r["tokens"]): r for r in split_table(s, q, mask, correct, answer)}
    a = rows["correct", "answer"]
    assert (a["tokens/n"], a["s/mean"], a["q/mean"], a["q-s/mean"], a["q>s/frac"]) == (1, -3.0, -1.0, 2.0, 1.0)
    o = rows["correct", "other"]
    assert (o["tokens/n"], o["q-s/mean"], o["q>s/frac"]) == (2, 0.0, 0.5)  # +0.5 and -0.5
    w = rows["wrong", "all"]
    assert (w["rollouts/n"], w["tokens/n"], w["q-s/mean"]) == (1, 2, (-1.0 + 0.25) / 2)
    assert rows["wrong", "answer"]["q>s/frac"] == 1.0
    assert sorted(rows) == sorted((o, t) for o in ("correct", "wrong") for t in ("answer", "other", "all"))


def test_an_empty_group_is_nan_not_an_error():
    rows = split_table(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([True]),
                       torch.zeros(1, 2, dtype=torch.bool))
    wrong = [r for r in rows if r["outcome"] == "wrong"]
    assert all(r["tokens/n"] == 0 and math.isnan(r["q-s/mean"]) for r in wrong)


def test_answer_tokens_are_those_spelling_the_extracted_answer(toy_world_mini):
    from gopd.pool import load_tokenizer

    tok = load_tokenizer(str(toy_world_mini / "student"))
    texts = ["3+4=7a;a7 \\boxed{17}", "no box here 42", "no answer"]
    seqs = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    t = max(map(len, seqs))
    ids = torch.tensor([x + [tok.pad_token_id] * (t - len(x)) for x in seqs])
    mask = torch.tensor([[1] * len(x) + [0] * (t - len(x)) for x in seqs])
    boxed = answer_tokens(tok, ids, mask, "boxed")
    spelled = "".join(tok.decode([i]) for i, m in zip(ids[0].tolist(), boxed[0].tolist()) if m)
    assert spelled == "17"  # the toy tokenizer spells digits one token each
    assert not boxed[1].any() and not boxed[2].any()
    lenient = answer_tokens(tok, ids, mask, "boxed_or_last_number")
    assert "".join(tok.decode([i]) for i, m in zip(ids[1].tolist(), lenient[1].tolist()) if m).strip() == "42"
    assert not lenient[2].any()


def test_the_command_writes_one_table_row_per_hint_outcome_and_part(toy_world_mini, tmp_path, capsys):
    import csv

    from gopd.tools.mechanism import main

    out = tmp_path / "table"
    assert main(["model.toy_variant=mini", "rollout.n=2", "rollout.max_new_tokens=12", "--prompts", "2",
                 "--hints", "hint_answer", "hint_soft", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [(r["hint"], r["outcome"], r["tokens"]) for r in rows][:3] == [
        ("hint_answer", "correct", "answer"), ("hint_answer", "correct", "other"), ("hint_answer", "correct", "all")]
    assert len(rows) == 12 and sum(int(r["rollouts/n"]) for r in rows if r["tokens"] == "all") == 2 * 4
    assert out.with_suffix(".md").read_text().startswith("<!-- {")
    assert main(["model.toy_variant=mini", "--hints", "nope", "--out", str(out)]) == 2
    assert "--hints: column 'nope' not in the data" in capsys.readouterr().err
