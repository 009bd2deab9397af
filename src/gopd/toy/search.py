"""The search world's task: Countdown (``gopd.tasks.countdown``) with traces of varying length.

A response is a sequence of tries, most of them failed, then the answer::

    try 8+3-2=9 no
    try 8*3-2=22 no
    try (8-2)*3=18 yes
    \\boxed{(8-2)*3}

How many failed tries an SFT example shows is drawn per example from the run's ``explore``
setting for that example's prompt (unhinted, or hinted with one of ``HINT_FIELDS``): the student
is trained to explore without a hint and to go (nearly) straight to the answer with one, which is
what makes a hint-conditioned teacher "regret" the student's failed tries; the stronger teacher
(more layers, more width) is trained on short traces. ``data.answer_extract=countdown`` scores a
response: its boxed expression must use the row's numbers and reach its target.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gopd.tasks import countdown

DOMAINS = countdown.DOMAINS
HINT_FIELDS = ("hint_solution", "hint_first_step", "hint_soft")
COLUMNS = ("id", "domain", "problem", "numbers", "target", "solution", "answer", "n_solutions",
           "hint_solution", "hint_first_step", "hint_soft")
UNHINTED = "none"  # the explore key of an example without a hint


@dataclass(frozen=True)
class SearchTaskSpec:
    """Sizes of the Countdown problems (how many numbers: 3 and/or 4)."""

    sizes: tuple[int, ...] = (3, 4)
    domains: tuple[str, ...] = DOMAINS


def make_rows(seed: int, n_train: int, n_test: int, spec: SearchTaskSpec) -> dict[str, list[dict]]:
    splits = countdown.make_splits(seed, n_train, n_test, sizes=spec.sizes)
    return {name: [{c: r[c] for c in COLUMNS} for r in rows] for name, rows in splits.items()}


def make_dataset(seed: int, n_train: int, n_test: int, spec: SearchTaskSpec):
    import datasets

    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows)
                                 for name, rows in make_rows(seed, n_train, n_test, spec).items()})


def explore_for(explore: tuple[tuple[str, float, int], ...], hint_field: str | None) -> countdown.Explore:
    """The run's exploration for an example: ``explore`` maps ``none`` or a hint field to
    (mean, cap) of the number of failed tries; unlisted ones show none."""
    key = UNHINTED if hint_field is None else hint_field
    for name, mean, cap in explore:
        if name == key:
            return countdown.Explore(mean_failed=mean, max_failed=cap)
    return countdown.Explore()


def completion(row: dict, hint_field: str | None, explore, rng: random.Random) -> str:
    """One SFT target: a trace with as many failed tries as the example's exploration draws."""
    return countdown.sample_trace(row, rng, explore_for(explore, hint_field))


def corpus_rows(rows: list[dict], explore, seed: int) -> list[dict]:
    """Rows whose ``solution`` is a sampled exploring trace (what the tokenizer must cover)."""
    rng = random.Random(f"gopd-search-corpus-{seed}")
    return [{**r, "solution": completion(r, None, explore, rng)} for r in rows]
