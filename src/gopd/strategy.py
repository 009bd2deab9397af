"""Lightning strategies for multi-process runs (``trainer=ddp`` / ``trainer=fsdp``) and the few
places where the training step must know its student is sharded.

``trainer=fsdp`` is FSDP2 (``torch.distributed.fsdp.fully_shard``) through Lightning's
``ModelParallelStrategy``: data parallelism over every rank, no tensor parallelism. The module
shards itself in ``configure_model`` (``shard``): one FSDP unit per decoder layer (any module
class whose name ends in ``DecoderLayer``: ``Qwen3DecoderLayer``, ``Olmo3DecoderLayer``, ...) and
one for the rest (embeddings, final norm, LM head), so one config serves every architecture.
Parameters are DTensors; a unit all-gathers its weights in its own forward, so evaluation and
``generate`` need no special context (only the same number of forward calls on every rank:
``synced_generate``). Unlike FSDP1, FSDP2 runs on CPU ranks (gloo): the tests shard on 2 CPU
processes.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def is_layer(module: torch.nn.Module, suffix: str = "DecoderLayer") -> bool:
    return type(module).__name__.endswith(suffix)


@dataclass(frozen=True)
class Sharding:
    """How ``trainer=fsdp`` shards a model (the strategy node's keys)."""

    mixed_precision: str | None = "bfloat16"  # dtype of the gathered params in compute; gradients reduce in float32
    reshard_after_forward: bool = True        # free gathered weights after each unit's forward (ZeRO-3); false = ZeRO-2
    activation_checkpointing: bool = True     # recompute each decoder layer in backward
    layer_suffix: str = "DecoderLayer"        # FSDP unit = every module whose class name ends with this
    cpu_offload: bool = False                 # sharded params, gradients and optimizer state in host memory

    def apply(self, model: torch.nn.Module, mesh) -> torch.nn.Module:
        """``fully_shard`` each decoder layer, then the model itself (its remaining parameters).

        The scorers run the body (``base_model``) and the LM head by chunks, not the model's
        ``forward``: ``body`` is registered as a forward of the root unit, so its weights (embeddings,
        final norm, LM head) are gathered there and stay gathered until backward (the root does
        not reshard after forward)."""
        from torch.distributed.fsdp import (CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard,
                                            register_fsdp_forward_method)

        kw = {"mesh": mesh, "reshard_after_forward": self.reshard_after_forward}
        if self.mixed_precision is not None:
            kw["mp_policy"] = MixedPrecisionPolicy(param_dtype=DTYPES[self.mixed_precision], reduce_dtype=torch.float32)
        if self.cpu_offload:
            kw["offload_policy"] = CPUOffloadPolicy()
        for layer in [m for m in model.modules() if is_layer(m, self.layer_suffix)]:
            fully_shard(layer, **kw)
        fully_shard(model, **(kw | {"reshard_after_forward": False}))
        model.gopd_body = types.MethodType(_body, model)
        register_fsdp_forward_method(model, "gopd_body")
        return model


def _body(model, **inputs):
    return model.base_model(**inputs)


def body(model, **inputs):
    """The transformer body's output (``last_hidden_state``), through the root unit's forward hooks
    when the model is sharded."""
    return getattr(model, "gopd_body", model.base_model)(**inputs)


def fsdp(mixed_precision: str | None = "bfloat16", reshard_after_forward: bool = True,
         activation_checkpointing: bool = True, layer_suffix: str = "DecoderLayer", cpu_offload: bool = False,
         **kwargs):
    """``trainer=fsdp``: an FSDP2 strategy carrying its ``Sharding`` (``kwargs``: ModelParallelStrategy's)."""
    return fsdp2_strategy_class()(Sharding(mixed_precision, reshard_after_forward, activation_checkpointing,
                                           layer_suffix, cpu_offload), **kwargs)


@functools.cache
def fsdp2_strategy_class():
    """Built on first use: importing Lightning's strategies costs seconds, and the config checks
    import this module."""
    from lightning.pytorch.strategies import ModelParallelStrategy

    class FSDP2Strategy(ModelParallelStrategy):
        """Lightning's FSDP2 strategy with every rank in the data-parallel (sharding) dimension."""

        def __init__(self, sharding: Sharding, **kwargs):
            kwargs.setdefault("save_distributed_checkpoint", False)  # gopd saves full weights itself
            super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)
            self.sharding = sharding

        def setup_environment(self) -> None:
            self._data_parallel_size = self.num_nodes * self.num_processes
            super().setup_environment()

    return FSDP2Strategy


def build(strategy):
    """``trainer.strategy`` as composed: a name (``auto``, ``ddp``) or a ``_target_`` node."""
    if isinstance(strategy, dict) and "_target_" in strategy:
        from hydra.utils import instantiate

        return instantiate(strategy, _convert_="all")
    return strategy


def multi_process(trainer_cfg) -> bool:
    """Will the trainer run several ranks (devices per node > 1, or several nodes)?"""
    devices, nodes = trainer_cfg.get("devices", 1), trainer_cfg.get("num_nodes", 1)
    if devices == "auto":  # as many as the machine has: maybe several
        return True
    if isinstance(devices, str) and devices.strip() != "-1":
        devices = [d for d in devices.split(",") if d.strip()]
    many = devices == -1 or devices == "-1" or (isinstance(devices, int) and devices > 1) or \
        (isinstance(devices, (list, tuple)) and len(devices) > 1)
    return many or nodes > 1


def uses_fsdp(trainer_cfg) -> bool:
    s = trainer_cfg.get("strategy")
    return s is not None and not isinstance(s, str) and str(s.get("_target_", "")).endswith(".fsdp")


def wants_activation_checkpointing(trainer_cfg) -> bool:
    """``trainer=fsdp`` asks for activation checkpointing of each decoder layer (HF's own, so the
    parameter names, which checkpoints and the vLLM sync use, stay the model's)."""
    return uses_fsdp(trainer_cfg) and bool(trainer_cfg.strategy.get("activation_checkpointing", True))


def sharding(trainer) -> Sharding | None:
    """The running trainer's ``Sharding``, or None when its strategy does not shard."""
    return getattr(getattr(trainer, "strategy", None), "sharding", None)


def shard(trainer, models) -> bool:
    """In ``configure_model``: shard each model over the data-parallel ranks; False without FSDP."""
    plan = sharding(trainer)
    if plan is None:
        return False
    mesh = trainer.strategy.device_mesh["data_parallel"]
    for m in models:
        plan.apply(m, mesh)
    return True


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def reshard(model: torch.nn.Module) -> None:
    """Free the gathered root weights a forward outside training left behind (the root unit does not
    reshard after forward; backward would): generation, evaluation, a scorer's pass. Also makes
    ``named_parameters`` the sharded ones again, which the state-dict functions need."""
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        model.reshard()


def _full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def clip_grad_norm(module: torch.nn.Module, max_norm: float) -> float:
    """Total gradient norm over every shard, clipped (DTensor gradients reduce across ranks)."""
    return float(_full(torch.nn.utils.clip_grad_norm_([p for p in module.parameters() if p.grad is not None],
                                                       max_norm)))


def optimizer_state(module: torch.nn.Module, optimizer) -> dict:
    """The optimizer's full state (gathered under FSDP: every rank must call this; rank 0 gets it)."""
    if not is_sharded(module):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    reshard(module)
    return get_optimizer_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(module: torch.nn.Module, optimizer, state: dict) -> None:
    """Load a full optimizer state saved by ``optimizer_state`` (each rank keeps its shard)."""
    if not is_sharded(module):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    reshard(module)
    set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))


def full_state_dict(module: torch.nn.Module) -> dict | None:
    """A sharded model's full weights on CPU, gathered to rank 0 (every rank must call this; the
    others get an empty dict). None when the model is not sharded: it holds its weights itself."""
    if not is_sharded(module):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    reshard(module)
    full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    aliases = tied_aliases(module)
    return {k: v for k, v in full.items() if k not in aliases}


def tied_aliases(module: torch.nn.Module) -> set[str]:
    """Names of parameters that are another name's tensor (a tied LM head): saved once, as a plain
    checkpoint saves them (the gathered copies no longer share storage, so the savers cannot tell)."""
    first: dict[int, str] = {}
    aliases = set()
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases.add(name)
        else:
            first[id(p)] = name
    return aliases
