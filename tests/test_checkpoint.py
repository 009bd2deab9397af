"""Resume never gives up on a good checkpoint and never silently starts again from step 0."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import MINI, overridden
from faults import one_error_line, snapshot, train

from gopd import checkpoint, integrity

RUN = overridden(MINI, "trainer.max_steps=4", "checkpoint.every_n_steps=2")


@pytest.fixture(scope="module")
def finished(toy_world_mini, tmp_path_factory):
    """A 4-step run with checkpoints at steps 2 and 4."""
    run_dir = tmp_path_factory.mktemp("finished")
    proc = train(run_dir, base=RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in checkpoint.step_dirs(run_dir)] == ["step-000004", "step-000002"]
    return run_dir


def preempted_copy(finished: Path, tmp_path: Path) -> Path:
    """The finished run as if it had been stopped after its last checkpoint (so a restart resumes)."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "status": "preempted"}))
    return run_dir


def steps_logged(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def truncate(path: Path, n: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:n])


DAMAGE = {
    "truncated_state": lambda d: truncate(d / "checkpoints" / "step-000004" / "state.pt"),
    "truncated_student": lambda d: truncate(d / "checkpoints" / "step-000004" / "student.safetensors"),
    "missing_state": lambda d: (d / "checkpoints" / "step-000004" / "state.pt").unlink(),
    "last_names_a_deleted_step": lambda d: shutil.rmtree(d / "checkpoints" / "step-000004"),
    "altered_state": lambda d: (d / "checkpoints" / "step-000004" / "state.pt").open("r+b").write(b"\0" * 64),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(finished, tmp_path, damage):
    run_dir = preempted_copy(finished, tmp_path)
    DAMAGE[damage](run_dir)
    intact = snapshot(run_dir / "checkpoints" / "step-000002")
    proc = train(run_dir, base=RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from" in proc.stdout and "step-000002 (step 2)" in proc.stdout
    if damage != "last_names_a_deleted_step":
        assert "checkpoint step-000004:" in proc.stdout and "skipped, resuming from step-000002" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 4
    assert steps_logged(run_dir) == [0, 1, 2, 3, 4]  # steps 3-4 retrained once, nothing doubled or lost
    assert snapshot(run_dir / "checkpoints" / "step-000002") == intact  # the good one kept, untouched
    assert integrity.manifest_problem(run_dir / "checkpoints" / "step-000004") is None  # rewritten whole


@pytest.mark.slow
def test_no_usable_checkpoint_stops_and_deletes_nothing(finished, tmp_path):
    run_dir = preempted_copy(finished, tmp_path)
    truncate(run_dir / "checkpoints" / "step-000004" / "state.pt")
    truncate(run_dir / "checkpoints" / "step-000002" / "student.safetensors")
    before = snapshot(run_dir, skip=("train.log", ".lock"))
    line = one_error_line(train(run_dir, base=RUN), 4)
    assert line.startswith(f"error: no usable checkpoint in {run_dir / 'checkpoints'} (step-000004: ")
    assert "nothing was deleted" in line
    assert snapshot(run_dir, skip=("train.log", ".lock")) == before


@pytest.mark.slow
def test_a_corrupt_summary_reads_as_not_completed(finished, tmp_path):
    run_dir = preempted_copy(finished, tmp_path)
    (run_dir / "summary.json").write_text('{"status": "compl')
    proc = train(run_dir, base=RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "summary.json is unreadable (JSONDecodeError): treated as not completed" in proc.stdout
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"


def test_pruning_keeps_intact_checkpoints_and_leaves_newer_damaged_ones(tmp_path):
    model = torch.nn.Linear(2, 2)
    for step in (2, 4, 6):
        checkpoint.save(tmp_path, step, model, [], {"progress": {"batches": step}})
    assert [p.name for p in checkpoint.step_dirs(tmp_path)] == ["step-000006", "step-000004"]
    truncate(tmp_path / "checkpoints" / "step-000006" / "state.pt")  # a resume falls back to step 4 ...
    path, skipped = checkpoint.usable(tmp_path)
    assert path.name == "step-000004" and skipped[0].startswith("step-000006: ")
    checkpoint.save(tmp_path, 5, model, [], {"progress": {"batches": 5}})  # ... and saves step 5
    assert [p.name for p in checkpoint.step_dirs(tmp_path)] == ["step-000006", "step-000005", "step-000004"]
    checkpoint.save(tmp_path, 6, model, [], {"progress": {"batches": 6}})  # the damaged copy is replaced whole
    assert [p.name for p in checkpoint.step_dirs(tmp_path)] == ["step-000006", "step-000005"]
    assert checkpoint.usable(tmp_path) == (tmp_path / "checkpoints" / "step-000006", [])


def test_a_failed_checkpoint_write_leaves_the_older_ones_and_no_partial_directory(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    checkpoint.save(tmp_path, 2, model, [], {"progress": {"batches": 2}})
    before = snapshot(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    with pytest.raises(checkpoint.CheckpointError, match=r"cannot write checkpoint .*step-000004: .*No space left"):
        checkpoint.save(tmp_path, 4, model, [], {"progress": {"batches": 4}})
    assert snapshot(tmp_path) == before
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
