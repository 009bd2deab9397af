"""gopd.progress: the plain progress line and the end-of-run block (a run prints both: see
tests/test_train.py::test_a_run_prints_progress_lines_and_an_end_block_once)."""

import math

from gopd.progress import StepProgress, clock, end_block


def test_clock_and_the_progress_line():
    assert clock(0) == "0:00:00" and clock(3725.4) == "1:02:05" and clock(math.nan) == "-:--:--"
    line = StepProgress().line({"step": 200, "total": 1000, "rate": 3.43, "eta": 233.2, "reward": 0.15625,
                                "acc": "0.174 @ step 200"})
    assert line == "step 200/1000 (20%) | 3.43 steps/s | ETA 0:03:53 | reward 0.156 | eval acc 0.174 @ step 200"


def test_end_block_names_accuracy_time_directory_and_wandb(tmp_path):
    summary = {"status": "completed", "steps": 1000, "wall_s": 290.0, "eval/accuracy_initial": 0.104,
               "eval/accuracy_final": 0.188, "teacher/accuracy": 0.682, "eval/gap_closed": 0.145}
    assert end_block(summary, tmp_path) == [
        "run completed: 1000 steps in 0:04:50",
        "  held-out accuracy 0.104 -> 0.188 (teacher 0.682; gap closed 0.145)",
        f"  run directory: {tmp_path}"]
    (tmp_path / "wandb" / "offline-run-x").mkdir(parents=True)
    assert end_block({"status": "preempted", "steps": 3}, tmp_path)[1:] == [
        "  held-out accuracy n/a -> n/a (teacher n/a; gap closed n/a)", f"  run directory: {tmp_path}",
        f"  W&B (offline): wandb sync {tmp_path}/wandb/offline-run-*"]
