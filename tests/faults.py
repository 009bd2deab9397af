"""Running the trainer as a user would on a damaged run directory, file or disk, and what a fault
must leave: one line on stderr, an exit code, no traceback, the earlier files as they were."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from conftest import MINI, overridden, train_cmd

def env() -> dict:
    """The test session's environment (its GOPD_CACHE, set by a fixture) for a quiet one-thread run."""
    return {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def train(run_dir: Path, *overrides: str, base=MINI, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = train_cmd(*overridden(base, *overrides), f"hydra.run.dir={run_dir}")
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess, code: int) -> str:
    """The single ``error:`` line a refused run prints (and nothing else on stderr)."""
    assert proc.returncode == code, proc.stderr[-3000:] + proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def snapshot(directory: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file under ``directory`` (``skip``: names a run rewrites anyway, e.g. train.log)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file() and p.name not in skip}
