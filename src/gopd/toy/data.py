"""The toy task: column arithmetic with a carry scratchpad, in two domains.

Every row is a verifiable problem with a short worked solution ending in ``\\boxed{answer}``:

    add   "457+385"  ->  "7+5=12a5+8+1=14b4+3+1=8c;c8b4a2 \\boxed{842}"
    mul   "457*6"    ->  "7*6=42a5*6+4=34b4*6+3=27c;c27b4a2 \\boxed{2742}"

First pass: one item per column, least significant first: the two digits (and the carry in,
when there is one) and their result, closed by the column's label (a, b, c, ...). Second pass
(after ``;``): the answer's digits, most significant first, each after its column's label
(the last column's full result first). Then the boxed answer. The labels make the reversal
from columns to answer a lookup by content, which a 2-layer model learns reliably (without
them the unlabelled reversal was the bottleneck: ~65% on 4-digit additions after 900 steps).
Solutions are <= 52 tokens with the toy tokenizer (digits are single tokens).

Rows carry three hints: ``hint_solution`` (the whole worked solution), ``hint_answer``
("the answer is \\boxed{842}") and ``hint_soft`` (the number of carries between columns: a
structural nudge that never contains the answer).

Everything is a pure function of the seed; the held-out test split is drawn first and the
training split excludes its problems (both are deduplicated by ``problem``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

DOMAINS = ("add", "mul")
HINT_FIELDS = ("hint_answer", "hint_solution", "hint_soft")
COLUMNS = ("id", "domain", "problem", "solution", "answer", "hint_answer", "hint_solution", "hint_soft")


@dataclass(frozen=True)
class TaskSpec:
    """Sizes of the operands; the defaults are the full toy world's task."""

    add_digits: tuple[int, int] = (2, 4)  # both addends have n digits, n uniform in [lo, hi]
    mul_digits: tuple[int, int] = (2, 4)  # the multiplicand has n digits, n uniform in [lo, hi]
    mul_factor: tuple[int, int] = (2, 9)  # the one-digit multiplier
    domains: tuple[str, ...] = DOMAINS


def _rand_int(rng: random.Random, n_digits: int) -> int:
    return rng.randint(10 ** (n_digits - 1), 10**n_digits - 1)


LABELS = "abcdefgh"  # column labels, least significant first


def _worked(items: list[str], results: list[int], answer: str) -> str:
    """First pass (items, each closed by its column label), then the answer's digits
    most significant first, each after its column's label, then the boxed answer."""
    first = "".join(f"{item}{LABELS[i]}" for i, item in enumerate(items))
    n = len(results)
    second = f"{LABELS[n - 1]}{results[-1]}" + "".join(f"{LABELS[i]}{results[i] % 10}" for i in range(n - 2, -1, -1))
    return f"{first};{second} \\boxed{{{answer}}}"


def solve_add(a: int, b: int) -> tuple[str, str, int]:
    """(solution, answer, number of carries) for a + b, column by column."""
    da, db = str(a)[::-1], str(b)[::-1]
    n = max(len(da), len(db))
    items, results, carry, carries = [], [], 0, 0
    for i in range(n):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        items.append(f"{x}+{y}+{carry}={s}" if carry else f"{x}+{y}={s}")
        results.append(s)
        carry = s // 10
        carries += carry if i < n - 1 else 0
    answer = str(a + b)
    return _worked(items, results, answer), answer, carries


def solve_mul(a: int, d: int) -> tuple[str, str, int]:
    """(solution, answer, number of nonzero carries between columns) for a * d (d one digit)."""
    da = str(a)[::-1]
    items, results, carry, carries = [], [], 0, 0
    for i, ch in enumerate(da):
        x = int(ch)
        p = x * d + carry
        items.append(f"{x}*{d}+{carry}={p}" if carry else f"{x}*{d}={p}")
        results.append(p)
        carry = p // 10
        carries += int(carry > 0 and i < len(da) - 1)
    answer = str(a * d)
    return _worked(items, results, answer), answer, carries


def soft_hint(carries: int) -> str:
    """How many carries the scratchpad has: structure, never the answer (no two adjacent digits)."""
    if carries == 0:
        return "there is no carry"
    if carries == 1:
        return "there is 1 carry"
    return f"there are {carries} carries"


def make_row(domain: str, a: int, b: int) -> dict:
    """One row (without ``id``) for ``a + b`` or ``a * b``."""
    if domain == "add":
        problem = f"{a}+{b}"
        solution, answer, carries = solve_add(a, b)
    elif domain == "mul":
        problem = f"{a}*{b}"
        solution, answer, carries = solve_mul(a, b)
    else:
        raise ValueError(f"unknown toy domain {domain!r}; known: {DOMAINS}")
    return {
        "domain": domain,
        "problem": problem,
        "solution": solution,
        "answer": answer,
        "hint_answer": f"the answer is \\boxed{{{answer}}}",
        "hint_solution": solution,
        "hint_soft": soft_hint(carries),
    }


def sample_row(rng: random.Random, domain: str, spec: TaskSpec) -> dict:
    if domain == "add":
        n = rng.randint(*spec.add_digits)
        return make_row("add", _rand_int(rng, n), _rand_int(rng, n))
    if domain == "mul":
        n = rng.randint(*spec.mul_digits)
        return make_row("mul", _rand_int(rng, n), rng.randint(*spec.mul_factor))
    raise ValueError(f"unknown toy domain {domain!r}; known: {DOMAINS}")


def _draw(rng: random.Random, n: int, spec: TaskSpec, exclude: set[str], split: str) -> list[dict]:
    """``n`` rows with distinct problems not in ``exclude``, domains round-robin (balanced)."""
    rows: list[dict] = []
    seen = set(exclude)
    attempts, max_attempts = 0, 50 * n + 1000
    while len(rows) < n:
        domain = spec.domains[len(rows) % len(spec.domains)]
        row = sample_row(rng, domain, spec)
        attempts += 1
        if attempts > max_attempts:
            raise RuntimeError(f"toy task space too small for {n} distinct {split} problems ({spec})")
        if row["problem"] in seen:
            continue
        seen.add(row["problem"])
        rows.append({"id": f"{split}-{len(rows):06d}", **row})
    return rows


def make_rows(seed: int = 0, n_train: int = 50_000, n_test: int = 1000, spec: TaskSpec | None = None) -> dict[str, list[dict]]:
    """Plain-python splits: ``{"train": [...], "test": [...]}``, disjoint by problem."""
    spec = spec or TaskSpec()
    rng = random.Random(f"gopd-toy-{seed}")
    test = _draw(rng, n_test, spec, set(), "test")
    train = _draw(rng, n_train, spec, {r["problem"] for r in test}, "train")
    return {"train": train, "test": test}


def to_dataset_dict(splits: dict[str, Iterable[dict]]):
    import datasets

    return datasets.DatasetDict(
        {name: datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in COLUMNS}) for name, rows in ((k, list(v)) for k, v in splits.items())}
    )


def make_dataset(seed: int = 0, n_train: int = 50_000, n_test: int = 1000, spec: TaskSpec | None = None):
    """The toy task as a ``datasets.DatasetDict({"train", "test"})`` (save with ``.to_parquet``)."""
    return to_dataset_dict(make_rows(seed, n_train, n_test, spec))


def load_split(path: str):
    """A split saved by the toy build (``data/train.parquet`` etc.) as a ``datasets.Dataset``."""
    import datasets

    return datasets.Dataset.from_parquet(str(path))
