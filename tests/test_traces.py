"""Per-token traces: records, writer, HTML page, top tokens, agreement with OPD."""

from __future__ import annotations

import html
import json
import re

import pytest
import torch
from omegaconf import OmegaConf

from gopd import objective, traces
from gopd.tools import traces as trace_tool
from gopd.data import load_split
from gopd.pool import load_model, load_tokenizer
from gopd.prompts import PromptBuilder
from gopd.rollout import HFRollout
from gopd.scoring import Route, Scorer, completion_logprobs


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def step(toy_world_mini):
    """One training step's tensors on the mini world: hinted teacher, alpha 2, positive pressure, GRPO mix."""
    tok = load_tokenizer(str(toy_world_mini / "student"))
    student = load_model(str(toy_world_mini / "student"))
    rows = load_split(str(toy_world_mini / "data"), "train").select(range(2)).to_list()
    torch.manual_seed(0)
    batch = HFRollout(student, tok, PromptBuilder(tok), n=2, max_new_tokens=12).sample(rows)
    pad = tok.pad_token_id
    s = completion_logprobs(student, batch.prompt_ids, batch.completion_ids, batch.mask, pad)
    teacher = Scorer({"h": Route(student, PromptBuilder(tok, hint_field="hint_answer"))})
    q = teacher.score(batch.rows, batch.completion_ids, batch.mask, pad)
    r = s.clone()
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    opd = objective.token_advantages(s, q, r, batch.mask, alpha=2.0, pressure="positive")
    grpo = objective.grpo_advantages(rewards, batch.group_ids)
    adv = objective.mix_advantages(opd, grpo, 0.5, batch.mask)
    return dict(tok=tok, student=student, batch=batch, s=s, q=q, r=r, opd=opd, adv=adv, rewards=rewards)


def records_of(step, **kw):
    return traces.step_records(7, step["batch"], step["tok"], s=step["s"], q=step["q"], r=step["r"], adv=step["adv"],
                               opd=step["opd"], rewards=step["rewards"], alpha=2.0, pressure="positive",
                               hint_field="hint_answer", **kw)


def test_records_hold_every_token_and_its_signals(step):
    recs = records_of(step)
    b = step["batch"]
    assert len(recs) == len(b.rows)
    for i, rec in enumerate(recs):
        n = int(b.mask[i].sum())
        assert rec["ids"] == b.completion_ids[i, :n].tolist()
        assert len(rec["pieces"]) == n and "".join(rec["pieces"]) == rec["text"]
        assert rec["text"] == step["tok"].decode(rec["ids"], skip_special_tokens=False)
        assert rec["row_id"] == b.rows[i]["id"] and rec["hint"] == b.rows[i]["hint_answer"]
        for name, x in (("s", step["s"]), ("q", step["q"]), ("r", step["r"]), ("A", step["adv"]), ("opd", step["opd"])):
            assert rec[name] == pytest.approx(x[i, :n].tolist(), abs=1e-6)
        expected = 2.0 * (step["q"][i, :n] - step["r"][i, :n]) - (step["s"][i, :n] - step["r"][i, :n])
        assert rec["delta"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert len(records_of(step, rollouts=1)) == 1


def test_pieces_of_split_characters_still_reproduce_the_text(step):
    tok = step["tok"]
    text = "ésumé ∑ 3+4=7 \\boxed{7} 🙂"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces = traces.token_pieces(tok, ids)
    assert len(pieces) == len(ids) and "".join(pieces) == tok.decode(ids) == text


def test_maybe_save_writes_due_steps_atomically(step, tmp_path):
    cfg = OmegaConf.create({"traces": {"every_n_steps": 5, "rollouts": 3}, "alpha": 2.0, "pressure": {"name": "positive"},
                            "teacher": {"name": "hinted", "hint_field": "hint_answer"}, "data": {"answer_field": "answer"}})
    kw = dict(s=step["s"], q=step["q"], r=step["r"], adv=step["adv"], opd=step["opd"], rewards=step["rewards"])
    assert traces.maybe_save(cfg, tmp_path, 3, step["batch"], step["tok"], **kw) is None
    path = traces.maybe_save(cfg, tmp_path, 10, step["batch"], step["tok"], **kw)
    assert path == tmp_path / "traces" / "step-000010.jsonl"
    recs = trace_tool.load_records(tmp_path)
    assert len(recs) == 3 and recs[0]["step"] == 10 and recs[0]["hint"] is not None
    assert [p.name for p in (tmp_path / "traces").iterdir()] == ["step-000010.jsonl"]  # no temporary left
    off = OmegaConf.create({"alpha": 1.0})
    assert traces.maybe_save(off, tmp_path, 0, step["batch"], step["tok"], **kw) is None


def test_html_shows_every_token_with_its_values(step):
    recs = records_of(step)
    page = trace_tool.render_html(recs)
    cards = page.split("<div class='rec'")[1:]
    assert len(cards) == len(recs)
    for rec, card in zip(recs, cards):
        spans = re.findall(r"<span class='t' data-i='(\d+)' style='background:([^']*)' title='([^']*)'>(.*?)</span>",
                           card, flags=re.S)
        assert [int(i) for i, *_ in spans] == list(range(len(rec["ids"])))
        for t, (_, colour, title, body) in enumerate(spans):
            assert html.unescape(body) == trace_tool.visible(rec["pieces"][t])
            assert f"delta={rec['delta'][t]:+.3f}" in html.unescape(title)
            assert f"A={rec['A'][t]:+.3f}" in html.unescape(title) and f"s={rec['s'][t]:+.3f}" in html.unescape(title)
            a = rec["A"][t]  # coloured by the advantage applied, not the raw delta
            assert colour.startswith("rgba(22,163,74" if a > 0 else "rgba(220,38,38" if a < 0 else "transparent")


def test_html_escapes_pieces_and_prompts():
    rec = {"step": 0, "rollout": 0, "row_id": "<x>", "prompt": "<script>alert(1)</script>", "hint": "a & b",
           "answer": "1", "reward": 1.0, "alpha": 1.0, "pressure": "full", "ids": [1, 2], "pieces": ["<b>", "'&\""],
           "s": [-1.0, -2.0], "q": [-0.5, -3.0], "r": None, "delta": [0.5, -1.0], "A": [0.5, -1.0], "opd": None}
    page = trace_tool.render_html([rec])
    assert "<script>" not in page and "<x>" not in page and "a & b" not in page and "'&\"" not in page
    assert ">&lt;b&gt;</span>" in page and ">&#x27;&amp;&quot;</span>" in page


def test_positive_pressure_leaves_the_zeroed_tokens_uncoloured_and_control_characters_show():
    rec = {"step": 0, "rollout": 0, "row_id": "r", "prompt": "p", "hint": None, "answer": "1", "reward": 0.0,
           "alpha": 1.0, "pressure": "positive", "ids": [1, 2, 3], "pieces": ["a", "\x0b", "c\n"],
           "s": None, "q": None, "r": None, "delta": [0.5, -1.0, -0.2], "A": [0.5, 0.0, 0.0], "opd": None}
    page = trace_tool.render_html([rec])
    colours = re.findall(r"style='background:([^']*)'", page.split("<div class='toks'>")[1])
    assert colours[0].startswith("rgba(22,163,74") and colours[1:] == ["transparent", "transparent"]
    assert "pushed up" in page and "pushed down" in page and "the advantage applied" in page
    assert ">\\x0b</span>" in page and ">c\n</span>" in page  # the vertical tab shown as an escape, newline kept
    assert "teacher wants it less" in trace_tool.render_html([rec], by="delta")


def test_top_tokens_are_sorted_with_their_context():
    recs = [{"step": 1, "row_id": "a", "rollout": 0, "pieces": ["x", " geometric", " series"],
             "delta": [0.1, 1.396, -0.5], "A": [0.1, 1.396, 0.0], "s": None, "q": None, "r": None, "opd": None},
            {"step": 2, "row_id": "b", "rollout": 1, "pieces": [" modular", " y"],
             "delta": [1.344, -2.0], "A": [1.344, 0.0], "s": None, "q": None, "r": None, "opd": None}]
    top = trace_tool.top_tokens(recs, k=10)
    assert [t["token"] for t in top] == [" geometric", " modular", "x"]
    assert [t["value"] for t in top] == sorted((t["value"] for t in top), reverse=True)
    assert top[0]["context"] == "x[ geometric] series" and top[0]["row_id"] == "a"
    neg = trace_tool.top_tokens(recs, k=1, negative=True)
    assert [(t["token"], t["value"]) for t in neg] == [(" y", -2.0)]


def test_agreement_table_sums_and_fractions():
    res = trace_tool.sign_agreement([1.0, 2.0, -1.0, -3.0, 0.0, 0.5], [1.0, -1.0, -1.0, 2.0, 5.0, 0.0])
    c = res["counts"]
    assert (c["+"]["+"], c["+"]["-"], c["+"]["0"], c["-"]["+"], c["-"]["-"], c["0"]["+"]) == (1, 1, 1, 1, 1, 1)
    assert sum(sum(row.values()) for row in c.values()) == res["tokens"] == 6
    assert res["pos_tokens"] == 3 and res["neg_tokens"] == 2
    assert res["pos_agree"] == pytest.approx(1 / 3) and res["neg_agree"] == pytest.approx(1 / 2)
    assert res["pos_mass_agree"] == pytest.approx(1 / 3.5) and res["neg_mass_agree"] == pytest.approx(1 / 4)


def test_saved_rollouts_rescored_by_an_rl_teacher(step, toy_world_mini, tmp_path):
    recs = records_of(step)
    teacher = load_model(str(toy_world_mini / "teacher"))
    b, pad = step["batch"], step["tok"].pad_token_id
    q_rl = trace_tool.score_records(recs, teacher, pad, batch_size=3)
    direct = completion_logprobs(teacher, b.prompt_ids, b.completion_ids, b.mask, pad)
    for i, qs in enumerate(q_rl):
        assert qs == pytest.approx(direct[i, :len(qs)].tolist(), abs=1e-5)
    res = trace_tool.records_agreement(recs, q_rl)
    assert res["tokens"] == b.num_tokens
    delta = objective.token_delta(step["s"], step["q"], step["r"], alpha=2.0)
    want = trace_tool.tensor_agreement(delta, direct - step["s"], b.mask)
    assert res["counts"] == want["counts"]


def test_cli_render_top_and_agree(step, toy_world_mini, tmp_path, capsys):
    traces.write_records(tmp_path, 7, records_of(step))
    assert trace_tool.main(["render", str(tmp_path), "-k", "5"]) == 0
    page = (tmp_path / "traces" / "traces.html").read_text()
    assert page.count("<span class='t'") == step["batch"].num_tokens
    out = capsys.readouterr().out
    assert "top tokens by delta" in out
    assert trace_tool.main(["top", str(tmp_path / "traces" / "step-000007.jsonl"), "-k", "3"]) == 0
    assert trace_tool.main(["agree", str(tmp_path), "--teacher", str(toy_world_mini / "teacher"),
                        "-o", str(tmp_path / "agree.json")]) == 0
    out = capsys.readouterr().out
    assert "| positive (delta > 0) |" in out and "negative pressure" in out
    saved = json.loads((tmp_path / "agree.json").read_text())
    assert saved["tokens"] == step["batch"].num_tokens
    assert trace_tool.main(["top", str(tmp_path / "nothing")]) == 2


def test_agree_resolves_toy_paths_in_the_runs_own_world(toy_world_mini, step, tmp_path, capsys):
    traces.write_records(tmp_path, 7, records_of(step))
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("model:\n  toy_variant: mini\n")
    assert trace_tool.run_toy_variant(trace_tool.trace_files(tmp_path)[0]) == "mini"
    assert trace_tool.main(["agree", str(tmp_path), "--teacher", "toy://teacher", "-o", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["tokens"] == step["batch"].num_tokens
    assert trace_tool.run_toy_variant(tmp_path / "a" / "b" / "c" / "step-000001.jsonl") == "full"  # no run config near
