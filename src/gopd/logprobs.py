"""Sampled-token log-probabilities without a full ``[B, T, V]`` fp32 log-softmax.

``log p(y) = log_softmax(logits)[y]``, computed over chunks of positions: only one
``[chunk, V]`` fp32 block (bf16 logits are upcast per chunk) is alive at a time, where the naive
``log_softmax(logits.float()).gather(...)`` holds two full ``[B, T, V]`` fp32 tensors. The
hidden-state variant goes one step further and never forms the full logits at all: each chunk of
hidden states goes through the LM head on its own, and under autograd each chunk is
checkpointed, so backward recomputes its logits instead of keeping them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK = 128  # rows of [chunk, V]: 78 MB fp32 at V=152k


def _check_targets(name: str, x: Tensor, targets: Tensor) -> None:
    if x.shape[:-1] != targets.shape:
        raise ValueError(f"{name} has leading shape {tuple(x.shape[:-1])} but targets have {tuple(targets.shape)}")


def _chunk_logp(logits: Tensor, targets: Tensor) -> Tensor:
    # log_softmax is one fused kernel; logsumexp's composite max/sub/exp/sum measured ~20% slower.
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_logprobs(logits: Tensor, targets: Tensor, *, chunk_size: int = DEFAULT_CHUNK) -> Tensor:
    """``log softmax(logits)[..., targets]`` as fp32 ``[...]``, by chunks of positions.

    Differentiable: the backward of each chunk is ``onehot - softmax`` of that chunk alone.
    """
    _check_targets("logits", logits, targets)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    flat = logits.reshape(-1, logits.shape[-1])
    tgt = targets.reshape(-1)
    parts = [_chunk_logp(flat[i : i + chunk_size], tgt[i : i + chunk_size]) for i in range(0, flat.shape[0], chunk_size)]
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=torch.float32)
    return out.reshape(targets.shape)


def _head_chunk_logp(hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, temperature: float) -> Tensor:
    logits = torch.nn.functional.linear(hidden, weight, bias)
    if temperature != 1.0:
        logits = logits / temperature
    return _chunk_logp(logits, targets)


def token_logprobs_from_hidden(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """Sampled-token log-probs from final hidden states ``[..., d]`` and an LM head ``[V, d]``.

    Logits are formed one chunk at a time; when a gradient is needed each chunk is
    checkpointed, so backward holds ``[chunk, V]`` at a time, not ``[B, T, V]``.
    """
    _check_targets("hidden", hidden, targets)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    flat = hidden.reshape(-1, hidden.shape[-1])
    tgt = targets.reshape(-1)
    grad = torch.is_grad_enabled() and (flat.requires_grad or weight.requires_grad)
    parts = []
    for i in range(0, flat.shape[0], chunk_size):
        args = (flat[i : i + chunk_size], weight, bias, tgt[i : i + chunk_size], temperature)
        if grad:
            parts.append(checkpoint(_head_chunk_logp, *args, use_reentrant=False))
        else:
            parts.append(_head_chunk_logp(*args))
    out = torch.cat(parts) if parts else flat.new_zeros(0, dtype=torch.float32)
    return out.reshape(targets.shape)
