"""Tiny ``Qwen2ForCausalLM`` models for the toy world (head_dim 64, so vLLM's CPU backend serves them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2  # head_dim = hidden_size / num_heads must be 64
    num_kv_heads: int = 2
    intermediate_size: int = 384
    max_position_embeddings: int = 256
    rope_theta: float = 10000.0

    def as_dict(self) -> dict:
        return asdict(self)


def qwen2_config(spec: ModelSpec, tokenizer):
    from transformers import Qwen2Config

    head_dim = spec.hidden_size // spec.num_heads
    if head_dim * spec.num_heads != spec.hidden_size or head_dim != 64:
        raise ValueError(f"toy models need head_dim 64 (vLLM CPU); got hidden {spec.hidden_size} / {spec.num_heads} heads")
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        head_dim=head_dim,
        max_position_embeddings=spec.max_position_embeddings,
        rope_theta=spec.rope_theta,
        tie_word_embeddings=True,
        use_sliding_window=False,
        attention_dropout=0.0,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )


def new_model(spec: ModelSpec, tokenizer, seed: int):
    """A freshly initialised float32 model; the init depends only on ``seed``."""
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(qwen2_config(spec, tokenizer)).float()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def save_checkpoint(model, tokenizer, path: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """``save_pretrained`` (safetensors) plus the tokenizer, so the directory is self-contained.

    With ``tokenizer_dir`` its files are copied verbatim (the saved tokenizer, byte for byte);
    otherwise ``tokenizer.save_pretrained`` writes them.
    """
    import shutil

    path = Path(path)
    model.save_pretrained(str(path), safe_serialization=True)
    if tokenizer_dir is not None and Path(tokenizer_dir).is_dir():
        for f in sorted(Path(tokenizer_dir).iterdir()):
            if f.is_file():
                shutil.copyfile(f, path / f.name)
    else:
        tokenizer.save_pretrained(str(path))
    return path


def load_checkpoint(path: str | Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32")
    tok = AutoTokenizer.from_pretrained(str(path))
    return model, tok
