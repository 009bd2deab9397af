"""Optional LoRA student (``model.lora.*``), and the frozen step-0 student it gives for free.

With LoRA on, LoRA layers are injected into the student in place (``peft``): it stays the same
``transformers`` model class (``generate``, ``base_model``, the LM head all work as before) and
only the adapter weights train. The step-0 student is then the same model with its adapters
switched off, so ``teacher=hinted teacher.weights=initial`` and ``reference=student`` score with
``AdapterDisabled(student)`` instead of loading a second frozen copy: one copy of the base
weights in memory. (LoRA's ``B`` starts at zero, so base-without-adapter is exactly the step-0
student.)
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch

ADAPTER = "default"


def lora_enabled(model_cfg) -> bool:
    lora = model_cfg.get("lora") if model_cfg is not None else None
    return bool(lora is not None and lora.get("enabled", False))


def apply_lora(model: torch.nn.Module, lora_cfg) -> torch.nn.Module:
    """Inject LoRA layers into ``model`` in place; freeze everything but the adapters."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = lora_cfg.target_modules
    targets = targets if isinstance(targets, str) else list(targets)
    config = LoraConfig(r=int(lora_cfg.r), lora_alpha=float(lora_cfg.alpha), lora_dropout=float(lora_cfg.dropout),
                        target_modules=targets, bias="none", task_type="CAUSAL_LM")
    model = inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def tuner_layers(model: torch.nn.Module) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def has_lora(model) -> bool:
    """Does ``model`` carry LoRA layers? (Checked by parameter names first: no peft import otherwise.)"""
    if not isinstance(model, torch.nn.Module) or not any("lora_" in n for n, _ in model.named_parameters()):
        return False
    return bool(tuner_layers(model))


@contextmanager
def adapters_disabled(model: torch.nn.Module, layers: list | None = None):
    """Run the base model: every LoRA layer bypassed, restored afterwards (also on error)."""
    layers = tuner_layers(model) if layers is None else layers
    before = [m.disable_adapters for m in layers]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m, was_disabled in zip(layers, before):
            m.enable_adapters(not was_disabled)


class _Disabled:
    """A callable that runs ``fn`` with the adapters of ``owner`` switched off."""

    def __init__(self, fn, owner: "AdapterDisabled"):
        self.fn, self.owner = fn, owner

    def __call__(self, *args, **kwargs):
        with adapters_disabled(self.owner.model, self.owner.layers):
            return self.fn(*args, **kwargs)


class AdapterDisabled:
    """The LoRA student's base model (the step-0 student) as a frozen model, sharing its weights.

    It answers what scorers, generation and evaluation ask of a causal LM (``base_model(...)``,
    ``get_output_embeddings()``, ``generate``, ``parameters()``, ``eval``/``train``), and runs every
    forward with the adapters off. It is deliberately not an ``nn.Module``: it owns no
    parameters, so nothing counts, moves, shards or checkpoints the student's weights twice.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.layers = tuner_layers(model)
        if not self.layers:
            raise ValueError("AdapterDisabled needs a model with LoRA layers")

    @property
    def base_model(self):
        return _Disabled(self.model.base_model, self)

    @property
    def gopd_body(self):
        """The body through the sharded student's root unit (``gopd.strategy.body``), adapters off."""
        return _Disabled(getattr(self.model, "gopd_body", self.model.base_model), self)

    def __call__(self, *args, **kwargs):
        return _Disabled(self.model, self)(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return _Disabled(self.model.generate, self)(*args, **kwargs)

    def get_output_embeddings(self):
        return self.model.get_output_embeddings()

    def parameters(self, recurse: bool = True):
        return self.model.parameters(recurse)

    @property
    def training(self) -> bool:
        return self.model.training

    def train(self, mode: bool = True) -> "AdapterDisabled":
        self.model.train(mode)
        return self

    def eval(self) -> "AdapterDisabled":
        return self.train(False)

    def to(self, *args, **kwargs) -> "AdapterDisabled":
        return self  # moves with the student (Lightning moves the student)

    def requires_grad_(self, requires_grad: bool = True) -> "AdapterDisabled":
        return self  # scored under no_grad; the adapters' own flags belong to the student

    def __getattr__(self, name):  # config, device, dtype, generation_config, ...
        return getattr(self.__dict__["model"], name)


def prepare_student(model: torch.nn.Module, model_cfg, *,
                    gradient_checkpointing: bool | None = None) -> torch.nn.Module:
    """LoRA (if ``model.lora.enabled``) and activation checkpointing (``model.gradient_checkpointing``)."""
    if lora_enabled(model_cfg):
        model = apply_lora(model, model_cfg.lora)
    if gradient_checkpointing is None:
        gradient_checkpointing = bool(model_cfg.get("gradient_checkpointing", False))
    if gradient_checkpointing:
        # non-reentrant: works with frozen embeddings (LoRA) and under DDP/FSDP
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def merged_state_dict(model: torch.nn.Module, state: dict | None = None) -> dict[str, torch.Tensor]:
    """The student's weights with every adapter merged in, under the base model's own names
    (a plain checkpoint that loads without peft). The live model is not modified. ``state``: the
    model's full weights when it does not hold them whole (gathered from FSDP shards)."""
    from peft.tuners.lora import LoraLayer

    merged: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and ADAPTER in module.lora_A:
            with torch.no_grad():
                if state is None:
                    base = module.get_base_layer().weight
                    delta = module.get_delta_weight(ADAPTER)
                else:  # lora.Linear's delta (no fan_in_fan_out), from the gathered tensors
                    base = state[f"{name}.base_layer.weight"]
                    a, b = state[f"{name}.lora_A.{ADAPTER}.weight"], state[f"{name}.lora_B.{ADAPTER}.weight"]
                    delta = (b @ a) * module.scaling[ADAPTER]
                merged[f"{name}.weight"] = (base + delta.to(base.dtype)).detach()
    out = {}
    for key, value in (model.state_dict() if state is None else state).items():
        if "lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        out[key] = merged.get(key, value)
    return out


def save_student(model: torch.nn.Module, path: str | Path, state: dict | None = None) -> None:
    """``save_pretrained`` of the trained student; with LoRA, the adapters merged into the weights.
    ``state``: its full weights when the model does not hold them whole (FSDP)."""
    if has_lora(model):
        model.save_pretrained(str(path), state_dict=merged_state_dict(model, state))
    elif state is not None:
        model.save_pretrained(str(path), state_dict=state)
    else:
        model.save_pretrained(str(path))
