"""Arithmetic word problems in English, in two domains, for a small real language model.

    add   "Mia has 23 marbles. She gets 18 more. How many marbles does Mia have now?"
    mul   "A box holds 6 pencils. How many pencils are in 7 boxes?"

Every row has a worked solution ending in ``\\boxed{answer}`` and three hints of graded
strength: ``hint_solution`` (the whole worked solution), ``hint_answer`` ("The answer is
\\boxed{41}.") and ``hint_soft`` (which operation to use: never the answer). The numbers are small
(sums of two numbers below 60, products of two numbers from 2 to 12): SmolLM2-135M-Instruct
solves some, not most, which is what a student should do.

A pure function of the seed; the held-out split is drawn first and the training split excludes
its problems. The shipped copy (``gopd://tasks/word_problems``, ``conf/data/word_problems.yaml``)
is ``python -m gopd.tasks.word_problems --out src/gopd/tasks/word_problems``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

DOMAINS = ("add", "mul")
NAMES = ("Mia", "Tom", "Ana", "Ben", "Lea", "Sam", "Ivy", "Max", "Zoe", "Leo", "Ada", "Kai")
ITEMS = ("marbles", "apples", "stickers", "books", "coins", "shells", "cards", "pencils", "stamps", "cookies")
CONTAINERS = {"box": "boxes", "bag": "bags", "jar": "jars", "basket": "baskets", "crate": "crates", "tray": "trays"}
HE_SHE = {"Mia": "She", "Ana": "She", "Lea": "She", "Ivy": "She", "Zoe": "She", "Ada": "She"}

ADD_TEMPLATES = (
    ("{n} has {a} {item}. {p} gets {b} more. How many {item} does {n} have now?",
     "{n} starts with {a} {item} and gets {b} more, so {n} has {a} + {b} = {c} {item}."),
    ("{n} collected {a} {item} on Monday and {b} {item} on Tuesday. How many {item} did {n} collect in all?",
     "{n} collected {a} and then {b} {item}, so {a} + {b} = {c} {item} in all."),
    ("There are {a} {item} on the table and {n} puts {b} more on it. How many {item} are on the table?",
     "The table has {a} {item} and {b} are added, so there are {a} + {b} = {c} {item}."),
)
MUL_TEMPLATES = (
    ("A {box} holds {a} {item}. How many {item} are in {b} {boxes}?",
     "Each {box} holds {a} {item} and there are {b} {boxes}, so there are {a} * {b} = {c} {item}."),
    ("{n} buys {b} {boxes} of {item}. Each {box} has {a} {item}. How many {item} does {n} buy?",
     "{n} buys {b} {boxes} with {a} {item} each, so {a} * {b} = {c} {item}."),
    ("{n} puts {a} {item} in each of {b} {boxes}. How many {item} does {n} use?",
     "{a} {item} in each of {b} {boxes} is {a} * {b} = {c} {item}."),
)
SOFT = {"add": "Add the two amounts together.", "mul": "Multiply the amount in one group by the number of groups."}


def make_row(rng: random.Random, domain: str) -> dict:
    if domain == "add":
        a, b = rng.randint(2, 59), rng.randint(2, 59)
        c, templates = a + b, ADD_TEMPLATES
    else:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        c, templates = a * b, MUL_TEMPLATES
    name = rng.choice(NAMES)
    words = {"n": name, "p": HE_SHE.get(name, "He"), "item": rng.choice(ITEMS), "box": (box := rng.choice(sorted(CONTAINERS))),
             "boxes": CONTAINERS[box],
             "a": a, "b": b, "c": c}
    problem, worked = (t.format(**words) for t in rng.choice(templates))
    solution = f"{worked}\nThe answer is \\boxed{{{c}}}."
    return {"domain": domain, "problem": problem, "solution": solution, "answer": str(c),
            "hint_answer": f"The answer is \\boxed{{{c}}}.", "hint_solution": solution, "hint_soft": SOFT[domain]}


def make_splits(*, seed: int = 0, n_train: int = 1000, n_test: int = 200) -> dict[str, list[dict]]:
    """Balanced domains, deduplicated by problem; test drawn first, train excludes its problems."""
    rng, seen, out = random.Random(seed), set(), {}
    for split, n in (("test", n_test), ("train", n_train)):
        rows = []
        while len(rows) < n:
            row = make_row(rng, DOMAINS[len(rows) % len(DOMAINS)])
            if row["problem"] not in seen:
                seen.add(row["problem"])
                rows.append({"id": f"{split}-{len(rows):05d}", **row})
        out[split] = rows
    return out


def write(out: Path, **kw) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in make_splits(**kw).items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gopd.tasks.word_problems", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="directory for train.jsonl and test.jsonl")
    ap.add_argument("--seed", type=int, default=0, help="the task is a pure function of it")
    ap.add_argument("--n-train", type=int, default=1000, help="training problems")
    ap.add_argument("--n-test", type=int, default=200, help="held-out problems")
    args = ap.parse_args(argv)
    print(write(args.out, seed=args.seed, n_train=args.n_train, n_test=args.n_test))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
