"""Sampled-token log-probabilities without a full ``[B, T, V]`` fp32 log-softmax.

``log p(y) = log_softmax(logits)[y]``, computed over chunks of positions: only one
``[chunk, V]`` fp32 block (bf16 logits are upcast per chunk) is alive at a time, where the naive
``log_softmax(logits.float()).gather(...)`` holds two full ``[B, T, V]`` fp32 tensors. The
hidden-state variant goes one step further and never forms the full logits at all: each chunk of
hidden states goes through the LM head on its own, into ``[chunk, V]`` buffers reused from chunk
to chunk, and backward recomputes each chunk's logits instead of keeping them. It calls the
kernels ``linear`` / ``log_softmax`` and their backward call (``torch._log_softmax`` and
``torch._log_softmax_backward_data``, for their ``out=`` buffers), in the order autograd would,
so in fp32 its values and gradients are bitwise those of per-chunk checkpointing (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

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


def _compute_dtype(hidden: Tensor, weight: Tensor) -> torch.dtype:
    """The dtype ``linear(hidden, weight)`` produces here: autocast's, or the operands'."""
    dev = hidden.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return torch.promote_types(hidden.dtype, weight.dtype)


class Blocks:
    """Named blocks kept from call to call; each call hands out a view of the first ``shape[0]``
    rows. On a CPU a fresh ``[chunk, V]`` block costs page faults (~30 ms per 78 MB on the 2-core
    machine), and ``out=`` runs the same kernels as the allocating call, so values are bitwise equal."""

    def __init__(self):
        self.blocks: dict[str, Tensor] = {}

    def __call__(self, name: str, shape, dtype: torch.dtype, device) -> Tensor:
        buf = self.blocks.get(name)
        if (buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != tuple(shape[1:]) or buf.dtype != dtype
                or buf.device != torch.device(device)):
            buf = self.blocks[name] = torch.empty(shape, dtype=dtype, device=device)
        return buf[: shape[0]]

    def like(self, name: str, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        return self(name, x.shape, dtype or x.dtype, x.device)


class HeadLogSoftmax:
    """``log_softmax(linear(h, W, b) / temperature)`` in fp32 for chunks of hidden rows, in
    ``Blocks`` (each result is a view that the next call overwrites); the ops are the ones
    ``linear`` and ``log_softmax`` run, so the values are bitwise theirs."""

    def __init__(self):
        self.blocks = Blocks()
        self._cast = None  # (weight, its version, dtype, the cast): one cast per weight, as autocast caches it

    def weight_as(self, weight: Tensor, dtype: torch.dtype) -> Tensor:
        """``weight`` in ``dtype``, cast once while the weight is unchanged (not once per chunk)."""
        if self._cast is None or self._cast[0] is not weight or self._cast[1:3] != (weight._version, dtype):
            self._cast = (weight, weight._version, dtype, weight.to(dtype))
        return self._cast[3]

    def __call__(self, h: Tensor, weight: Tensor, bias: Tensor | None = None, temperature: float = 1.0,
                 dtype: torch.dtype | None = None) -> Tensor:
        """``dtype``: the logits' compute dtype (default: what ``linear`` would use here)."""
        dtype = dtype or _compute_dtype(h, weight)
        shape = (h.shape[0], weight.shape[0])
        z = self.blocks("logits", shape, dtype, h.device)
        w_t = self.weight_as(weight, dtype).t()
        if bias is None:
            torch.mm(h.to(dtype), w_t, out=z)
        else:  # addmm, as linear with a bias
            torch.addmm(bias.to(dtype), h.to(dtype), w_t, out=z)
        if temperature != 1.0:
            z.div_(temperature)
        z = self.spare(shape, dtype, h.device).copy_(z) if dtype != torch.float32 else z
        return torch._log_softmax(z, -1, False, out=self.blocks("logp", shape, torch.float32, h.device))

    def spare(self, shape, dtype: torch.dtype, device) -> Tensor:
        """The fp32 logits block (the logits' own block when they are fp32): free again once a call
        has returned its log-softmax."""
        return self.blocks("logits" if dtype == torch.float32 else "logits32", shape, torch.float32, device)


class _HeadTokenLogp(torch.autograd.Function):
    """``log p(y)`` from hidden rows through the LM head, by chunks; keeps no ``[chunk, V]`` block
    for backward, which recomputes each chunk's log-softmax (as per-chunk checkpointing would,
    without its graph bookkeeping and in the same buffers)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, temperature, chunk_size):
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        head, dtype = HeadLogSoftmax(), _compute_dtype(hidden, weight)
        for i in range(0, hidden.shape[0], chunk_size):
            logp = head(hidden[i : i + chunk_size], weight, bias, temperature, dtype)
            out[i : i + logp.shape[0]] = logp.gather(-1, targets[i : i + chunk_size, None]).squeeze(-1)
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.settings = (temperature, chunk_size, dtype)
        return out

    @staticmethod
    def backward(ctx, g):
        hidden, weight, bias, targets = ctx.saved_tensors
        temperature, chunk_size, dtype = ctx.settings
        want_h, want_w, want_b = ctx.needs_input_grad[:3]
        n = hidden.shape[0]
        g_h = torch.zeros_like(hidden) if want_h else None
        g_w = g_b = None
        head = HeadLogSoftmax()
        w = head.weight_as(weight, dtype)
        with torch.autocast(hidden.device.type, enabled=False):
            # Last chunk first: the order autograd summed per-chunk weight gradients in, so the sum
            # is bitwise the checkpointed path's.
            for i in reversed(range(0, n, chunk_size)):
                h = hidden[i : i + chunk_size]
                k = h.shape[0]
                logp = head(h, weight, bias, temperature, dtype)
                shape = (k, weight.shape[0])
                go = head.blocks("grad", shape, torch.float32, hidden.device).zero_()
                go.scatter_(-1, targets[i : i + k, None], g[i : i + k, None].float())  # upstream at the targets
                gz = torch._log_softmax_backward_data(go, logp, -1, torch.float32,
                                                      out=head.spare(shape, dtype, hidden.device))
                gz = gz.to(dtype)
                if temperature != 1.0:
                    gz = gz.div_(temperature)  # gz is a kept block or a fresh cast: in place is safe
                if want_h:
                    g_h[i : i + k] = torch.mm(gz, w).to(hidden.dtype)
                if want_w:
                    part = torch.mm(gz.t(), h.to(dtype)).to(weight.dtype)
                    g_w = part if g_w is None else g_w.add_(part)
                if want_b:
                    part = gz.sum(0).to(bias.dtype)
                    g_b = part if g_b is None else g_b.add_(part)
        if want_w and g_w is None:  # no positions
            g_w = torch.zeros_like(weight)
        if want_b and g_b is None:
            g_b = torch.zeros_like(bias)
        return g_h, g_w, g_b, None, None, None


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

    Logits are formed one chunk at a time, into buffers reused across chunks; backward
    recomputes each chunk's logits, so at most ``[chunk, V]`` is alive, never ``[B, T, V]``.
    """
    _check_targets("hidden", hidden, targets)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    flat = hidden.reshape(-1, hidden.shape[-1])
    out = _HeadTokenLogp.apply(flat, weight, bias, targets.reshape(-1), float(temperature), int(chunk_size))
    return out.reshape(targets.shape)
