"""The Hugging Face engine: ``generate`` on the trainer's own weights (always in sync)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from gopd import distributed
from gopd.prompts import PromptBuilder
from gopd.rollout.batch import RolloutBatch, completion_mask, left_pad
from gopd.rollout.sampling import SAMPLERS, inverse_cdf_processors
from gopd.strategy import is_sharded, reshard

CACHES = ("dynamic", "static")  # transformers' cache_implementation: grown by concatenation | preallocated


@torch.no_grad()
def hf_generate(model, tokenizer, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                greedy: bool, temperature: float = 1.0, top_p: float = 1.0,
                cache: str = "dynamic", sampler: str = "multinomial") -> tuple[Tensor, Tensor]:
    """Batched ``generate`` with left padding -> (completion ids ``[B, T]``, mask ``[B, T]``).

    ``generate`` derives position ids from the attention mask, as ``scoring.pack`` does, so
    left padding changes nothing. (A hand-written KV-cache loop was measured only 5% faster
    on the toy model: not worth leaving the library for.) ``cache="static"`` preallocates the
    KV cache for the whole completion instead of growing it token by token; on a GPU,
    ``generate`` then compiles its decoding step (not on a sharded model: the gathers of FSDP
    under ``synced_gpus`` are left uncompiled). ``sampler="inverse_cdf"`` draws each token from one
    uniform number instead of one per vocabulary entry (``gopd.rollout.sampling``).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    device = next(model.parameters()).device
    ids, attn = left_pad(prompt_ids, tokenizer.pad_token_id, device)
    was_training = model.training
    model.eval()
    if greedy:
        kwargs = dict(do_sample=False)
    elif sampler == "inverse_cdf":  # a greedy generate whose last processor has sampled the token
        kwargs = dict(do_sample=False, logits_processor=inverse_cdf_processors(temperature, top_p))
    else:
        kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    # A sharded model gathers its weights in every forward: every rank must run as many as the
    # longest rank's generation (HF's synced_gpus), or the collectives stop matching.
    kwargs["synced_gpus"] = distributed.world_size() > 1 and is_sharded(model)
    if cache == "static":
        kwargs.update(cache_implementation="static", disable_compile=is_sharded(model))
    out = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=max_new_tokens,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **kwargs)
    model.train(was_training)
    reshard(model)  # FSDP: generation is no training forward; free the gathered root weights
    completions = out[:, ids.shape[1]:]
    mask = completion_mask(completions, tokenizer.eos_token_id)
    return torch.where(mask.bool(), completions, torch.full_like(completions, tokenizer.pad_token_id)), mask


class HFRollout:
    """Samples with Hugging Face ``generate`` on the live student (no weight sync needed)."""

    name = "hf"

    def __init__(self, model, tokenizer, prompts: PromptBuilder, *, n: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, cache: str = "dynamic", sampler: str = "multinomial"):
        self.model, self.tokenizer, self.prompts = model, tokenizer, prompts
        self.n, self.max_new_tokens, self.temperature, self.top_p = n, max_new_tokens, temperature, top_p
        self.cache, self.sampler = cache, sampler

    def sample(self, rows: Sequence[Mapping]) -> RolloutBatch:
        rows = [r for r in rows for _ in range(self.n)]
        prompt_ids = self.prompts.batch_ids(rows)
        ids, mask = hf_generate(self.model, self.tokenizer, prompt_ids, max_new_tokens=self.max_new_tokens,
                                greedy=False, temperature=self.temperature, top_p=self.top_p, cache=self.cache,
                                sampler=self.sampler)
        groups = torch.arange(len(rows) // self.n, device=ids.device).repeat_interleave(self.n)
        return RolloutBatch(rows, prompt_ids, ids, mask, groups)

    def sync(self, model) -> None:
        """Nothing to do: HF generate reads the trainer's weights directly."""


def build_hf_rollout(r, model, tokenizer, prompts: PromptBuilder, **engine) -> HFRollout:
    """``engine`` (the checkpoint path) is not needed: ``generate`` runs on the live student."""
    return HFRollout(model, tokenizer, prompts, n=r.n, max_new_tokens=r.max_new_tokens,
                     temperature=r.temperature, top_p=r.top_p, cache=r.cache, sampler=r.sampler)
