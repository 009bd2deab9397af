"""The toy world: a synthetic, verifiable two-domain math task, a ByteLevel BPE tokenizer and
tiny ``Qwen2ForCausalLM`` checkpoints (student, teacher, teacher_base, one expert per domain),
built deterministically on first use and cached (see ``gopd.toy.build``).

    from gopd.toy import ensure_toy_world, resolve_path
    root = ensure_toy_world()                 # ~/.cache/gopd/toy/full-<hash>/ (built if missing)
    resolve_path("toy://student")             # -> ".../full-<hash>/student"
    resolve_path("Qwen/Qwen3-1.7B")           # anything else is returned unchanged

Imports here are light (no torch); the heavy work happens inside the functions.
"""

from __future__ import annotations

from gopd.toy.build import (
    RECIPES,
    artefact_dir,
    cache_root,
    ensure_toy_world,
    get_recipe,
    load_manifest,
    recipe_hash,
    resolve_path,
)
from gopd.toy.data import DOMAINS, HINT_FIELDS, make_dataset, make_row, make_rows

TOY_SCHEME = "toy://"


def is_toy_uri(path: object) -> bool:
    return isinstance(path, str) and path.startswith(TOY_SCHEME)


__all__ = [
    "DOMAINS",
    "HINT_FIELDS",
    "RECIPES",
    "TOY_SCHEME",
    "artefact_dir",
    "cache_root",
    "ensure_toy_world",
    "get_recipe",
    "is_toy_uri",
    "load_manifest",
    "make_dataset",
    "make_row",
    "make_rows",
    "recipe_hash",
    "resolve_path",
]
