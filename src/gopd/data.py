"""Prompt data through ``datasets``: the toy world and real datasets take the same path.

A data config names the dataset (``data.path``: ``toy://data``, a local directory or file, or a
hub dataset) and maps its columns onto the roles the trainer reads (``data.problem_field``,
``answer_field``, ``domain_field``, ``solution_field``, ``hint_field``). ``prepare`` then makes
real datasets look like the toy one: one row per problem (``data.dedupe_field``), chat-message
columns flattened to the last assistant turn (Nemotron-Math-v2's ``messages``), answers taken
from the solution's last ``\\boxed{}`` when the dataset has no answer column
(``data.answer_from_solution``), and a held-out test set carved from the train split when the
dataset has no test split (``data.test_split: null`` + ``data.holdout``).
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from torch.utils.data import IterableDataset

from gopd import distributed

log = logging.getLogger("gopd")

SPLIT_SUFFIXES = (".parquet", ".jsonl", ".json", ".csv")
_SPLIT = re.compile(r"^(?P<name>[^\[\]]+)(?P<slice>\[[^\[\]]*\])?$")
HOLDOUT_SEED = 0  # the held-out problems do not depend on the run's seed: every arm evaluates the same ones


def _split_parts(split: str) -> tuple[str, str]:
    """``"train[:500]"`` -> ``("train", "[:500]")`` (``datasets``' slicing syntax)."""
    m = _SPLIT.match(str(split))
    if not m:
        raise ValueError(f"bad split name {split!r} (a name, optionally sliced: train, train[:500], train[10%:])")
    return m["name"], m["slice"] or ""


def _files_in(directory: Path, split: str) -> str | None:
    for suffix in SPLIT_SUFFIXES:
        f = directory / f"{split}{suffix}"
        if f.is_file():
            return str(f)
    return None


def _builder(file: Path) -> str:
    return file.suffix.lstrip(".").replace("jsonl", "json")


class DataError(ValueError):
    """Data that cannot be trained on: one line naming the file and the line or row."""


def load_split(path: str, split: str):
    """One split as a ``datasets.Dataset``: from ``DIR/<split>.{parquet,jsonl,json,csv}``, a single
    file, or ``datasets.load_dataset(path, split=split)`` (hub name or dataset directory).
    ``split`` may be sliced (``train[:500]``). A local file that does not load is a ``DataError``
    naming the file and, where there is one, the line (``gopd.datafiles``)."""
    import datasets

    name, part = _split_parts(split)
    resolved = Path(path).expanduser()
    if resolved.is_dir() and (f := _files_in(resolved, name)):
        return _read_file(Path(f), part)
    if resolved.is_file():
        return _read_file(resolved, part)
    return datasets.load_dataset(str(path), split=split)


def _read_file(file: Path, part: str):
    import datasets

    from gopd.datafiles import file_problem
    from gopd.schema import first_line

    if (problem := file_problem(file, full=False)) is not None:  # cheap: unreadable, empty, not UTF-8
        raise DataError(problem)
    quiet = logging.getLogger("datasets")  # it logs the failure it then raises: the one line below says it
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        return datasets.load_dataset(_builder(file), data_files=str(file), split=f"train{part}")
    except Exception as e:  # datasets' own (DatasetGenerationError, StopIteration, ParserError, ...)
        raise DataError(file_problem(file) or f"{file}: cannot be read ({first_line(e)})") from None
    finally:
        quiet.setLevel(level)


def last_assistant_text(value):
    """A chat transcript (list of ``{"role", "content"}``) -> its last assistant turn's text;
    anything else unchanged."""
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        turns = [m for m in value if m.get("role") == "assistant"] or value
        content = turns[-1].get("content")
        return content if isinstance(content, str) else str(content)
    return value


def _is_message_list(feature) -> bool:
    inner = getattr(feature, "feature", None)  # List / Sequence / LargeList of a struct
    if inner is None and isinstance(feature, list) and feature:
        inner = feature[0]
    return isinstance(inner, dict) and "content" in inner


def _text_fields(d) -> list[str]:
    fields = [d.get("solution_field"), d.get("hint_field"), *(d.get("hint_fields") or [])]
    return list(dict.fromkeys(f for f in fields if f))


def prepare(dataset, d):
    """Apply the data config's mapping to one loaded split (see the module docstring)."""
    from gopd.verifier import extract_answer

    key = d.get("dedupe_field")
    if key:
        if key not in dataset.column_names:
            raise ValueError(f"data.dedupe_field: column {key!r} is not in the data")
        seen: set = set()
        keep = [i for i, v in enumerate(dataset[key]) if not (v in seen or seen.add(v))]
        if len(keep) < len(dataset):
            dataset = dataset.select(keep)
    for col in _text_fields(d):
        if col in dataset.column_names and _is_message_list(dataset.features[col]):
            dataset = dataset.map(lambda b, c=col: {c: [last_assistant_text(v) for v in b[c]]}, batched=True)
    if d.get("answer_from_solution"):
        sol, ans = d.solution_field, d.answer_field
        if sol not in dataset.column_names:
            raise ValueError(f"data.answer_from_solution needs the solution column {sol!r} (data.solution_field)")
        dataset = dataset.map(lambda b: {ans: [extract_answer(s) or "" for s in b[sol]]}, batched=True)
        n = len(dataset)
        dataset = dataset.filter(lambda b: [bool(a) for a in b[ans]], batched=True)
        if len(dataset) < n:
            log.info("data: %d of %d rows have no \\boxed{} answer in %r and were dropped", n - len(dataset), n, sol)
    return dataset


def row_problem(row: dict, problem_field: str, answer_field: str) -> str | None:
    """Why a row cannot be trained on (no usable problem or answer), or None.

    A problem is non-empty text; an answer is non-empty text or a finite number (``42``: read as text)."""
    problem, answer = row.get(problem_field), row.get(answer_field)
    if problem is None:
        return f"{problem_field} is null or missing"
    if not isinstance(problem, str):
        return f"{problem_field} is {type(problem).__name__} {problem!r}, not text"
    if not problem.strip():
        return f"{problem_field} is empty"
    if answer is None:
        return f"{answer_field} is null or missing"
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return f"{answer_field} is {type(answer).__name__} {answer!r}, not text or a number"
    if isinstance(answer, float) and not math.isfinite(answer):
        return f"{answer_field} is {answer!r}"
    if not str(answer).strip():
        return f"{answer_field} is empty"
    return None


def usable_rows(dataset, d, key: str):
    """``dataset`` without the rows ``row_problem`` refuses, and how many there were. With
    ``data.drop_invalid`` false, any such row is a ``DataError`` naming the first and the count;
    numeric answers become text (the verifier compares text)."""
    problem_field, answer_field = d.problem_field, d.answer_field
    if problem_field not in dataset.column_names or answer_field not in dataset.column_names:
        return dataset, 0  # a missing column: validate names it with the columns there are
    rows = zip(dataset[problem_field], dataset[answer_field])
    bad = [(i, why) for i, (p, a) in enumerate(rows)
           if (why := row_problem({problem_field: p, answer_field: a}, problem_field, answer_field))]
    if bad:
        i, why = bad[0]
        where = f"row {i + 1}" + (f" (id {dataset[i]['id']!r})" if "id" in dataset.column_names else "")
        if not d.get("drop_invalid"):
            raise DataError(f"data.{key}: {where} of {d.get(key)!r} in {d.path}: {why}; {len(bad)} of {len(dataset)} "
                            f"rows have no usable problem or answer: fix them, or set data.drop_invalid=true to drop them")
        dropped = {i for i, _ in bad}
        dataset = dataset.select([i for i in range(len(dataset)) if i not in dropped])
        log.warning("data.%s: dropped %d of %d rows without a usable problem or answer (first: %s: %s)",
                    key, len(bad), len(bad) + len(dataset), where, why)
    if getattr(dataset.features[answer_field], "dtype", None) not in ("string", "large_string"):
        dataset = dataset.map(lambda b: {answer_field: [str(a) for a in b[answer_field]]}, batched=True)
    return dataset, len(bad)


class Splits(NamedTuple):
    train: object     # datasets.Dataset
    test: object
    dropped: dict     # data.<split key> -> rows dropped by data.drop_invalid


def load_splits(d) -> Splits:
    """(train, test, dropped) of a data config: each split prepared and its rows checked; without
    ``data.test_split`` the last ``data.holdout`` problems of a fixed shuffle of the train split are
    the test set."""
    train, dropped_train = usable_rows(prepare(load_split(d.path, d.train_split), d), d, "train_split")
    dropped = {"train_split": dropped_train}
    test_split = d.get("test_split")
    if test_split:
        test, dropped["test_split"] = usable_rows(prepare(load_split(d.path, test_split), d), d, "test_split")
        return Splits(train, test, dropped)
    n = int(d.get("holdout") or 0)
    if n <= 0:
        raise ValueError(f"data.holdout must be >= 1 when data.test_split is null, got {n}")
    if n >= len(train):
        raise DataError(f"data.holdout={n} leaves no rows to train on: {d.path} has {len(train)} usable row(s) in "
                        f"{d.train_split!r}; lower data.holdout or give data.test_split")
    order = list(range(len(train)))
    random.Random(HOLDOUT_SEED).shuffle(order)
    return Splits(train.select(sorted(order[n:])), train.select(sorted(order[:n])), dropped)


class PromptStream(IterableDataset):
    """Endless batches of rows in a seeded order, reshuffled every pass; ``position`` says where
    the stream is, so a resumed run can continue from the same prompt. Under DDP/FSDP each rank
    takes its own batches (batch ``position * world_size + rank`` of the shared order)."""

    def __init__(self, dataset, batch_size: int, seed: int):
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.position = 0  # batches served so far (by this rank)
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
        rank, world = distributed.rank(), distributed.world_size()
        while True:
            rows = self.batch(self.position * world + rank)
            self.position += 1
            yield rows


