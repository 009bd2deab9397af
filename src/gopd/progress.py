"""Progress in training steps, not epochs, and the run's last words.

``StepProgress`` writes one plain line every N steps to the ``gopd`` log (the console and
``train.log``: no ANSI codes in files or pipes), and on a terminal also shows a live bar with the
same fields: step/total, steps/s, ETA, the mean reward since the last line, and the latest
held-out accuracy with the step it was measured at. ``end_block`` is what the runner prints when
a run ends: the accuracy from start to end (and the teacher's), the time, the run directory and
the command that uploads an offline W&B run.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import lightning as L

log = logging.getLogger("gopd")


def clock(seconds: float) -> str:
    """``H:MM:SS``; ``-:--:--`` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return "-:--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class StepProgress(L.Callback):
    """A plain progress line every ``every_n_steps`` (default: every 5% of the run) and, with
    ``bar`` on a terminal, a live bar (rank 0 only)."""

    def __init__(self, every_n_steps: int | None = None, bar: bool = True):
        self.every = every_n_steps
        self.bar = bar
        self._live = None
        self._rewards: list[float] = []

    # -------------------------------------------------------------------------------- fields
    def _fields(self, trainer, module) -> dict:
        from gopd.callbacks import bookkeeping

        done = module.batches - self.first
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 and done > 0 else math.nan
        left = (module.max_steps - module.batches) / rate if rate > 0 else math.nan
        reward = sum(self._rewards) / len(self._rewards) if self._rewards else math.nan
        last = bookkeeping(trainer).last_evaluation
        acc = "n/a" if last is None else f"{last[1]:.3f} @ step {last[0]}"
        return {"step": module.batches, "total": module.max_steps, "rate": rate, "eta": left, "reward": reward,
                "acc": acc}

    def line(self, f: dict) -> str:
        pct = 100 * f["step"] / max(f["total"], 1)
        return (f"step {f['step']}/{f['total']} ({pct:.0f}%) | {f['rate']:.2f} steps/s | ETA {clock(f['eta'])} | "
                f"reward {f['reward']:.3f} | eval acc {f['acc']}")

    # ------------------------------------------------------------------------------ callbacks
    def on_train_start(self, trainer, module) -> None:
        self.t0, self.first = time.perf_counter(), module.batches
        self.period = self.every or max(1, module.max_steps // 20)
        if self.bar and trainer.is_global_zero and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            self._live = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                                  TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=True)
            self._live.start()
            self._task = self._live.add_task("train", total=module.max_steps, completed=module.batches, info="")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        record = (outputs or {}).get("record")
        if record is None:
            return
        self._rewards.append(record.metrics.get("train/reward", math.nan))
        f = self._fields(trainer, module)
        if self._live is not None:
            info = (f"{f['rate']:.2f} steps/s  ETA {clock(f['eta'])}  reward {f['reward']:.3f}  "
                    f"eval acc {f['acc']}")
            self._live.update(self._task, completed=f["step"], info=info)
        if trainer.is_global_zero and (f["step"] % self.period == 0 or f["step"] >= f["total"]):
            log.info(self.line(f))
            self._rewards = []

    def on_train_end(self, trainer, module) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


def end_block(summary: dict, run_dir: Path) -> list[str]:
    """The lines a finished (or stopped) run ends with."""
    def acc(key):
        v = summary.get(key)
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

    wall = summary.get("wall_s") or 0.0
    steps = summary.get("steps", 0)
    lines = [f"run {summary.get('status', '?')}: {steps} steps in {clock(wall)}",
             f"  held-out accuracy {acc('eval/accuracy_initial')} -> {acc('eval/accuracy_final')}"
             f" (teacher {acc('teacher/accuracy')}; gap closed {acc('eval/gap_closed')})",
             f"  run directory: {run_dir}"]
    offline = sorted(Path(run_dir).glob("wandb/offline-run-*"))
    if offline:
        lines.append(f"  W&B (offline): wandb sync {Path(run_dir) / 'wandb' / 'offline-run-*'}")
    return lines
