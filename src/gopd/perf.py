"""What one training step costs, stage by stage: seconds, and on a GPU the peak memory torch
allocated during the stage (the step's logged ``perf/<stage>_s`` and ``perf/mem_<stage>_gb``)."""

from __future__ import annotations

import contextlib
import time

import torch


class StageClock:
    """Started at the step's beginning; ``lap(stage)`` closes the stage that just ran."""

    def __init__(self, device: torch.device):
        self.cuda = torch.device(device).type == "cuda"
        self.device = device
        self.start = self.last = time.perf_counter()
        self.metrics: dict[str, float] = {}
        if self.cuda:  # each stage's peak, not the run's: reset at every boundary
            torch.cuda.reset_peak_memory_stats(device)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.metrics[f"perf/{stage}_s"] = now - self.last
        self.last = now
        if self.cuda:
            self.metrics[f"perf/mem_{stage}_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            torch.cuda.reset_peak_memory_stats(self.device)

    @contextlib.contextmanager
    def part(self, name: str):
        """Time a part of the running stage on its own (``perf/<name>_s``; still in the stage's time)."""
        t = time.perf_counter()
        yield
        self.metrics[f"perf/{name}_s"] = time.perf_counter() - t

    @property
    def seconds(self) -> float:
        return self.last - self.start
