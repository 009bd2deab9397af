"""Checkpoints: loading, naming, and a pool that loads each distinct frozen model once."""

from __future__ import annotations

from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def is_local(path: str) -> bool:
    return Path(path).expanduser().exists()


def checkpoint_key(path: str) -> str:
    """One name per checkpoint: a local path resolved (``./ckpt`` and ``/abs/ckpt`` are one), a hub name as is."""
    return str(Path(path).expanduser().resolve()) if is_local(path) else path


def looks_like_local_path(path: str) -> bool:
    """A path the user meant as a directory (absolute, relative or ~), not a hub name ``org/name``."""
    return path.startswith(("/", "./", "../", "~")) or path.count("/") != 1


def load_tokenizer(path: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, dtype: str = "float32", *, trainable: bool = False, trust_remote_code: bool = False):
    """A causal LM from a directory or hub name; frozen and in eval mode unless ``trainable``.

    Weights load from safetensors only (a pickled ``pytorch_model.bin`` can run code when loaded:
    ``gopd.integrity`` refuses it with how to convert); repository code runs only when
    ``trust_remote_code`` (the config key ``model.trust_remote_code``) says so.
    """
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"model dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code,
                                                 use_safetensors=True)
    if not trainable:
        model.eval().requires_grad_(False)
    return model


class ModelPool:
    """Frozen models keyed by resolved path: a checkpoint used twice (the step-0 student as both
    hinted teacher and reference, two domains sharing an expert) is loaded once."""

    def __init__(self, dtype: str = "float32", device: torch.device | str = "cpu", *, trust_remote_code: bool = False):
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.device = torch.device(device)
        self._models: dict[str, torch.nn.Module] = {}

    def get(self, path: str) -> torch.nn.Module:
        key = checkpoint_key(path)
        if key not in self._models:
            self._models[key] = load_model(path, self.dtype, trust_remote_code=self.trust_remote_code).to(self.device)
        return self._models[key]

    def models(self) -> list[torch.nn.Module]:
        return list(self._models.values())

    def __len__(self) -> int:
        return len(self._models)
