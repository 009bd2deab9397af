"""What every rollout engine returns, and the padding and masking helpers they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RolloutBatch:
    rows: list[Mapping]            # one per rollout (each prompt's row repeated n times)
    prompt_ids: list[list[int]]    # the student's prompt tokens per rollout
    completion_ids: Tensor         # [B, T] sampled tokens (pad after EOS)
    mask: Tensor                   # [B, T] 1 on real completion tokens (EOS included)
    group_ids: Tensor              # [B] prompt index: rollouts of one prompt form a GRPO group
    rollout_logp: Tensor | None = None  # [B, T] the engine's own sampling log-probs (vLLM), else None

    @property
    def num_tokens(self) -> int:
        return int(self.mask.sum())


def completion_mask(completions: Tensor, eos_id: int) -> Tensor:
    """1 up to and including the first EOS; all generated tokens when there is none."""
    is_eos = completions == eos_id
    after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0
    return (~after_eos).long()


def left_pad(prompt_ids: Sequence[Sequence[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    p = max(len(x) for x in prompt_ids)
    ids = torch.full((len(prompt_ids), p), pad_id, dtype=torch.long, device=device)
    attn = torch.zeros_like(ids)
    for i, row in enumerate(prompt_ids):
        ids[i, p - len(row):] = torch.tensor(row, dtype=torch.long, device=device)
        attn[i, p - len(row):] = 1
    return ids, attn


def right_pad(seqs: Sequence[Sequence], value, dtype: torch.dtype = torch.long) -> tuple[Tensor, Tensor]:
    """``[B, T]`` rows padded after their end with ``value``, and the mask (1 on real entries)."""
    t = max(len(x) for x in seqs)
    out = torch.full((len(seqs), t), value, dtype=dtype)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for i, row in enumerate(seqs):
        out[i, : len(row)] = torch.tensor(row, dtype=dtype)
        mask[i, : len(row)] = 1
    return out, mask


def decode(tokenizer, completion_ids: Tensor, mask: Tensor) -> list[str]:
    return [tokenizer.decode(ids[m.bool()].tolist(), skip_special_tokens=True) for ids, m in zip(completion_ids, mask)]


def logp_gap_metrics(student_logp: Tensor, rollout_logp: Tensor, mask: Tensor) -> dict[str, float]:
    """``|s_t - s_t^rollout|`` over real tokens: its mean and max (``rollout/logp_gap_*``).

    Numerical mismatch between the engines when they sample at temperature 1; a large value
    means the engine's weights are stale (a broken sync) or it samples another distribution.
    """
    keep = mask.bool()
    gap = (student_logp.detach() - rollout_logp.detach()).abs()[keep]
    if gap.numel() == 0:
        return {"rollout/logp_gap_mean": 0.0, "rollout/logp_gap_max": 0.0}
    return {"rollout/logp_gap_mean": float(gap.mean()), "rollout/logp_gap_max": float(gap.max())}
