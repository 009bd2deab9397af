"""Resumable checkpoints of a run, written atomically, loaded without executing code.

Layout under ``<run dir>/checkpoints/``:

    step-000120/student.safetensors   the trainable student (safetensors: no pickled code)
    step-000120/ema0.safetensors      EMA teachers, if any
    step-000120/state.pt              optimizer, scheduler, RNG states, progress, metrics rows
    last                              the name of the newest complete step directory

A step directory is written under a temporary name and renamed when complete; ``last`` is then
replaced atomically (``os.replace``). A kill at any point leaves ``last`` naming a complete
checkpoint. Frozen teachers and references are not copied: they are reloaded from their paths.
``state.pt`` holds only tensors and plain Python values, loaded with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_file, save_model

KEEP = 2  # complete checkpoints kept (the newest and one before it)


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: Path, step: int) -> Path:
    """Where checkpoint ``step`` is (or will be) saved."""
    return checkpoint_root(run_dir) / f"step-{step:06d}"


def latest(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    pointer = checkpoint_root(run_dir) / "last"
    if not pointer.is_file():
        return None
    path = checkpoint_root(run_dir) / pointer.read_text().strip()
    return path if (path / "state.pt").is_file() else None


def merge_state(*parts: dict) -> dict:
    """One checkpoint state from its owners' parts (module, callbacks, loggers); ``progress`` entries merge."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            out[key] = {**out.get(key, {}), **value} if key == "progress" else value
    return out


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _plain_python_state(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain_python_state(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def save(run_dir: Path, step: int, student: torch.nn.Module, ema_models: list[torch.nn.Module], state: dict,
         *, student_state: dict | None = None, ema_states: list[dict | None] | None = None) -> Path:
    """Write checkpoint ``step`` atomically and point ``last`` at it; prune older ones.

    ``student_state`` / ``ema_states``: a model's weights when the module does not hold them whole
    (gathered from FSDP shards; None for one that does); else the module itself is saved."""
    final = step_dir(run_dir, step)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    ema_states = ema_states or [None] * len(ema_models)
    for name, model, weights in [("student", student, student_state),
                                 *((f"ema{i}", m, w) for i, (m, w) in enumerate(zip(ema_models, ema_states)))]:
        if weights is None:
            save_model(model, str(tmp / f"{name}.safetensors"))
        else:
            save_file(_unshared(weights), str(tmp / f"{name}.safetensors"))
    torch.save(state, tmp / "state.pt")
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / f".last-{os.getpid()}"
    pointer_tmp.write_text(final.name + "\n")
    os.replace(pointer_tmp, root / "last")
    _prune(root, keep=KEEP)
    return final


def _unshared(tensors: dict) -> dict:
    """Contiguous CPU tensors, tied weights (one storage under two names) copied apart: safetensors
    refuses shared storage; ``load_model`` ties them again."""
    out, seen = {}, set()
    for k, v in tensors.items():
        v = v.detach().to("cpu").contiguous()
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def load(path: Path, student: torch.nn.Module, ema_models: list[torch.nn.Module]) -> dict:
    """Load weights into the given modules; return the rest of the state (no code executed)."""
    load_model(student, str(path / "student.safetensors"))
    for i, m in enumerate(ema_models):
        load_model(m, str(path / f"ema{i}.safetensors"))
    return torch.load(path / "state.pt", map_location="cpu", weights_only=True)


def _fsync_dir(directory: Path) -> None:
    for f in directory.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _prune(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        if not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)
