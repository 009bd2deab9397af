"""Rollouts from a colocated, in-process vLLM engine (``rollout=vllm``).

The engine starts on the student checkpoint (the student's step-0 weights) and samples
``rollout.n`` completions per prompt from token ids, with the HF engine's sampling parameters.
It reports the log-prob of every sampled token under the distribution it sampled from
(``logprobs_mode=processed_logprobs``: after temperature and top-p); the trainer turns the gap
to its own ``s_t`` into the truncated importance weight of ``objective.policy_loss``.

After every optimizer step ``sync`` pushes the student's weights into the engine in place
(``reload_weights`` with a weights iterator) and drops the prefix cache, whose KV blocks were
computed with the old weights. Nothing here touches the disk: ``reload_weights(weights_path=...)``
was measured to give silently wrong weights.

Importing this module does not import vLLM (~7 s); building an engine does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from gopd import distributed
from gopd.prompts import PromptBuilder
from gopd.rollout.batch import RolloutBatch, right_pad

# Which log-probs vLLM reports. processed = the sampling distribution (after temperature / top-p):
# the behaviour policy whose gap to s_t the importance weight corrects. raw = temperature 1, full
# vocabulary (the trainer's own definition of s_t, so the gap is numerical mismatch only).
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")

# Set only where the user has not: in-process engine (weights are handed over as live tensors,
# no copy to an engine process) and, on CPU, a KV cache of 1 GiB instead of a fraction of RAM.
IN_PROCESS_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}

SLEEP_LEVEL = 1  # level 1 keeps a host copy of the weights: correct even if a sync missed a tensor


def vllm_available() -> bool:
    """Is vLLM installed? (Looks it up without importing it.)"""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def set_engine_env(on_gpu: bool) -> None:
    for key, value in (IN_PROCESS_ENV | ({} if on_gpu else CPU_ENV)).items():
        os.environ.setdefault(key, value)


def build_engine(path: str, r, *, trust_remote_code: bool = False):
    """A ``vllm.LLM`` on checkpoint ``path`` with the engine settings of the rollout group ``r``.

    Scripts that call this need an ``if __name__ == "__main__"`` guard (vLLM may start workers).
    """
    set_engine_env(torch.cuda.is_available())
    from vllm import LLM

    rank, ranks = _rank_env()
    per_rank = {"distributed_executor_backend": "external_launcher"} if ranks > 1 else {}
    set_num_threads = torch.set_num_threads
    try:
        return LLM(model=path, dtype=r.dtype, seed=r.seed + rank, enforce_eager=r.enforce_eager,
                   tensor_parallel_size=r.tensor_parallel_size, gpu_memory_utilization=r.gpu_memory_utilization,
                   enable_sleep_mode=r.enable_sleep_mode, max_model_len=r.get("max_model_len"),
                   logprobs_mode=r.logprobs_mode, trust_remote_code=trust_remote_code,
                   generation_config="vllm",  # sampling comes from the config only, not generation_config.json
                   **per_rank)
    finally:
        # The CPU worker replaces torch.set_num_threads with a no-op for the whole process; the
        # trainer (and the tests' one-thread fixture) still need the real one.
        torch.set_num_threads = set_num_threads


def _rank_env() -> tuple[int, int]:
    """(rank, ranks) of the trainer's process group. Under several ranks each builds its own engine
    in that group (vLLM's ``external_launcher``), which reads the torchrun variables: set from the
    group where the launcher (Lightning's, SLURM's) did not."""
    rank, ranks = distributed.rank(), distributed.world_size()
    if ranks > 1:
        local = rank % max(torch.cuda.device_count(), 1) if torch.cuda.is_available() else rank
        for key, value in (("RANK", rank), ("WORLD_SIZE", ranks), ("LOCAL_RANK", local)):
            os.environ.setdefault(key, str(value))
    return rank, ranks


def student_weights(model: torch.nn.Module):
    """The student's full weights under the checkpoint's names (a LoRA student's adapters merged in),
    one tensor at a time: a sharded student's are gathered one by one as the engine loads them (every
    rank walks the same order), so the extra memory is one tensor, not the model."""
    from gopd.lora import has_lora, merged_state_dict
    from gopd.strategy import full_state_dict, is_sharded

    if has_lora(model):
        full = full_state_dict(model)  # LoRA under FSDP: the whole model gathered, then merged
        yield from merged_state_dict(model, full).items()
        return
    sharded = is_sharded(model)
    for name, p in model.named_parameters():
        yield name, (p.full_tensor() if sharded else p).detach()


def _refresh_cpu_packed_weights(worker) -> int:
    """Re-pack the CPU backend's GEMM weights of layers that keep their weight (embeddings, LM head).

    On CPU, vLLM packs each linear layer's weight for oneDNN once, at load. ``reload_weights``
    re-packs the layers it loads, but a *tied* LM head is never loaded (it shares the embedding's
    tensor), so it kept computing logits with the step-0 embedding: measured on the toy model,
    log-probs off by ~0.8 nats after one sync. Runs inside the engine's worker.
    """
    n = 0
    for module in worker.model_runner.get_model().modules():
        weight = getattr(module, "weight", None)
        if hasattr(module, "cpu_linear") and isinstance(weight, Tensor) and weight.numel() > 0:
            module.quant_method.process_weights_after_loading(module)
            n += 1
    return n


class VLLMRollout:
    """Samples with a colocated vLLM engine; ``sync`` after every optimizer step keeps it on-policy."""

    name = "vllm"

    def __init__(self, llm, model, tokenizer, prompts: PromptBuilder, *, n: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, sleep: bool = False):
        """``llm``: the engine, or a function that builds it (called at the first ``sync`` or
        ``sample``: under several ranks, inside the trainer's process group)."""
        from vllm import SamplingParams

        self._llm, self.model, self.tokenizer, self.prompts, self.n = llm, model, tokenizer, prompts, n
        self.sleep = sleep
        self.asleep: set[str] = set()   # engine memory released by sleep mode: {"weights", "kv_cache"}
        # logprobs=0: the sampled token's log-prob only. detokenize=False: the trainer decodes itself.
        self.params = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_new_tokens,
                                     logprobs=0, stop_token_ids=[tokenizer.eos_token_id], detokenize=False)

    @property
    def llm(self):
        if callable(self._llm):
            self._llm = self._llm()
        return self._llm

    @property
    def on_cpu(self) -> bool:
        return self.llm.llm_engine.vllm_config.device_config.device_type == "cpu"

    def sample(self, rows: Sequence[Mapping]) -> RolloutBatch:
        from vllm.inputs import TokensPrompt

        self._wake("weights", "kv_cache")
        prompt_ids = self.prompts.batch_ids(list(rows))
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], self.params,
                                    use_tqdm=False)
        if self.sleep:
            self.llm.sleep(level=SLEEP_LEVEL)
            self.asleep = {"weights", "kv_cache"}
        completions, logps = [], []
        for out in outputs:  # in prompt order; each prompt's n samples side by side: a GRPO group
            for c in sorted(out.outputs, key=lambda c: c.index):
                completions.append(list(c.token_ids))
                logps.append([step[token].logprob for step, token in zip(c.logprobs, c.token_ids)])
        device = next(self.model.parameters()).device  # the trainer's (Lightning moves the student)
        ids, mask, logp = (x.to(device) for x in self._pad(completions, logps))
        groups = torch.arange(len(rows), device=device).repeat_interleave(self.n)
        return RolloutBatch([r for r in rows for _ in range(self.n)], [p for p in prompt_ids for _ in range(self.n)],
                            ids, mask, groups, rollout_logp=logp)

    def _pad(self, completions: list[list[int]], logps: list[list[float]]) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, T]`` ids (pad after the end), mask, log-probs (0 at padding): RolloutBatch's layout.

        vLLM stops each completion at its first EOS (kept, as in HF generate), so every returned
        token is a real one.
        """
        ids, mask = right_pad(completions, self.tokenizer.pad_token_id)
        logp, _ = right_pad(logps, 0.0, torch.float32)
        return ids, mask, logp

    @torch.no_grad()
    def sync(self, model: torch.nn.Module) -> None:
        """Push ``model``'s current weights into the engine in place, then drop its prefix cache."""
        self._wake("weights")  # the KV cache can stay asleep until the next sample
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": student_weights(model)})
        if self.on_cpu:
            self.llm.collective_rpc(_refresh_cpu_packed_weights)
        self.llm.reset_prefix_cache()

    def _wake(self, *tags: str) -> None:
        tags = [t for t in tags if t in self.asleep]
        if tags:
            self.llm.wake_up(tags=tags)
            self.asleep -= set(tags)


def build_vllm_rollout(r, model, tokenizer, prompts: PromptBuilder, *, model_path: str,
                       trust_remote_code: bool = False, defer: bool = False) -> VLLMRollout:
    """The engine on the student checkpoint ``model_path``, sampling as the ``rollout`` section ``r`` says.

    One process builds it now; several ranks each build theirs at the first sync, once the
    trainer's process group exists (``defer``)."""
    def build():
        return build_engine(model_path, r, trust_remote_code=trust_remote_code)

    llm = build if defer else build()
    return VLLMRollout(llm, model, tokenizer, prompts, n=r.n, max_new_tokens=r.max_new_tokens,
                       temperature=r.temperature, top_p=r.top_p, sleep=bool(r.enable_sleep_mode))
