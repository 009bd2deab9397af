"""The estimator interface: one object per `estimator` option, GRPO mixed in one place, traces for all."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from gopd import objective
from gopd.estimators import ESTIMATORS, Settings, TokenEstimator, VocabEstimator, build_estimator, mixed_loss, sampled_scores
from gopd.rollout import RolloutBatch

from test_train import compose_cfg  # the miniature world's config

pytestmark = pytest.mark.usefixtures("one_thread")


def settings(**kw) -> Settings:
    base = dict(alpha=1.0, pressure="full", clip=None, grpo_mix=0.0, grpo_scale=True, eps_low=0.2, eps_high=0.2,
                tis_cap=5.0, chunk_size=128)
    return Settings(**(base | kw))


def batch(mask: torch.Tensor, groups: list[int]) -> RolloutBatch:
    n, t = mask.shape
    return RolloutBatch(rows=[{} for _ in range(n)], prompt_ids=[[1]] * n, completion_ids=torch.zeros(n, t, dtype=torch.long),
                        mask=mask, group_ids=torch.tensor(groups))


def test_settings_come_from_the_config_sections():
    cfg = OmegaConf.create({"alpha": 2, "grpo_mix": 0.5, "pressure": {"name": "positive", "clip": 3.0},
                            "grpo": {"scale": False}, "loss": {"eps_low": 0.1, "eps_high": 0.28, "tis_cap": 2.0,
                                                               "chunk_size": 64}})
    assert Settings.from_config(cfg) == settings(alpha=2.0, grpo_mix=0.5, pressure="positive", clip=3.0,
                                                 grpo_scale=False, eps_low=0.1, eps_high=0.28, tis_cap=2.0, chunk_size=64)


@pytest.mark.parametrize("m", [0.0, 0.3, 1.0])
def test_advantage_mix_and_loss_mix_are_one_objective(m):
    """Sampled-token OPD mixes with G before the PPO loss, a vocabulary OPD loss mixes with the GRPO loss:
    with one step per batch (ratio 1) both give the same loss and gradient, (1 - m) L(A_opd) + m L(G)."""
    torch.manual_seed(0)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    b = batch(mask, [0, 0, 1, 1])
    opd = objective._masked(torch.randn(4, 3), mask)
    grpo = objective.grpo_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), b.group_ids)
    s = settings(grpo_mix=m)
    logp_a = torch.randn(4, 3).requires_grad_()
    logp_b = logp_a.detach().clone().requires_grad_()
    by_adv, adv = mixed_loss(s, b, logp_a, grpo if m > 0 else None, opd_adv=opd)
    opd_loss = objective.policy_loss(logp_b, logp_b.detach(), opd, mask)
    by_loss, _ = mixed_loss(s, b, logp_b, grpo if m > 0 else None, opd_loss=opd_loss)
    by_adv.backward()
    by_loss.backward()
    assert torch.allclose(by_adv, by_loss, atol=1e-7) and torch.allclose(logp_a.grad, logp_b.grad, atol=1e-7)
    g = grpo[:, None].expand(4, 3)
    assert torch.equal(adv, objective._masked((1 - m) * opd + m * g if 0 < m < 1 else (opd if m == 0 else g), mask))


def test_registry_builds_each_option_and_grpo_alone_without_a_teacher():
    s, teacher, ref = settings(), object(), object()
    assert set(ESTIMATORS) == set(objective.ESTIMATORS)
    token = build_estimator(OmegaConf.create({"name": "token"}), s, teacher, ref)
    topk = build_estimator(OmegaConf.create({"name": "topk", "k": 5}), s, teacher, ref)
    full = build_estimator(OmegaConf.create({"name": "full"}), s, teacher, None)
    assert isinstance(token, TokenEstimator) and token.teacher is teacher and token.reference is ref
    assert isinstance(topk, VocabEstimator) and (topk.kind, topk.k) == ("topk", 5)
    assert isinstance(full, VocabEstimator) and full.kind == "full" and full.reference is None
    grpo = build_estimator(OmegaConf.create({"name": "full"}), settings(grpo_mix=1.0), None, None)
    assert isinstance(grpo, TokenEstimator) and grpo.teacher is None  # pure GRPO: the estimator is inert


class CountingScorer:
    """A fake scorer (no model): counts its calls, returns a fixed tensor."""

    def __init__(self, value: float):
        self.value, self.calls = value, 0

    def score(self, rows, completion_ids, mask, pad_id):
        self.calls += 1
        return torch.full(mask.shape, self.value)


def test_reference_teacher_is_the_teacher_scorer_scored_once():
    b = batch(torch.ones(2, 3), [0, 1])
    t, other = CountingScorer(-1.0), CountingScorer(-2.0)
    q, r = sampled_scores(t, t, b, 0)
    assert r is q and t.calls == 1
    q, r = sampled_scores(t, other, b, 0)
    assert (q == -1).all() and (r == -2).all() and t.calls == 2 and other.calls == 1
    assert sampled_scores(t, None, b, 0)[1] is None and sampled_scores(None, None, b, 0) == (None, None)


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["token", "topk", "full"])
def test_traces_for_every_estimator(toy_world_mini, tmp_path, estimator):
    """Each estimator's traced steps hold the sampled tokens' s, q, r, delta and the per-position signals."""
    from gopd.run import run

    cfg = compose_cfg([f"estimator={estimator}", "alpha=2", "pressure=positive", "traces.every_n_steps=1",
                       "grpo_mix=0.5"])
    assert run(cfg, tmp_path, estimator)["status"] == "completed"
    files = sorted((tmp_path / "traces").glob("step-*.jsonl"))
    assert [f.name for f in files] == ["step-000000.jsonl", "step-000001.jsonl"]
    for rec in map(json.loads, files[0].read_text().splitlines()):
        n = len(rec["ids"])
        for key in ("s", "q", "r", "delta", "A", "opd"):
            assert len(rec[key]) == n, (key, rec[key])
        assert all(d == pytest.approx(2 * (q - r) - (s - r), abs=2e-5)
                   for d, s, q, r in zip(rec["delta"], rec["s"], rec["q"], rec["r"]))
