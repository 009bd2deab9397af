"""Lightning callbacks of a run (``conf/callbacks/``), in the order they act after each step:

    Bookkeeping    counters, the run summary, the wall clock; writes each step's metrics to the
                   loggers (every ``trainer.log_every_n_steps`` steps, as Lightning logs)
    Evaluation     held-out greedy evaluation at the start, on a schedule and at the end
    Checkpointing  resumable checkpoints on a schedule, at the end and on stop signals
"""

from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L

from gopd import checkpoint
from gopd.distributed import any_rank, reduce_metrics

log = logging.getLogger("gopd")

# Per-step metrics (README, "Run outputs"), in the order of metrics.csv's columns. A run logs those
# that apply to its config: none of opd/* under pure GRPO, no grpo/* or mix/* without GRPO, no
# opd/ref_kl without a reference (alpha = 1), rather than a column of nan.
STEP_METRICS = (
    "train/reward", "train/response_len", "train/prompt_len", "train/loss", "train/grad_norm",
    "opd/pos_mass", "opd/neg_mass", "opd/pos_frac", "opd/teacher_kl", "opd/ref_kl", "opd/max_shock",
    "grpo/zero_std_frac", "mix/sign_agreement",
    "perf/tokens_per_s", "perf/rollout_s", "perf/score_s", "perf/update_s",
)
SHAPE_PREFIXES = ("train/response_len", "search/")  # summarised first and last in summary.json (gopd.responses)


class NonFiniteError(RuntimeError):
    """Too many consecutive steps had non-finite values; the message names which."""


@dataclass
class StepRecord:
    """What one training step reports (``training_step`` returns ``{"record": StepRecord}``)."""

    step: int                     # the step's index (0-based)
    metrics: dict                 # this rank's metrics, train/skipped_steps not yet filled in
    tokens: int                   # completion tokens this rank sampled
    all_tokens: int               # completion tokens all ranks sampled
    seconds: float                # time inside the step
    non_finite: str | None = None  # what was non-finite when the update was skipped


def bookkeeping(trainer) -> "Bookkeeping":
    for cb in trainer.callbacks:
        if isinstance(cb, Bookkeeping):
            return cb
    raise RuntimeError("the Bookkeeping callback is missing (callbacks.bookkeeping)")


def emit(trainer, metrics: dict, step: int) -> None:
    """One row of metrics to every logger (metrics.csv, W&B) under an explicit step."""
    for lg in trainer.loggers:
        lg.log_metrics(metrics, step=step)


class Bookkeeping(L.Callback):
    """Skip and throughput counters, the summary of evaluations, the wall clock across resumed
    segments, and the stop rule for runs of non-finite steps (``optim.max_consecutive_skips``)."""

    def __init__(self, max_consecutive_skips: int = 0, started_at: float | None = None):
        self.max_consecutive_skips = max(int(max_consecutive_skips), 0)
        self.skipped_steps = self.consecutive_skips = self.tokens_seen = 0
        self.step_seconds = 0.0          # time inside training steps (throughput's denominator)
        self.last_non_finite: str | None = None
        self.last_step = -1
        self.summary: dict = {}          # initial / final evaluation, teacher accuracy
        self.last_evaluation: tuple[int, float] | None = None  # (step, held-out accuracy) of the latest evaluation
        self.wall_before = 0.0           # wall time of earlier segments of a resumed run
        self.start = time.perf_counter() if started_at is None else started_at  # the run's start, models' loading included

    # ------------------------------------------------------------------- state across a resume
    def on_fit_start(self, trainer, module) -> None:
        if module.resume_state is not None:
            self.load(module.resume_state)

    def state(self) -> dict:
        return {"progress": {"skipped_steps": self.skipped_steps, "tokens_seen": self.tokens_seen,
                             "consecutive_skips": self.consecutive_skips, "step_seconds": self.step_seconds},
                "summary": dict(self.summary), "wall_s": self.wall_s()}

    def load(self, state: dict) -> None:
        p = state["progress"]
        self.skipped_steps, self.tokens_seen = p["skipped_steps"], p["tokens_seen"]
        self.consecutive_skips, self.step_seconds = p["consecutive_skips"], p["step_seconds"]
        self.summary = dict(state["summary"])
        self.wall_before = float(state.get("wall_s", 0.0))

    def wall_s(self) -> float:
        return self.wall_before + time.perf_counter() - self.start

    # ------------------------------------------------------------------------------ each step
    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        record: StepRecord | None = (outputs or {}).get("record")
        if record is None:  # resumed at the end: no step was taken
            return
        if record.non_finite is None:
            self.consecutive_skips = 0
        else:
            self.skipped_steps += 1
            self.consecutive_skips += 1
            self.last_non_finite = record.non_finite
        self.tokens_seen += record.all_tokens
        self.step_seconds += record.seconds
        self.last_step = record.step
        metrics = {k: record.metrics[k] for k in STEP_METRICS if k in record.metrics}  # in the columns' order
        metrics["train/skipped_steps"] = self.skipped_steps
        metrics |= record.metrics
        if self._log_due(trainer, record.step):  # the same on every rank: they reduce together
            reduced = reduce_metrics(metrics, record.tokens)
            self._note_shape(reduced)
            emit(trainer, reduced, record.step)

    def _note_shape(self, metrics: dict) -> None:
        """The first and last logged response shape (length spread, search tries and pressure) for summary.json."""
        for key, value in metrics.items():
            if key.startswith(SHAPE_PREFIXES) and math.isfinite(value):
                self.summary.setdefault(f"{key}_initial", value)
                self.summary[f"{key}_final"] = value

    @staticmethod
    def _log_due(trainer, step: int) -> bool:
        """Lightning's rule for ``log_every_n_steps``: every n-th step and the last; 0 = never."""
        n = trainer.log_every_n_steps
        return n > 0 and ((step + 1) % n == 0 or trainer.should_stop)

    def too_many_skips(self) -> str | None:
        k = self.max_consecutive_skips
        if k > 0 and self.consecutive_skips >= k:
            return (f"{self.consecutive_skips} consecutive steps skipped: non-finite {self.last_non_finite} "
                    f"(last at step {self.last_step}); a checkpoint was saved")
        return None

    # ----------------------------------------------------------------------------- evaluations
    def record_evaluation(self, trainer, step: int, student: dict, teacher: dict | None = None) -> dict:
        """Log an evaluation (``eval/*``, once ``teacher/*``) and keep its summary."""
        from gopd.evaluate import gap_closed

        metrics = {f"eval/{k}": v for k, v in student.items()}
        self.last_evaluation = (step, student["accuracy"])
        if teacher is not None:
            metrics.update({f"teacher/{k}": v for k, v in teacher.items()})
            self.summary["teacher/accuracy"] = teacher["accuracy"]
        self.summary.setdefault("eval/accuracy_initial", student["accuracy"])
        self.summary.setdefault("eval/response_len_initial", student["response_len"])
        closed = gap_closed(self.summary["eval/accuracy_initial"], student["accuracy"], self.summary.get("teacher/accuracy"))
        if closed is not None:
            metrics["eval/gap_closed"] = closed
        self.summary.update({"eval/accuracy_final": student["accuracy"], "eval/response_len_final": student["response_len"],
                             "eval/gap_closed": closed})
        emit(trainer, metrics, step)
        return metrics

    def run_summary(self) -> dict:
        """The counters' part of ``summary.json``."""
        return {**self.summary, "train/skipped_steps": self.skipped_steps,
                "perf/tokens_per_s": self.tokens_seen / max(self.step_seconds, 1e-9)}


class Evaluation(L.Callback):
    """Held-out greedy accuracy at the start (with the teacher's, once), every N steps and at the end."""

    def __init__(self, every_n_steps: int = 0):
        self.every = max(int(every_n_steps), 0)

    def on_train_start(self, trainer, module) -> None:
        if module.resume_state is None:  # a resumed run has its initial evaluation already
            self._evaluate(trainer, module, with_teacher=True)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every and module.batches % self.every == 0 and module.batches < module.max_steps:
            self._evaluate(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        self._evaluate(trainer, module)

    @staticmethod
    def _evaluate(trainer, module, with_teacher: bool = False) -> None:
        student, teacher = module.evaluate(with_teacher=with_teacher)
        bookkeeping(trainer).record_evaluation(trainer, module.batches, student, teacher)


class Checkpointing(L.Callback):
    """Saves every N steps, at the end, and at the first step boundary after a stop signal.

    SIGUSR1 (SLURM's ``--signal`` ahead of the time limit), SIGTERM (preemption, ``scancel``)
    and the handler already installed for them (submitit's requeue handler listens on SIGUSR2)
    all lead to: finish the current step, checkpoint, stop. The runner then hands the signal
    to whatever was listening before (submitit requeues the job; by default the process ends
    as the signal would have ended it). Comes after ``Evaluation``, so a checkpoint at an
    evaluation step includes that evaluation.
    """

    SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM")

    def __init__(self, every_n_steps: int = 0):
        self.every = max(int(every_n_steps), 0)
        self.received: int | None = None   # the signal this process got
        self.stopped = False               # a rank got one: every rank saved and stopped
        self.previous: dict[int, object] = {}
        self.saved_step: int | None = None

    def on_fit_start(self, trainer, module) -> None:
        for name in self.SIGNALS:
            sig = getattr(signal, name)
            self.previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.received = signum  # acted on at the next step boundary, never mid-update

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        problem = bookkeeping(trainer).too_many_skips()
        if problem:
            self.save(trainer, module)
            raise NonFiniteError(problem)
        if any_rank(self.received is not None):  # a launcher may signal rank 0 only: all ranks stop together
            self.stopped = True
            self.save(trainer, module)
            name = signal.Signals(self.received).name if self.received is not None else "a stop signal on another rank"
            log.warning("received %s: checkpoint saved at step %d, stopping", name, module.batches)
            trainer.should_stop = True
        elif module.batches >= module.max_steps or (self.every and module.batches % self.every == 0):
            self.save(trainer, module)

    def on_fit_end(self, trainer, module) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def save(self, trainer, module) -> Path:
        """Every rank gathers (FSDP shards), rank 0 writes, then all wait for it."""
        from gopd.runlog import loggers_state
        from gopd.strategy import full_state_dict

        run_dir = Path(trainer.default_root_dir)
        state = checkpoint.merge_state(module.resume_payload(), bookkeeping(trainer).state(), loggers_state(trainer.loggers))
        weights = full_state_dict(module.student)  # gathered to rank 0 under FSDP; None otherwise
        ema_weights = [full_state_dict(e.model) for e in module.ema]
        path = checkpoint.step_dir(run_dir, module.batches)
        if trainer.is_global_zero:
            path = checkpoint.save(run_dir, module.batches, module.student, [e.model for e in module.ema], state,
                                   student_state=weights, ema_states=ema_weights)
        trainer.strategy.barrier("gopd-checkpoint")
        self.saved_step = module.batches
        return path

    def ensure_saved(self, trainer, module) -> None:
        """Lightning stops between steps on SIGTERM; make sure that boundary is checkpointed."""
        if self.saved_step != module.batches:
            self.save(trainer, module)

    def forward_signal(self) -> None:
        """After the run is wrapped up: let the signal do what it would have done without us."""
        if self.received is None:
            return
        handler = self.previous.get(self.received, signal.SIG_DFL)
        if callable(handler):
            handler(self.received, None)  # e.g. submitit: requeue, then exit
        elif handler == signal.SIG_DFL:
            import os

            signal.signal(self.received, signal.SIG_DFL)
            os.kill(os.getpid(), self.received)
