"""Resumable checkpoints of a run, written atomically, loaded without executing code.

Layout under ``<run dir>/checkpoints/``:

    step-000120/student.safetensors   the trainable student (safetensors: no pickled code)
    step-000120/ema0.safetensors      EMA teachers, if any
    step-000120/state.pt              optimizer, scheduler, RNG states, progress, metrics rows
    step-000120/manifest.json         every file's size and SHA-256, recorded when it was written
    last                              the name of the newest complete step directory

A step directory is written under a temporary name and renamed when complete; ``last`` is then
replaced atomically (``os.replace``). A kill at any point leaves a complete checkpoint; one
that cannot be written (a full disk) leaves nothing half-written behind and the older ones as
they were. A resume takes the newest step directory whose files match its manifest
(``usable``): a damaged newest checkpoint falls back to the one before it, never to step 0.
Pruning keeps the newest ``KEEP`` intact checkpoints and never touches one newer than the one
just written. Frozen teachers and references are not copied: they are reloaded from their
paths. ``state.pt`` holds only tensors and plain Python values, loaded with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_file, save_model

from gopd import integrity
from gopd.schema import first_line

KEEP = 2  # complete checkpoints kept (the newest and one before it)


def checkpoint_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir: Path, step: int) -> Path:
    """Where checkpoint ``step`` is (or will be) saved."""
    return checkpoint_root(run_dir) / f"step-{step:06d}"


class CheckpointError(Exception):
    """A checkpoint that cannot be written or read: one line, naming the file."""


def step_dirs(run_dir: Path) -> list[Path]:
    """The run's step directories, newest first (temporary ones excluded: they were never complete)."""
    return sorted((p for p in checkpoint_root(run_dir).glob("step-*") if p.is_dir()), reverse=True)


def latest(run_dir: Path) -> Path | None:
    """The newest step directory with its state written (no integrity check: see ``usable``), or None."""
    return next((p for p in step_dirs(run_dir) if (p / "state.pt").is_file()), None)


def usable(run_dir: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose files match its manifest, and a line for each newer one skipped."""
    skipped = []
    for path in step_dirs(run_dir):
        problem = ("state.pt: missing" if not (path / "state.pt").is_file()
                   else integrity.manifest_problem(path))
        if problem is None:
            return path, skipped
        skipped.append(f"{path.name}: {problem}")
    return None, skipped


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
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write(tmp, student, ema_models, state, student_state, ema_states)
    except Exception as e:  # a full disk surfaces as OSError, SafetensorError or torch's RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"cannot write checkpoint {final}: {first_line(e)} ({_free(root)}); the older "
                              f"checkpoints are intact") from e
    if final.exists():  # the same step written before (a damaged copy a resume skipped)
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer_tmp = root / f".last-{os.getpid()}"
    try:
        pointer_tmp.write_text(final.name + "\n")
        os.replace(pointer_tmp, root / "last")
    except OSError:  # ``last`` is informational: resume reads the step directories themselves
        pointer_tmp.unlink(missing_ok=True)
    _prune(root, final, keep=KEEP)
    return final


def _write(directory: Path, student, ema_models, state, student_state, ema_states) -> None:
    ema_states = ema_states or [None] * len(ema_models)
    for name, model, weights in [("student", student, student_state),
                                 *((f"ema{i}", m, w) for i, (m, w) in enumerate(zip(ema_models, ema_states)))]:
        if weights is None:
            save_model(model, str(directory / f"{name}.safetensors"))
        else:
            save_file(_unshared(weights), str(directory / f"{name}.safetensors"))
    torch.save(state, directory / "state.pt")
    _fsync_dir(directory)
    integrity.write_manifest(directory)


def _free(directory: Path) -> str:
    """The disk's free space, the usual reason a write fails (torch.save says only "file write failed")."""
    try:
        return f"{shutil.disk_usage(directory).free / 2**20:.1f} MiB free on its disk"
    except OSError:
        return "free space unknown"


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
    """Load weights into the given modules; return the rest of the state (no code executed).
    A file that does not load is a ``CheckpointError`` naming it."""
    files = [("student.safetensors", student), *((f"ema{i}.safetensors", m) for i, m in enumerate(ema_models))]
    for name, model in files:
        try:
            load_model(model, str(path / name))
        except Exception as e:  # SafetensorError, missing or mismatched tensors
            raise CheckpointError(f"{path / name}: {first_line(e)}") from e
    try:
        return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated zip, an unpicklable value
        raise CheckpointError(f"{path / 'state.pt'}: {first_line(e)}") from e


def _fsync_dir(directory: Path) -> None:
    for f in directory.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _prune(root: Path, written: Path, keep: int) -> None:
    """Keep ``written`` and the ``keep - 1`` newest intact checkpoints before it (sizes checked, not
    hashes: a save stays cheap); delete the older ones. Newer ones (damaged copies a resume
    skipped) are left for the run to overwrite when it reaches their step."""
    older = [p for p in step_dirs(root.parent) if p.name < written.name]
    intact = [p for p in older if (p / "state.pt").is_file() and integrity.manifest_problem(p, hashes=False) is None]
    kept = set(intact[: keep - 1])
    for old in older:
        if old not in kept:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):  # a save that a kill interrupted
        if not stale.name.endswith(f"-{os.getpid()}"):
            shutil.rmtree(stale, ignore_errors=True)
