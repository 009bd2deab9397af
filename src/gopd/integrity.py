"""Is a file what it claims to be, before anything loads it?

- ``safetensors_problem``: a safetensors file's header and size agree (a truncated copy, or
  another format under the name, is caught from 8 + header bytes, without reading the tensors).
- ``weights_problem``: a Hugging Face checkpoint directory holds loadable safetensors weights (and
  every shard its index names); a pickle-only one (``pytorch_model.bin``) is refused, never
  unpickled: unpickling can run code.
- ``write_manifest`` / ``manifest_problem``: sizes and SHA-256 of a directory's files recorded when
  it is written, checked before it is read again (a resumable checkpoint).

Each ``*_problem`` returns None or one line naming the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

MANIFEST = "manifest.json"
MAX_HEADER = 100 * 2**20  # safetensors' own cap on the JSON header
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "model.ckpt")
CONVERT = ("convert it once where the code is trusted: AutoModelForCausalLM.from_pretrained(DIR)"
           ".save_pretrained(DIR, safe_serialization=True)")


def safetensors_problem(path: Path) -> str | None:
    """None if ``path`` is a complete safetensors file (header parses, tensors end at the file's end)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path}: truncated ({size} bytes; a safetensors file starts with an 8-byte header length)"
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, size - 8):
                return f"{path}: truncated or not a safetensors file (header of {n} bytes in a file of {size})"
            header = json.loads(f.read(n))
    except OSError as e:
        return f"{path}: unreadable ({e.strerror or e})"
    except (ValueError, UnicodeDecodeError):
        return f"{path}: not a safetensors file (its header is not JSON)"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    expected = 8 + n + max(ends, default=0)
    if expected != size:
        return f"{path}: truncated ({size} bytes, its header describes {expected})"
    return None


def weights_problem(directory: Path) -> str | None:
    """None if a checkpoint directory's weights are complete safetensors files."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            return f"{index}: unreadable shard index ({type(e).__name__})"
        files = [directory / s for s in shards]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            return f"{index}: names shard {missing[0]}, which is not in {directory}"
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        pickled = [name for name in PICKLE_WEIGHTS if (directory / name).is_file()]
        if pickled:
            return (f"{directory}: holds only pickled weights ({pickled[0]}), which gopd never loads (unpickling "
                    f"can run code); {CONVERT}")
        return f"{directory}: no model weights (model.safetensors) in it"
    return next((p for p in map(safetensors_problem, files) if p), None)


def sha256(path: Path, chunk: int = 2**22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(directory: Path, *, hashes: bool = True) -> dict:
    """Record every file's size (and SHA-256) in ``directory/manifest.json``, flushed to disk."""
    directory = Path(directory)
    entries = {str(p.relative_to(directory)): {"size": p.stat().st_size, **({"sha256": sha256(p)} if hashes else {})}
               for p in _files(directory)}
    path = directory / MANIFEST
    with open(path, "w") as f:
        json.dump({"files": entries}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    return entries


def manifest_problem(directory: Path, *, hashes: bool = True) -> str | None:
    """None if every file ``manifest.json`` lists is there with its recorded size (and hash).

    A directory without a manifest (written before manifests existed) is judged by its files
    alone: every safetensors file must be complete."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        return next((p for p in map(safetensors_problem, sorted(directory.glob("*.safetensors"))) if p), None)
    try:
        entries = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{path}: unreadable"
    for name, want in sorted(entries.items()):
        f = directory / name
        if not f.is_file():
            return f"{f}: missing"
        size = f.stat().st_size
        if size != want["size"]:
            return f"{f}: {size} bytes, {want['size']} when written"
        if hashes and "sha256" in want and sha256(f) != want["sha256"]:
            return f"{f}: contents changed since it was written (SHA-256 differs)"
    return None
