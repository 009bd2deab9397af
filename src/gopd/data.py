"""Prompt data through ``datasets``: the toy world and real datasets take the same path."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

from torch.utils.data import IterableDataset

from gopd.pool import resolve_checkpoint

SPLIT_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")


def _files_in(directory: Path, split: str) -> str | None:
    for suffix in SPLIT_SUFFIXES:
        f = directory / f"{split}{suffix}"
        if f.is_file():
            return str(f)
    return None


def load_split(path: str, split: str, toy_variant: str = "full"):
    """One split as a ``datasets.Dataset``: from ``DIR/<split>.{parquet,jsonl,json,csv}``, a single
    file, or ``datasets.load_dataset(path, split=split)`` (hub name or dataset directory)."""
    import datasets

    resolved = Path(resolve_checkpoint(path, toy_variant)).expanduser()
    if resolved.is_dir() and (f := _files_in(resolved, split)):
        return datasets.load_dataset(Path(f).suffix.lstrip(".").replace("jsonl", "json"), data_files=f, split="train")
    if resolved.is_file():
        return datasets.load_dataset(resolved.suffix.lstrip(".").replace("jsonl", "json"), data_files=str(resolved),
                                     split="train")
    return datasets.load_dataset(str(path), split=split)


class PromptStream(IterableDataset):
    """Endless batches of rows in a seeded order, reshuffled every pass; ``position`` says where
    the stream is, so a resumed run can continue from the same prompt."""

    def __init__(self, dataset, batch_size: int, seed: int):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.position = 0  # batches served so far
        self._epoch_order: tuple[int, list[int]] = (-1, [])

    def _order(self, epoch: int) -> list[int]:
        if self._epoch_order[0] != epoch:
            order = list(range(len(self.dataset)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._epoch_order = (epoch, order)
        return self._epoch_order[1]

    def batch(self, k: int) -> list[dict]:
        per_epoch = max(len(self.dataset) // self.batch_size, 1)
        epoch, i = divmod(k, per_epoch)
        order = self._order(epoch)
        idx = [order[(i * self.batch_size + j) % len(order)] for j in range(self.batch_size)]
        return self.dataset.select(idx).to_list()

    def __iter__(self) -> Iterator[list[dict]]:
        while True:
            rows = self.batch(self.position)
            self.position += 1
            yield rows
