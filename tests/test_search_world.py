"""The search world (gopd.toy.search): Countdown traces of varying length, a larger teacher, every
seed system on its miniature version, and the response-shape metrics (gopd.responses)."""

from __future__ import annotations

import json
import random
import statistics

import pytest
import torch

from conftest import MINI, compose_train, overridden

from gopd.responses import length_metrics, search_metrics, segments, token_kinds
from gopd.tasks import countdown
from gopd.toy import search
from gopd.verifier import verify

SEARCH_MINI = overridden(MINI, "model.toy_variant=search_mini", "rollout.max_new_tokens=24")


@pytest.fixture(scope="session")
def search_world_mini(gopd_cache):
    from gopd.toy.build import ensure_toy_world

    return ensure_toy_world("search_mini", progress=False)


def _params(path) -> int:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return sum(f.get_slice(k).get_shape().numel() if hasattr(f.get_slice(k).get_shape(), "numel")
                   else int(torch.Size(f.get_slice(k).get_shape()).numel()) for k in f.keys())


def test_the_miniature_world_has_every_seed_checkpoint_and_a_larger_teacher(search_world_mini):
    manifest = json.loads((search_world_mini / "manifest.json").read_text())
    assert set(manifest["checkpoints"]) == {"student", "teacher", "teacher_base", "expert_add", "expert_mul"}
    assert manifest["hint_fields"] == ["hint_solution", "hint_first_step", "hint_soft"]
    student, teacher = (json.loads((search_world_mini / n / "config.json").read_text()) for n in ("student", "teacher"))
    assert teacher["num_hidden_layers"] > student["num_hidden_layers"]  # strong-to-weak
    assert _params(search_world_mini / "teacher") > 1.5 * _params(search_world_mini / "student")
    assert student["vocab_size"] == teacher["vocab_size"]


def test_countdown_verification_accepts_any_solution_with_the_reference_numbers():
    assert verify("try 3*(8-2)=18 yes\n\\boxed{3*(8-2)}", "(8-2)*3", how="countdown")
    assert verify("\\boxed{(2-8)*(0-3)}", "(8-2)*3", how="countdown") is False  # 0 is not given
    assert verify("\\boxed{8*2+3}", "(8-2)*3", how="countdown") is False      # 19
    assert verify("\\boxed{8*3}", "(8-2)*3", how="countdown") is False        # 2 unused
    assert verify("try (8-2)*3=18 yes", "(8-2)*3", how="countdown") is False  # no box


def test_student_traces_vary_in_length_and_hints_shorten_them():
    rows = search.make_rows(0, 200, 0, search.SearchTaskSpec())["train"]
    from gopd.toy.build import _SEARCH_STUDENT_EXPLORE as explore

    rng = random.Random(0)
    lengths = {h: sorted(len(search.completion(r, h, explore, rng)) for r in rows)
               for h in (None, "hint_soft", "hint_first_step", "hint_solution")}
    unhinted = lengths[None]
    p10, p90 = unhinted[len(unhinted) // 10], unhinted[9 * len(unhinted) // 10]
    assert p90 >= 2 * p10  # the spread the world exists for
    means = [statistics.mean(v) for v in lengths.values()]
    assert means == sorted(means, reverse=True)  # graded hints: the stronger, the shorter the search
    assert all(countdown.failed_attempts(search.completion(r, "hint_solution", explore, rng)) == 0 for r in rows[:20])


# ---------------------------------------------------------------------------------- responses
TRACE = "try 8+3-2=9 no\ntry (8-2)*3=18 yes\n\\boxed{(8-2)*3}"


def test_segments_and_token_kinds_by_hand():
    assert segments(TRACE) == [(0, 15, "tries"), (15, 34, "answer"), (34, 49, "answer")]
    assert segments("hmm\n\\boxed{1}") == [(4, 13, "answer")]
    pieces = ["try 8", "+3-2=9 no\n", "try (8-2)*3=18 yes\n", "\\boxed{", "(8-2)*3}", ""]
    assert token_kinds(pieces, segments(TRACE)) == ["tries", "tries", "answer", "answer", "answer", None]
    assert token_kinds(["hmm\n", "\\boxed{1}"], segments("hmm\n\\boxed{1}")) == [None, "answer"]


def test_length_percentiles():
    mask = torch.zeros(10, 30)
    for i in range(10):
        mask[i, : 3 * (i + 1)] = 1  # lengths 3, 6, ..., 30
    m = length_metrics(mask)
    assert m["train/response_len_p10"] == pytest.approx(3 + 0.9 * 3)  # linear interpolation, as numpy
    assert m["train/response_len_p90"] == pytest.approx(27 + 0.1 * 3)


def test_search_metrics_split_the_pressure_between_tries_and_answer(search_world_mini):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(search_world_mini / "tokenizer"))
    lines = TRACE.splitlines(keepends=True)
    per_line = [tok(line, add_special_tokens=False)["input_ids"] for line in lines]
    ids = sum(per_line, [])
    assert tok.decode(ids) == TRACE  # tokens never straddle a line
    short = tok("\\boxed{8*3}", add_special_tokens=False)["input_ids"]
    T = len(ids)
    completion = torch.full((2, T), tok.pad_token_id)
    completion[0], completion[1, : len(short)] = torch.tensor(ids), torch.tensor(short)
    mask = torch.zeros(2, T)
    mask[0], mask[1, : len(short)] = 1, 1
    adv = torch.zeros(2, T)
    adv[0, : len(per_line[0])] = -1.0  # the failed try pushed down ...
    adv[0, len(per_line[0]):] = 2.0    # ... the answer pushed up
    adv[1, : len(short)] = 0.5
    texts = [TRACE, "\\boxed{8*3}"]
    m = search_metrics(tok, texts, completion, mask, torch.tensor([1.0, 0.0]), adv)
    assert m["search/tries"] == 1.0 and m["search/multi_try_correct"] == 1.0  # (2 + 0) / 2; the correct one took 2
    assert m["search/neg_mass_tries"] == 1.0 and m["search/pos_mass_tries"] == 0.0
    n_answer = T - len(per_line[0]) + len(short)
    assert m["search/pos_mass_answer"] == pytest.approx((2.0 * (T - len(per_line[0])) + 0.5 * len(short)) / n_answer)
    assert m["search/neg_mass_answer"] == 0.0


# ------------------------------------------------------------------------------ seed systems
SYSTEMS = {
    "opsd_hinted_full": ["teacher=hinted", "pressure=full"],
    "opsd_hinted_first_step_positive": ["teacher=hinted", "teacher.hint_field=hint_first_step", "pressure=positive"],
    "rl_teacher_exopd_pre_rl": ["teacher=rl_checkpoint", "reference=pre_rl", "alpha=2"],
    "domain_experts": ["teacher=domain_experts"],
    "rlrt": ["teacher=hinted", "pressure=rlrt", "grpo_mix=0.5"],
    "grpo": ["grpo_mix=1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_every_seed_system_runs_two_steps_on_the_search_world(search_world_mini, tmp_path, system):
    import csv

    from gopd.run import run

    cfg = compose_train(*SEARCH_MINI, "+world=search", *SYSTEMS[system])
    summary = run(cfg, tmp_path, system)
    assert summary["status"] == "completed" and summary["steps"] == 2
    assert summary["world"].startswith("search_mini@")
    with open(tmp_path / "metrics.csv") as f:
        header = next(csv.reader(f))
    assert {"train/response_len_p10", "train/response_len_p90", "search/tries", "search/multi_try_correct"} <= set(header)
    if system != "grpo":
        assert {"search/pos_mass_tries", "search/neg_mass_answer"} <= set(header)
    assert "search/tries_final" in summary and "train/response_len_p90_final" in summary


def test_the_shipped_search_world_matches_its_checksums_and_recipe():
    from gopd.toy import build as B

    root = B.shipped_dir("search")
    assert root is not None and B.checksum_errors(root) == []
    manifest = B.load_manifest(root)
    assert manifest["recipe"] == json.loads(json.dumps(B.get_recipe("search").as_dict(), default=str))
    student, teacher = manifest["checkpoints"]["student"], manifest["checkpoints"]["teacher"]
    assert student["greedy_tries"] > 3 * teacher["greedy_tries"]  # the student searches, the teacher answers
    assert teacher["accuracy"] > 3 * student["accuracy"]          # strong-to-weak
