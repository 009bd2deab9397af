"""A run directory belongs to one config and one process; disk faults stop a run with one line,
leave every earlier file intact, and a restart after space is freed resumes."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest

from conftest import MINI, overridden
from faults import one_error_line, snapshot, train

from gopd import checkpoint, integrity, rundir

SHORT = overridden(MINI, "trainer.max_steps=2")


def _mount_tmpfs(where: Path, *options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()})")


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (needs root: skipped with the reason otherwise); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill a disk needs root")
    mounted: list[Path] = []

    def mount(name: str, *options: str) -> Path:
        where = tmp_path / name
        _mount_tmpfs(where, *options)
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def steps_logged(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_a_second_process_in_a_busy_run_directory_is_refused(toy_world_mini, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with rundir.lock(run_dir):  # this process holds it, as a running trainer would
        line = one_error_line(train(run_dir, base=SHORT), 4)
    assert line == (f"error: {run_dir} is in use by process {os.getpid()} on {os.uname().nodename}: one run per "
                    f"directory; wait for it, or stop it, or give a new run directory")
    assert not (run_dir / "metrics.csv").exists()
    proc = train(run_dir, base=SHORT)  # released: the run starts
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_a_restart_with_other_overrides_leaves_the_directory_as_it_was(toy_world_mini, tmp_path):
    run_dir = tmp_path / "run"
    assert train(run_dir, base=SHORT).returncode == 0
    before = snapshot(run_dir, skip=("train.log", ".lock"))
    assert {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml", "run_config.json"} <= set(before)
    line = one_error_line(train(run_dir, "alpha=3", "estimator=full", base=SHORT), 2)
    assert "was started with another config (alpha: 1.0 -> 3; estimator.name: token -> full" in line
    assert snapshot(run_dir, skip=("train.log", ".lock")) == before  # .hydra/ included: it still records the run


@pytest.mark.slow
def test_an_unwritable_run_directory_is_one_line_before_anything_is_created(toy_world_mini, tmp_path, tmpfs):
    read_only = tmpfs("ro", "ro", "size=1m")
    line = one_error_line(train(read_only / "outputs" / "run", base=SHORT), 4)
    assert line.startswith(f"error: hydra.run.dir: {read_only / 'outputs' / 'run'}: not writable (in {read_only}): ")
    assert "Read-only file system" in line
    assert not list(read_only.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("size_mb,resumes_from", [(3, None), (8, "step-000002")])
def test_a_full_disk_stops_with_one_line_and_a_restart_after_freeing_space_resumes(toy_world_mini, tmp_path, tmpfs,
                                                                                   size_mb, resumes_from):
    # a mini checkpoint is ~4.5 MB: 3 MB holds none, 8 MB holds the step-2 one but not step 4's beside it
    disk = tmpfs("disk", f"size={size_mb}m")
    run_dir = disk / "run"
    base = overridden(MINI, "trainer.max_steps=6", "checkpoint.every_n_steps=2")
    line = one_error_line(train(run_dir, base=base), 4)
    assert "cannot write checkpoint" in line and "MiB free on its disk" in line, line
    assert "free space and rerun the same command to resume" in line
    if resumes_from:
        assert f"the last checkpoint is {resumes_from}" in line
        assert integrity.manifest_problem(run_dir / "checkpoints" / resumes_from) is None
    else:
        assert "no checkpoint was written yet" in line and checkpoint.latest(run_dir) is None
    written = steps_logged(run_dir)
    assert written == list(range(written[-1] + 1)) and written[-1] >= 1  # every row before the failure
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))

    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # space freed
    proc = train(run_dir, base=base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if resumes_from:
        assert f"resuming from {run_dir / 'checkpoints' / resumes_from}" in proc.stdout
    else:
        assert "resuming from" not in proc.stdout
    assert steps_logged(run_dir) == list(range(7))
