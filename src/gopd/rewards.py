"""Rewards of a rollout batch: its answers verified, inline or by worker processes.

With ``verify.workers = N > 0`` the answers go to N worker processes as soon as the completions
are decoded, and the step's forwards (student, teacher, reference) run while they are checked;
the estimator asks for the rewards only where it needs them. Processes, not threads: math_verify
bounds a pathological comparison with ``signal.alarm``, which works only in a main thread (a
worker process's own), and sympy holds the GIL. The pool starts at the first batch (``spawn``:
nothing of the trainer's threads, CUDA state or model memory is copied into it).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import torch

from gopd.verifier import verify_batch

Rewards = Callable[[], torch.Tensor]  # the batch's rewards [B] float32; waits for verification if it is running


def _warm_up() -> None:
    """A worker imports math_verify (and sympy) before its first batch, not during it."""
    import math_verify  # noqa: F401


def _verify_share(texts: Sequence[str], answers: Sequence[str], how: str) -> tuple[list[bool], float]:
    """A worker's part of a batch -> (verdicts, the CPU seconds it took)."""
    start = time.process_time()
    return verify_batch(texts, answers, how=how), time.process_time() - start


class Verification:
    """``submit(rows, texts, device)`` -> ``Rewards``: 1.0 where the completion's answer is the row's.

    ``worker_cpu_s`` adds up the CPU time the workers spent on the batches (a benchmark counts it
    with the trainer's own)."""

    def __init__(self, answer_field: str, how: str = "boxed", workers: int = 0):
        if workers < 0:
            raise ValueError(f"verify.workers must be >= 0, got {workers}")
        self.answer_field, self.how, self.workers = answer_field, how, workers
        self._pool: ProcessPoolExecutor | None = None
        self.worker_cpu_s = 0.0

    def submit(self, rows: Sequence[Mapping], texts: Sequence[str], device) -> Rewards:
        answers = [str(row[self.answer_field]) for row in rows]
        if self.workers == 0:
            rewards = _as_tensor(verify_batch(texts, answers, how=self.how), device)
            return lambda: rewards
        pool = self._start()
        size = -(-len(texts) // self.workers)  # one contiguous share per worker
        parts: list[Future] = [pool.submit(_verify_share, texts[i:i + size], answers[i:i + size], self.how)
                               for i in range(0, len(texts), size)]
        done: list[torch.Tensor] = []

        def rewards() -> torch.Tensor:
            if not done:
                shares = [part.result() for part in parts]
                self.worker_cpu_s += sum(cpu for _, cpu in shares)
                done.append(_as_tensor([ok for verdicts, _ in shares for ok in verdicts], device))
            return done[0]

        return rewards

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_warm_up)
        return self._pool

    def close(self) -> None:
        """Stop the workers (a run's end; a later ``submit`` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _as_tensor(ok: Sequence[bool], device) -> torch.Tensor:
    return torch.tensor(ok, dtype=torch.float32, device=device)
