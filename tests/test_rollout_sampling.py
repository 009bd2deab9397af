"""gopd.rollout.sampling: inverse-CDF sampling draws generate's distribution (temperature and top-p
included), alone and inside a real generate."""

import pytest
import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

from gopd.pool import load_model, load_tokenizer
from gopd.prompts import PromptBuilder
from gopd.rollout import hf_generate
from gopd.rollout.sampling import InverseCdfSampling, inverse_cdf_processors

LOGITS = torch.tensor([2.0, 0.5, -1.0, 1.5, 0.0, -3.0])


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 1.0), (1.3, 0.8)])
def test_draws_follow_generates_warped_distribution(temperature, top_p):
    n = 40_000
    warped = LogitsProcessorList([TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)])(None, LOGITS[None])
    expected = torch.softmax(warped[0], -1)
    torch.manual_seed(0)
    out = inverse_cdf_processors(temperature, top_p)(None, LOGITS.repeat(n, 1))
    assert torch.equal(torch.isfinite(out).sum(-1), torch.ones(n, dtype=torch.long))  # one token left per row
    assert out.max(-1).values.eq(0).all()
    freq = torch.bincount(out.argmax(-1), minlength=len(LOGITS)).double() / n
    assert (freq - expected.double()).abs().max() < 0.01, (freq, expected)  # ~4 standard errors at 40k draws
    assert freq[expected == 0].sum() == 0  # what top-p removed is never drawn
    if top_p < 1:
        assert (expected == 0).any()  # the case is exercised


@pytest.mark.parametrize("keep", [0, 151_935])
def test_a_single_finite_entry_is_always_drawn_at_either_end_of_a_large_vocabulary(keep):
    scores = torch.full((64, 151_936), float("-inf"))
    scores[:, keep] = 3.0
    assert InverseCdfSampling()(None, scores).argmax(-1).eq(keep).all()


def test_inside_generate_the_first_token_follows_the_models_softmax(toy_world_mini):
    """2,000 one-token rollouts of one prompt, against the student's own next-token distribution."""
    model = load_model(str(toy_world_mini / "student"))
    tok = load_tokenizer(str(toy_world_mini / "student"))
    prompt = PromptBuilder(tok).batch_ids([{"problem": "12+34"}])[0]
    with torch.no_grad():
        p = torch.softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1].float(), -1)
    torch.manual_seed(0)
    ids, mask = hf_generate(model, tok, [prompt] * 2000, max_new_tokens=1, greedy=False, sampler="inverse_cdf")
    freq = torch.bincount(ids[:, 0], minlength=p.numel()).double() / 2000
    assert (freq - p.double()).abs().max() < 0.045, (freq.max(), p.max())
    torch.manual_seed(0)
    again, _ = hf_generate(model, tok, [prompt] * 2000, max_new_tokens=1, greedy=False, sampler="inverse_cdf")
    assert torch.equal(ids, again)  # seeded by torch's global generator, as generate's sampler is


def test_an_unknown_sampler_is_refused(toy_world_mini):
    model = load_model(str(toy_world_mini / "student"))
    tok = load_tokenizer(str(toy_world_mini / "student"))
    with pytest.raises(ValueError, match=r"sampler must be one of multinomial, inverse_cdf, got 'gumbel'"):
        hf_generate(model, tok, [[1, 2]], max_new_tokens=1, greedy=False, sampler="gumbel")
