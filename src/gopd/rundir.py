"""A run directory belongs to one config and one process, and its records stay true.

- ``WritableOutput`` (a Hydra callback, ``conf/train.yaml``): the run (or sweep) directory must be
  writable before Hydra creates it, opens ``train.log`` in it or loads anything: else one line.
- ``lock``: one process trains in a run directory at a time (an advisory ``flock`` on
  ``<run dir>/.lock``, released by the kernel when the process ends, however it ends).
- ``record_hydra``: ``.hydra/`` (Hydra's config.yaml, hydra.yaml, overrides.yaml) is written by
  gopd once a restart is known to be the same run (``hydra.output_subdir: null`` stops Hydra from
  rewriting it first), so a refused restart leaves the directory's record as it was.
- ``read_summary``: ``summary.json``, where a damaged one reads as "not completed".
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hydra.experimental.callback import Callback

EXIT_RUN_DIR = 4  # the run directory cannot be used: not writable, busy, no usable checkpoint, disk full
LOCK = ".lock"


class RunDirError(Exception):
    """The run directory cannot be used as asked: one line, nothing in it changed."""


def nearest_existing(path: Path) -> Path:
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_problem(directory: Path) -> str | None:
    """None if ``directory`` can be created (or exists) and a file can be written in it; else one line."""
    directory = Path(directory)
    base = nearest_existing(directory)
    if not base.is_dir():
        return f"{directory}: {base} is a file, not a directory"
    try:
        with tempfile.TemporaryFile(dir=base):
            pass
    except OSError as e:
        where = "" if base == directory.expanduser().absolute() else f" (in {base})"
        return f"{directory}: not writable{where}: {e.strerror or e}"
    return None


class WritableOutput(Callback):
    """Hydra callback: stop with one line, before any directory or log file is created, when the
    run or sweep directory cannot be written."""

    def on_run_start(self, config, **kwargs) -> None:
        _refuse_unwritable(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        _refuse_unwritable(config.hydra.sweep.dir, "hydra.sweep.dir")


def _refuse_unwritable(directory: str, key: str) -> None:
    problem = writable_problem(Path(str(directory)))
    if problem:
        print(f"error: {key}: {problem}; choose another directory with {key}=...", file=sys.stderr)
        sys.exit(EXIT_RUN_DIR)


def _global_rank() -> int:
    """The process's rank before any process group exists (Lightning's reading of the launcher's environment)."""
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0) or 0)


@contextmanager
def lock(run_dir: Path):
    """Hold the run directory for this run (rank 0 only: a run's other ranks share it)."""
    if _global_rank() != 0:
        yield
        return
    import fcntl

    path = Path(run_dir) / LOCK
    fh = open(path, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise RunDirError(f"{run_dir} is in use by {holder}: one run per directory; wait for it, or stop it, "
                          f"or give a new run directory") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} on {os.uname().nodename}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # releases the lock


def record_hydra(run_dir: Path, task_cfg, hydra_cfg) -> None:
    """Hydra's three records of a run in ``<run dir>/.hydra/`` (what Hydra writes with an output_subdir)."""
    from omegaconf import OmegaConf

    if _global_rank() != 0:
        return
    out = Path(run_dir) / ".hydra"
    out.mkdir(parents=True, exist_ok=True)
    for name, cfg in (("config.yaml", task_cfg), ("hydra.yaml", hydra_cfg),
                      ("overrides.yaml", hydra_cfg.hydra.overrides.task)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(OmegaConf.to_yaml(cfg))
        os.replace(tmp, out / name)


def read_summary(run_dir: Path) -> tuple[dict | None, str | None]:
    """``(summary, None)``, ``(None, None)`` when there is none, ``(None, problem)`` when it is unreadable."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None, None
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        return None, f"{path} is unreadable ({type(e).__name__}): treated as not completed"
    if not isinstance(summary, dict):
        return None, f"{path} is not a JSON object: treated as not completed"
    return summary, None
