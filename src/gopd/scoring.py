"""Scorers: "model + prompt builder -> log-probs of the sampled tokens".

A teacher or a reference is a ``Scorer``: one or more routes (a model and the prompt builder of
its context) and a rule that sends each row to a route (domain experts route by the row's
domain; everything else has one route). The same completion tokens are scored under each
route's own prompt, so the hinted teacher sees the hint and the student does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gopd.logprobs import DEFAULT_CHUNK, token_logprobs_from_hidden
from gopd.prompts import PromptBuilder
from gopd.rollout import left_pad
from gopd.strategy import body


def pack(prompt_ids: Sequence[Sequence[int]], completion_ids: Tensor, completion_mask: Tensor, pad_id: int):
    """``[left-padded prompt | completion]`` rows, attention mask and position ids.

    Left padding aligns every completion at column ``P`` (the longest prompt), so completion
    token ``t`` is predicted by the hidden state at ``P - 1 + t``. Position ids count real
    tokens only, as generation does.
    """
    prompt, prompt_attn = left_pad(prompt_ids, pad_id, completion_ids.device)
    completion = torch.where(completion_mask.bool(), completion_ids, torch.full_like(completion_ids, pad_id))
    ids = torch.cat([prompt, completion], dim=1)
    attn = torch.cat([prompt_attn, completion_mask.long()], dim=1)
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    return ids, attn, pos, prompt.shape[1]


def completion_logprobs(
    model,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Tensor,
    completion_mask: Tensor,
    pad_id: int,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> Tensor:
    """``log p(y_t | prompt, y_<t)`` ``[B, T]`` under ``model`` (0 at padding).

    Runs the transformer body once and the LM head by chunks of positions (no ``[B, T, V]``
    logits); differentiable when grad is enabled and the model has trainable weights.
    """
    ids, attn, pos, p = pack(prompt_ids, completion_ids, completion_mask, pad_id)
    t = completion_ids.shape[1]
    hidden = body(model, input_ids=ids, attention_mask=attn, position_ids=pos).last_hidden_state
    hidden = hidden[:, p - 1 : p - 1 + t]
    head = model.get_output_embeddings()
    logp = token_logprobs_from_hidden(hidden, head.weight, completion_ids, bias=head.bias, chunk_size=chunk_size)
    return torch.where(completion_mask.bool(), logp, torch.zeros_like(logp))


@dataclass
class Route:
    """One model and the prompt builder of its context."""

    model: torch.nn.Module
    prompts: PromptBuilder


class Scorer:
    """Scores completions under one or several routes, chosen per row by ``route_of``."""

    def __init__(self, routes: Mapping[str, Route], route_of: Callable[[Mapping, int], str] | None = None,
                 *, chunk_size: int = DEFAULT_CHUNK):
        self.routes = dict(routes)
        self.route_of = route_of or (lambda row, i: next(iter(self.routes)))
        self.chunk_size = chunk_size

    def split(self, rows: Sequence[Mapping]) -> dict[str, list[int]]:
        """Route name -> indices of the rows it scores."""
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(self.route_of(row, i), []).append(i)
        return groups

    @torch.no_grad()
    def score(self, rows: Sequence[Mapping], completion_ids: Tensor, completion_mask: Tensor, pad_id: int) -> Tensor:
        out = torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)
        for name, idx in self.split(rows).items():
            route = self.routes[name]
            was_training = route.model.training
            route.model.eval()
            sel = torch.tensor(idx, device=completion_ids.device)
            prompts = route.prompts.batch_ids([rows[i] for i in idx])
            out[sel] = completion_logprobs(route.model, prompts, completion_ids[sel], completion_mask[sel], pad_id,
                                           chunk_size=self.chunk_size)
            route.model.train(was_training)
        return out


class EMA:
    """Exponential moving average of the student's weights, as a frozen model (teacher.weights=ema)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        if not 0.0 < decay < 1.0:
            raise ValueError(f"teacher.ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Under FSDP both models are sharded alike: each rank updates its own shard (DTensor lerp)."""
        from gopd.strategy import reshard

        reshard(self.model), reshard(model)  # the sharded parameters, not gathered copies a forward left
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1.0 - self.decay)
