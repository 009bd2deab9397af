"""Estimators: how one batch of scored rollouts becomes the step's loss (config group ``estimator``).

    token   the sampled token only: s, q, r of y_t -> A_t -> PPO-clip loss (G-OPD's code)
    full    every vocabulary entry at each position: the exact reverse-KL gradient (``gopd.vocab``)
    topk    the teacher's top-k entries plus the sampled token, the rest as one tail bucket

Each is an object with one call, ``estimator(student, batch, rewards, pad_id) -> StepLoss``
(loss, diagnostics, the values checked for non-finite entries, per-token traces on demand);
``rewards()`` gives the verified rewards and is called only once the forwards that do not need
them have run (verification may still be going on in worker processes, ``gopd.rewards``). GRPO
mixes in at one place, ``mixed_loss``. With ``grpo_mix = 1`` there is no teacher and every
estimator is the sampled-token GRPO loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gopd import distributed, objective
from gopd.rewards import Rewards
from gopd.rollout import RolloutBatch, logp_gap_metrics
from gopd.scoring import Scorer, completion_logprobs


@dataclass(frozen=True)
class Settings:
    """The objective's settings, read from the config once."""

    alpha: float
    pressure: str
    clip: float | None
    grpo_mix: float
    grpo_scale: str | bool
    eps_low: float
    eps_high: float
    tis_cap: float
    chunk_size: int
    lam: float | None = None       # rlrt / rlsd: weight of the reweighted part
    eps_w: float | None = None     # rlrt / rlsd: the weight's clip, [max(0, 1 - eps_w), 1 + eps_w]
    normalize: str = "all"         # token mean over all completion tokens, or over those kept (advantage != 0)
    grpo_eps: float = 1e-6         # GRPO's std floor: (R - mean) / (std + eps)
    dual_clip: float | None = None  # PPO dual clip c (A < 0: surrogate >= c A); None = off

    @classmethod
    def from_config(cls, cfg) -> Settings:
        p = cfg.pressure
        return cls(alpha=float(cfg.alpha), pressure=str(p.name), clip=p.get("clip"),
                   grpo_mix=float(cfg.grpo_mix), grpo_scale=cfg.grpo.scale, eps_low=float(cfg.loss.eps_low),
                   eps_high=float(cfg.loss.eps_high), tis_cap=float(cfg.loss.tis_cap),
                   chunk_size=int(cfg.loss.chunk_size), lam=p.get("lam"), eps_w=p.get("eps_w"),
                   normalize=str(p.get("normalize", "all")), grpo_eps=float(cfg.grpo.get("eps", 1e-6)),
                   dual_clip=cfg.loss.get("dual_clip"))

    @property
    def reweighted(self) -> bool:
        """rlrt / rlsd: the OPD slot holds GRPO's advantage reweighted per token."""
        return self.pressure in objective.REWEIGHTED


@dataclass
class StepLoss:
    loss: Tensor                                  # scalar, differentiable w.r.t. the student
    diagnostics: dict[str, float]                 # opd/*, grpo/*, mix/*, rollout/* metrics of the step
    checks: dict[str, Tensor | None]              # named values whose non-finite entries skip the step
    trace: Callable[[], dict[str, Tensor | None]] = field(repr=False)  # s, q, r, adv, opd ([B, T]) for traces


def sampled_scores(teacher: Scorer | None, reference: Scorer | None, batch: RolloutBatch, pad_id: int):
    """(q, r): the sampled tokens' log-probs under the teacher and the reference (each may be None)."""
    if teacher is None:
        return None, None
    q = teacher.score(batch.rows, batch.completion_ids, batch.mask, pad_id)
    if reference is teacher:  # reference=teacher: r = q, alpha inert
        return q, q
    r = None if reference is None else reference.score(batch.rows, batch.completion_ids, batch.mask, pad_id)
    return q, r


def grpo_advantages(s: Settings, batch: RolloutBatch, rewards: Tensor) -> Tensor | None:
    if s.grpo_mix == 0 and not s.reweighted:
        return None
    batch_std = distributed.global_std(rewards) if s.grpo_scale == "batch" else None
    return objective.grpo_advantages(rewards, batch.group_ids, scale=s.grpo_scale, eps=s.grpo_eps, batch_std=batch_std)


def opd_advantages(s: Settings, batch: RolloutBatch, old: Tensor, q: Tensor | None, r: Tensor | None,
                   rewards: Tensor, grpo: Tensor | None) -> Tensor | None:
    """The sampled-token OPD advantage: a pressure mode of delta, or (rlrt / rlsd) GRPO's advantage
    reweighted by it; ``normalize=kept`` rescales it to a mean over the kept tokens of every rank."""
    if q is None:
        return None
    correct = rewards > 0.5
    if s.reweighted:
        return objective.reweighted_grpo(old, q, r, batch.mask, grpo, alpha=s.alpha, mode=s.pressure,
                                         correct=correct, lam=s.lam, eps_w=s.eps_w, clip=s.clip)
    adv = objective.token_advantages(old, q, r, batch.mask, alpha=s.alpha, pressure=s.pressure, correct=correct,
                                     clip=s.clip)
    if s.normalize == "kept":
        adv = adv * objective.kept_scale(distributed.global_tokens(batch.num_tokens),
                                         distributed.global_tokens(objective.kept_tokens(adv, batch.mask)))
    return adv


def _ppo(s: Settings, batch: RolloutBatch, logp: Tensor, old: Tensor, adv: Tensor) -> Tensor:
    return objective.policy_loss(logp, old, adv, batch.mask, eps_low=s.eps_low, eps_high=s.eps_high,
                                 rollout_logp=batch.rollout_logp, tis_cap=s.tis_cap, dual_clip=s.dual_clip)


def mixed_loss(s: Settings, batch: RolloutBatch, logp: Tensor | None, grpo: Tensor | None, *,
               opd_adv: Tensor | None = None, opd_loss: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """The one place GRPO mixes in: ``(1 - m) * OPD + m * GRPO``; returns (loss, sampled-token advantage).

    A sampled-token OPD advantage mixes with ``G_i`` before the PPO-clip loss,
    ``A_t = (1 - m) A_t(OPD) + m G_i``; a vocabulary OPD loss mixes with the sampled-token GRPO
    loss, ``(1 - m) L_opd + m L_grpo``. With one optimizer step per rollout batch the ratio is 1
    and the loss is linear in ``A``, so the two are the same objective.
    """
    m = s.grpo_mix
    if opd_loss is None:
        old = logp.detach()
        zeros = torch.zeros(len(batch.rows), dtype=logp.dtype, device=logp.device)
        adv = objective.mix_advantages(opd_adv if opd_adv is not None else torch.zeros_like(old),
                                       grpo if grpo is not None else zeros, m, batch.mask)
        return _ppo(s, batch, logp, old, adv), adv
    if m == 0:
        return opd_loss, None
    g_adv = objective.mix_advantages(torch.zeros_like(logp), grpo, 1.0, batch.mask)
    return (1 - m) * opd_loss + m * _ppo(s, batch, logp, logp.detach(), g_adv), g_adv


class TokenEstimator:
    """The sampled-token estimator (also pure GRPO, when there is no teacher)."""

    def __init__(self, teacher: Scorer | None, reference: Scorer | None, settings: Settings):
        self.teacher, self.reference, self.settings = teacher, reference, settings

    def __call__(self, student, batch: RolloutBatch, rewards: Rewards, pad_id: int) -> StepLoss:
        s = self.settings
        logp = completion_logprobs(student, batch.prompt_ids, batch.completion_ids, batch.mask, pad_id,
                                   chunk_size=s.chunk_size)
        old = logp.detach()  # one update per rollout batch: pi_old is the current policy
        q, r = sampled_scores(self.teacher, self.reference, batch, pad_id)
        rewards = rewards()
        grpo = grpo_advantages(s, batch, rewards)
        opd = opd_advantages(s, batch, old, q, r, rewards, grpo)
        loss, adv = mixed_loss(s, batch, logp, grpo, opd_adv=opd)
        diag = objective.opd_diagnostics(old, q, r, batch.mask, opd, grpo, batch.group_ids)
        if batch.rollout_logp is not None:
            diag |= logp_gap_metrics(old, batch.rollout_logp, batch.mask)
        traced = dict(s=old, q=q, r=r, adv=adv, opd=opd)
        return StepLoss(loss, diag, dict(student_logp=old, teacher_logp=q, ref_logp=r, advantages=adv, loss=loss),
                        lambda: traced)


class VocabEstimator:
    """``full`` / ``topk``: the OPD loss over vocabulary entries at every position, chunked through
    the LM heads (``gopd.vocab``), mixed with GRPO on the sampled token."""

    def __init__(self, teacher: Scorer, reference: Scorer | None, settings: Settings, *, kind: str, k: int = 32):
        self.teacher, self.reference, self.settings, self.kind, self.k = teacher, reference, settings, kind, k

    def __call__(self, student, batch: RolloutBatch, rewards: Rewards, pad_id: int) -> StepLoss:
        from gopd.logprobs import token_logprobs_from_hidden
        from gopd.vocab import completion_hidden, vocab_opd_loss

        s = self.settings
        hidden = completion_hidden(student, batch.prompt_ids, batch.completion_ids, batch.mask, pad_id)
        correct = rewards() > 0.5 if objective.needs_correct(s.pressure) else None  # else verification runs on meanwhile
        vl = vocab_opd_loss(student, self.teacher, self.reference, batch, pad_id, estimator=self.kind, k=self.k,
                            alpha=s.alpha, pressure=s.pressure, clip=s.clip, correct=correct,
                            chunk_size=s.chunk_size, student_hidden=hidden)
        logp, gap = None, {}
        if s.grpo_mix > 0 or batch.rollout_logp is not None:  # the sampled token's log-prob: GRPO's and the rollout gap's
            head = student.get_output_embeddings()
            logp = token_logprobs_from_hidden(hidden, head.weight, batch.completion_ids, bias=head.bias,
                                              chunk_size=s.chunk_size)
            logp = torch.where(batch.mask.bool(), logp, torch.zeros_like(logp))
            if batch.rollout_logp is not None:
                gap = logp_gap_metrics(logp, batch.rollout_logp, batch.mask)
        grpo = grpo_advantages(s, batch, rewards())
        loss, _ = mixed_loss(s, batch, logp, grpo, opd_loss=vl.loss)
        diag = objective.opd_diagnostics(vl.expected_adv, None, None, batch.mask, vl.expected_adv, grpo,
                                         batch.group_ids) | vl.metrics | gap  # grpo/*, mix/*; exact vocab terms win

        def trace() -> dict[str, Tensor | None]:
            """Sampled-token s, q, r (scored only for a traced step); ``opd`` is E_pi[A(v)] per position,
            ``adv`` that mixed with GRPO."""
            with torch.no_grad():
                head = student.get_output_embeddings()
                s_tok = token_logprobs_from_hidden(hidden.detach(), head.weight, batch.completion_ids, bias=head.bias,
                                                   chunk_size=s.chunk_size)
                q, r = sampled_scores(self.teacher, self.reference, batch, pad_id)
            zeros = torch.zeros(len(batch.rows), dtype=s_tok.dtype, device=s_tok.device)
            adv = objective.mix_advantages(vl.expected_adv, grpo if grpo is not None else zeros, s.grpo_mix, batch.mask)
            return dict(s=s_tok, q=q, r=r, adv=adv, opd=vl.expected_adv)

        return StepLoss(loss, diag, dict(advantages=vl.expected_adv, loss=loss), trace)


ESTIMATORS: dict[str, Callable] = {  # the estimator group's name -> (teacher, reference, settings, its section)
    "token": lambda teacher, reference, settings, c: TokenEstimator(teacher, reference, settings),
    "full": lambda teacher, reference, settings, c: VocabEstimator(teacher, reference, settings, kind="full"),
    "topk": lambda teacher, reference, settings, c: VocabEstimator(teacher, reference, settings, kind="topk",
                                                                    k=int(c.get("k", 32))),
}


def build_estimator(section, settings: Settings, teacher: Scorer | None, reference: Scorer | None):
    """The ``estimator`` group's object; without a teacher (``grpo_mix = 1``) the GRPO loss alone."""
    if teacher is None:
        return TokenEstimator(None, None, settings)
    return ESTIMATORS[section.name](teacher, reference, settings, section)
