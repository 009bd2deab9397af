"""Lightning strategies for multi-GPU runs (``trainer=ddp`` / ``trainer=fsdp``) and the few
places where the training step must know it runs under FSDP.

FSDP wraps the student's decoder layers (any module class whose name ends in
``DecoderLayer``: ``Qwen3DecoderLayer``, ``Olmo3DecoderLayer``, ...), so one config serves every
architecture. Frozen teachers and references are not submodules of the LightningModule: they
are replicated on every GPU, never sharded.

Measured here (CPU only): Lightning refuses FSDP without a GPU ("The strategy `fsdp` requires a
GPU accelerator"), and so does torch's FSDP itself ("FSDP needs a non-CPU accelerator device"),
so the FSDP path is exercised on GPUs only; DDP runs on CPU (gloo) in the tests.
"""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def is_layer(module: torch.nn.Module, suffix: str = "DecoderLayer") -> bool:
    return type(module).__name__.endswith(suffix)


def fsdp(sharding_strategy: str = "FULL_SHARD", mixed_precision: str | None = "bfloat16",
         activation_checkpointing: bool = True, layer_suffix: str = "DecoderLayer", cpu_offload: bool = False,
         **kwargs):
    """An ``FSDPStrategy``: shard per decoder layer, params/buffers in ``mixed_precision`` with fp32
    gradient reduction, and activation checkpointing of each decoder layer."""
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import MixedPrecision
    from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy

    policy = partial(lambda_auto_wrap_policy, lambda_fn=partial(is_layer, suffix=layer_suffix))
    mp = None
    if mixed_precision is not None:
        dtype = DTYPES[mixed_precision]
        mp = MixedPrecision(param_dtype=dtype, reduce_dtype=torch.float32, buffer_dtype=dtype)
    return FSDPStrategy(sharding_strategy=sharding_strategy, auto_wrap_policy=policy, mixed_precision=mp,
                        activation_checkpointing_policy=policy if activation_checkpointing else None,
                        cpu_offload=cpu_offload, use_orig_params=True,  # LoRA: frozen and trainable params in one unit
                        **kwargs)


def build(strategy):
    """``trainer.strategy`` as composed: a name (``auto``, ``ddp``) or a ``_target_`` node."""
    if isinstance(strategy, dict) and "_target_" in strategy:
        from hydra.utils import instantiate

        return instantiate(strategy, _convert_="all")
    return strategy


def uses_fsdp(trainer_cfg) -> bool:
    s = trainer_cfg.get("strategy")
    return s is not None and not isinstance(s, str) and str(s.get("_target_", "")).endswith(".fsdp")


def checkpoints_activations(trainer_cfg) -> bool:
    """The strategy already checkpoints each decoder layer (then the model must not do it again)."""
    return uses_fsdp(trainer_cfg) and bool(trainer_cfg.strategy.get("activation_checkpointing", True))


def fsdp_root(trainer):
    """The root FSDP module of a running trainer, or None when the strategy is not FSDP."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    model = getattr(trainer.strategy, "model", None)
    return model if isinstance(model, FullyShardedDataParallel) else None


def clip_grad_norm(trainer, module: torch.nn.Module, max_norm: float) -> float:
    """Total gradient norm, clipped: across shards under FSDP (``torch.nn.utils`` would see one shard)."""
    root = fsdp_root(trainer)
    if root is not None:
        return float(root.clip_grad_norm_(max_norm))
    return float(torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm))


def full_root_params(trainer):
    """Outside the training step (evaluation callbacks), the root unit's own parameters (embeddings,
    LM head, final norm) are sharded under FSDP: gather them for the duration; the decoder
    layers gather themselves in their forward."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    root = fsdp_root(trainer)
    if root is None:
        return nullcontext()
    return FullyShardedDataParallel.summon_full_params(root, recurse=False, writeback=False)


def optimizer_state(trainer, optimizer) -> dict:
    """The optimizer's full state (gathered to rank 0 under FSDP: every rank must call this)."""
    return trainer.strategy.optimizer_state(optimizer)


def load_optimizer_state(trainer, optimizer, state: dict) -> None:
    """Load a full optimizer state saved by ``optimizer_state`` (re-sharded under FSDP)."""
    root = fsdp_root(trainer)
    if root is None:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, OptimStateKeyType, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with FSDP.state_dict_type(root, StateDictType.FULL_STATE_DICT, FullStateDictConfig(offload_to_cpu=True),
                              FullOptimStateDictConfig(offload_to_cpu=True, rank0_only=False)):
        if state.get("state") and isinstance(next(iter(state["state"])), int):
            state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_NAME, root)
        optimizer.load_state_dict(FSDP.optim_state_dict_to_load(model=root, optim=optimizer, optim_state_dict=state))


def student_state_dict(trainer, attr: str = "student") -> dict | None:
    """Under FSDP, the student's full (unsharded) weights, gathered to rank 0 (every rank must
    call this; other ranks get an empty dict). None when the strategy is not FSDP: the student
    module itself holds its weights."""
    if fsdp_root(trainer) is None:
        return None
    prefix = f"{attr}."
    full = trainer.strategy.lightning_module_state_dict()
    return {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
