"""Rollouts: completion masks, generation against a plain forward, seeding, groups."""

import pytest
import torch
from omegaconf import OmegaConf

from gopd.pool import load_model, load_tokenizer
from gopd.prompts import PromptBuilder
from gopd.rollout import build_rollout, completion_mask, hf_generate


def test_completion_mask_stops_after_first_eos():
    ids = torch.tensor([[5, 6, 2, 7, 2], [5, 5, 5, 5, 5], [2, 1, 1, 1, 1]])
    assert completion_mask(ids, eos_id=2).tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_greedy_left_padded_batch_matches_unpadded_forward(toy_world_mini, cache):
    model = load_model(str(toy_world_mini / "teacher"))
    tok = load_tokenizer(str(toy_world_mini / "teacher"))
    prompts = PromptBuilder(tok).batch_ids([{"problem": "12+345"}, {"problem": "7*8"}])
    ids, mask = hf_generate(model, tok, prompts, max_new_tokens=6, greedy=True, cache=cache)
    for i, p in enumerate(prompts):  # unpadded step-by-step argmax of the same row
        seq = list(p)
        for t in range(int(mask[i].sum())):
            nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            assert nxt == int(ids[i, t])
            seq.append(nxt)


def test_static_cache_generates_what_the_dynamic_one_does(toy_world_mini):
    from gopd.toy.data import load_split

    model = load_model(str(toy_world_mini / "student"))
    tok = load_tokenizer(str(toy_world_mini / "student"))
    rows = load_split(str(toy_world_mini / "data" / "test.parquet")).select(range(16)).to_list()
    prompts = PromptBuilder(tok).batch_ids(rows)
    assert len({len(p) for p in prompts}) > 1  # left padding is exercised
    dyn = hf_generate(model, tok, prompts, max_new_tokens=24, greedy=True)
    static = hf_generate(model, tok, prompts, max_new_tokens=24, greedy=True, cache="static")
    assert torch.equal(dyn[0], static[0]) and torch.equal(dyn[1], static[1])


@pytest.mark.parametrize("sampler", ["multinomial", "inverse_cdf"])
def test_sampling_is_seeded_and_groups_are_contiguous(toy_world_mini, sampler):
    model = load_model(str(toy_world_mini / "student"))
    tok = load_tokenizer(str(toy_world_mini / "student"))
    r = OmegaConf.create({"name": "hf", "n": 3, "max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0,
                          "cache": "dynamic", "sampler": sampler})
    engine = build_rollout(r, model, tok, PromptBuilder(tok))
    rows = [{"problem": "12+34"}, {"problem": "5*6"}]
    torch.manual_seed(0)
    a = engine.sample(rows)
    torch.manual_seed(0)
    b = engine.sample(rows)
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert a.group_ids.tolist() == [0, 0, 0, 1, 1, 1] and [r["problem"] for r in a.rows][2:4] == ["12+34", "5*6"]
