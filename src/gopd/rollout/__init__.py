"""Rollout engines: the student samples ``n`` completions per prompt.

Every engine returns a ``RolloutBatch`` (``batch``); the HF engine (``hf``) samples from the
trainer's own weights (always in sync, no log-probs of its own), the vLLM engine (``vllm``) from
a colocated engine that is synced after each optimizer step and reports its sampling log-probs.
"""

from __future__ import annotations

from gopd.prompts import PromptBuilder
from gopd.rollout.batch import RolloutBatch, completion_mask, decode, left_pad, logp_gap_metrics, right_pad
from gopd.rollout.hf import HFRollout, build_hf_rollout, hf_generate

__all__ = ["ROLLOUTS", "HFRollout", "RolloutBatch", "build_rollout", "completion_mask", "decode", "hf_generate",
           "left_pad", "logp_gap_metrics", "right_pad"]


def _vllm(r, model, tokenizer, prompts: PromptBuilder, **engine):
    from gopd.rollout.vllm import build_vllm_rollout  # imports vLLM (~7 s) only when rollout=vllm

    return build_vllm_rollout(r, model, tokenizer, prompts, **engine)


ROLLOUTS = {"hf": build_hf_rollout, "vllm": _vllm}


def build_rollout(r, model, tokenizer, prompts: PromptBuilder, *, model_path: str | None = None,
                  trust_remote_code: bool = False, defer: bool = False):
    """The engine the ``rollout`` section names; an engine of its own (vLLM) starts on ``model_path``
    (at its first use when ``defer``: under several ranks, once their process group exists)."""
    if r.name not in ROLLOUTS:
        raise ValueError(f"rollout must be one of {', '.join(ROLLOUTS)}, got {r.name!r}")
    return ROLLOUTS[r.name](r, model, tokenizer, prompts, model_path=model_path, trust_remote_code=trust_remote_code,
                            defer=defer)
