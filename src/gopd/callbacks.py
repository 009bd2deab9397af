"""Lightning callbacks: held-out evaluation, and checkpoints on a schedule and on signals."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import lightning as L

from gopd import checkpoint

log = logging.getLogger("gopd")


class Evaluation(L.Callback):
    def __init__(self, every_n_steps: int):
        self.every = max(int(every_n_steps), 0)

    def on_train_start(self, trainer, module) -> None:
        if module.resume_state is None:  # a resumed run has its initial evaluation already
            module.evaluate(module.batches, with_teacher=True)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if self.every and module.batches % self.every == 0 and module.batches < module.max_steps:
            module.evaluate(module.batches)

    def on_train_end(self, trainer, module) -> None:
        module.evaluate(module.batches)


class Checkpointing(L.Callback):
    """Saves every N steps, at the end, and at the first step boundary after a stop signal.

    SIGUSR1 (SLURM's ``--signal`` ahead of the time limit), SIGTERM (preemption, ``scancel``)
    and the handler already installed for them (submitit's requeue handler listens on SIGUSR2)
    all lead to: finish the current step, checkpoint, stop. The runner then hands the signal
    to whatever was listening before (submitit requeues the job; by default the process ends
    as the signal would have ended it). Runs after ``Evaluation``, so a checkpoint at an
    evaluation step includes that evaluation.
    """

    SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM")

    def __init__(self, run_dir: Path, every_n_steps: int, extra_state):
        self.run_dir = Path(run_dir)
        self.every = max(int(every_n_steps), 0)
        self.extra_state = extra_state  # () -> dict: metrics rows, W&B id (owned by the runner)
        self.received: int | None = None
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
        problem = module.too_many_skips()
        if problem:
            self.save(module)
            from gopd.module import NonFiniteError

            raise NonFiniteError(problem)
        if self.received is not None:
            self.save(module)
            log.warning("received %s: checkpoint saved at step %d, stopping", signal.Signals(self.received).name,
                        module.batches)
            trainer.should_stop = True
        elif module.batches >= module.max_steps or (self.every and module.batches % self.every == 0):
            self.save(module)

    def on_fit_end(self, trainer, module) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def save(self, module) -> Path:
        """Every rank gathers (FSDP shards), rank 0 writes, then all wait for it."""
        from gopd.strategy import student_state_dict

        trainer = module.trainer
        state = module.resume_payload() | self.extra_state()
        weights = student_state_dict(trainer)  # None unless FSDP
        path = checkpoint.step_dir(self.run_dir, module.batches)
        if trainer.is_global_zero:
            path = checkpoint.save(self.run_dir, module.batches, module.student, [e.model for e in module.ema], state,
                                   student_state=weights)
        trainer.strategy.barrier("gopd-checkpoint")
        self.saved_step = module.batches
        return path

    def ensure_saved(self, module) -> None:
        """Lightning stops between steps on SIGTERM; make sure that boundary is checkpointed."""
        if self.saved_step != module.batches:
            self.save(module)

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
