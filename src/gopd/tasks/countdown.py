"""Countdown: make a target from given numbers with + - * / and parentheses, by trial and error.

    problem   "Use 8 3 2 to make 18."
    solution  "try (8-2)*3=18 yes\\n\\boxed{(8-2)*3}"
    a trace   "try 8+3-2=9 no\\ntry 8*3-2=22 no\\ntry (8-2)*3=18 yes\\n\\boxed{(8-2)*3}"

A search world: a response is zero or more failed tries (``try <expr>=<value> no``), one
successful try (``try <expr>=<target> yes``) and ``\\boxed{<expr>}``, one per line. Every try
uses all the numbers; its stated value is its exact value. Failed tries are distinct, never the
target, and always have a non-negative integer value (a fraction or a negative value is never
written). How many failed tries a trace has is drawn per sample (``Explore``: geometric with mean
``mean_failed``, capped at ``max_failed``), so a "student" corpus (``STUDENT``: many failed
tries) and a "teacher" corpus (``TEACHER``: few) can be rendered from the same problems and
response length varies across problems and across samples of one problem.

Rules (the generator, ``solutions`` and the verifier agree on them):

* numbers: 3 from 1..12 or 4 from 1..10 (each size equally likely, repeats allowed), shown in
  the order drawn;
* target: an integer in 1..100 reachable from the numbers, never the sum nor the product of all
  of them (the two first tries anyone makes), drawn uniformly among the domain's reachable
  targets (not weighted by how many solutions each has, which favours the harder ones);
* an expression uses every given number exactly once (as a multiset); only digits, ``+ - * /``,
  parentheses and spaces; no unary minus, no leading zeros, no juxtaposed digits standing for a
  number not given (``12`` from 1 and 2 is the number 12, which is not given);
* arithmetic is exact (``Fraction``): non-integer and negative intermediate values are allowed,
  a division by zero makes the expression invalid; only the final value must equal the target.

Domains: ``add`` if some solution uses only + and - (the reference answer is such a solution);
``mul`` if none does (every solution needs * or /).

``solutions`` enumerates the distinct expressions of a target: canonical up to commutativity and
associativity of + and * (``8+3-2``, ``3+8-2`` and ``8-(2-3)`` are one), with the terms of a
sum and the factors of a product in decreasing value (``(8-2)*3``). The reference ``answer`` is
the simplest solution: all intermediate values (left to right) non-negative integers first,
then the shortest, then the fewest parentheses.

Rows carry three hints of graded strength: ``hint_solution`` ("A solution is (8-2)*3."),
``hint_first_step`` ("Start with 8-2.": the answer's first operation, never the answer) and
``hint_soft`` ("A solution uses * and - with parentheses.": the operators, no digit).

The verifier (``check``/``why_wrong`` on a response: its last ``\\boxed{}``; ``check_expr``/
``why_wrong_expr`` on a bare expression) never calls ``eval``: a recursive-descent parser.

A pure function of the seed; the held-out split is drawn first and the training split excludes
its problems (deduplicated by the multiset of numbers and the target). Print a sample with
``python -m gopd.tasks.countdown``; nothing is shipped.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from operator import attrgetter
from types import MappingProxyType

from gopd.verifier import extract_answer

DOMAINS = ("add", "mul")
SIZES = {3: (1, 12), 4: (1, 10)}  # how many numbers -> their range
MAX_TARGET = 100
COLUMNS = ("id", "domain", "problem", "numbers", "target", "solution", "answer", "n_solutions",
           "hint_solution", "hint_first_step", "hint_soft")
# An optional preamble for a model that has not been trained on the format (the rows do not carry it).
RULES = "Use every number exactly once with + - * / and parentheses. Write each try, then the answer in \\boxed{}."


@dataclass(frozen=True)
class Explore:
    """How many failed tries a trace has: geometric with mean ``mean_failed``, capped at ``max_failed``."""

    mean_failed: float = 0.0
    max_failed: int = 0


STUDENT = Explore(mean_failed=4.0, max_failed=12)
TEACHER = Explore(mean_failed=0.3, max_failed=2)


# --- the verifier: a recursive-descent parser over  expr := term (+|- term)*,
# term := factor (*|/ factor)*,  factor := number | ( expr ) ------------------------------------

class ExprError(ValueError):
    """Why an expression is rejected; ``str()`` is the short reason."""


_TOKEN = re.compile(r" *(?:([0-9]+)|([-+*/()]))")  # ASCII digits and spaces only


@dataclass(frozen=True)
class Node:
    """A parsed expression: a number (``op`` empty) or ``left op right``."""

    op: str
    value: int = 0
    left: Node | None = None
    right: Node | None = None


def _tokens(expr: str) -> list[str]:
    out, i, end = [], 0, len(expr.rstrip(" "))
    while i < end:
        m = _TOKEN.match(expr, i)
        if not m:
            raise ExprError(f"bad character {expr[i:].lstrip(' ')[:1]!r}")
        if m.group(1) and len(m.group(1)) > 1 and m.group(1)[0] == "0":
            raise ExprError(f"leading zero in {m.group(1)}")
        out.append(m.group(1) or m.group(2))
        i = m.end()
    return out


def parse(expr: str) -> Node:
    """The tree of ``expr``; raises ``ExprError`` on anything outside the grammar."""
    toks = _tokens(expr)
    if not toks:
        raise ExprError("empty")
    if toks.count("(") != toks.count(")"):
        raise ExprError("unbalanced parentheses")
    pos = 0

    def peek() -> str | None:
        return toks[pos] if pos < len(toks) else None

    def factor() -> Node:
        nonlocal pos
        tok = peek()
        if tok is None:
            raise ExprError("ends with an operator")
        pos += 1
        if tok.isdigit():
            return Node("", int(tok))
        if tok == "(":
            node = sum_()
            if peek() != ")":
                raise ExprError("unbalanced parentheses")
            pos += 1
            return node
        raise ExprError(f"unexpected {tok!r}")  # unary minus, ")" or an operator out of place

    def chain(sub, ops: str) -> Node:
        nonlocal pos
        node = sub()
        while (tok := peek()) is not None and tok in ops:
            pos += 1
            node = Node(tok, left=node, right=sub())
        return node

    def product() -> Node:
        return chain(factor, "*/")

    def sum_() -> Node:
        return chain(product, "+-")

    node = sum_()
    if pos != len(toks):
        raise ExprError(f"unexpected {toks[pos]!r}")
    return node


def leaves(node: Node) -> list[int]:
    return [node.value] if not node.op else leaves(node.left) + leaves(node.right)


def steps(node: Node) -> list[tuple[Node, Fraction]]:
    """Every operation with its exact value, in evaluation order (left to right, innermost first)."""
    out: list[tuple[Node, Fraction]] = []

    def go(n: Node) -> Fraction:
        if not n.op:
            return Fraction(n.value)
        a, b = go(n.left), go(n.right)
        if n.op == "/" and b == 0:
            raise ExprError("division by zero")
        v = a + b if n.op == "+" else a - b if n.op == "-" else a * b if n.op == "*" else a / b
        out.append((n, v))
        return v

    go(node)
    return out


def value(node: Node) -> Fraction:
    """The exact value; raises ``ExprError("division by zero")``."""
    return steps(node)[-1][1] if node.op else Fraction(node.value)


def evaluate(expr: str) -> Fraction:
    return value(parse(expr))


def _multiset_reason(used: list[int], numbers: Sequence[int]) -> str | None:
    left = list(numbers)
    for n in used:
        if n in left:
            left.remove(n)
        elif n in numbers:
            return f"uses {n} too often"
        else:
            return f"{n} is not given"
    return f"does not use {' '.join(map(str, left))}" if left else None


def why_wrong_expr(expr: str, numbers: Sequence[int], target: int) -> str | None:
    """None if ``expr`` is a solution, else a short reason (syntax, numbers, division, value)."""
    try:
        node = parse(expr)
        reason = _multiset_reason(leaves(node), numbers)
        if reason:
            return reason
        got = value(node)
    except ExprError as e:
        return str(e)
    return None if got == target else f"makes {_fmt(got)}, not {target}"


def why_wrong(response: str | None, numbers: Sequence[int], target: int) -> str | None:
    """``why_wrong_expr`` of the last ``\\boxed{}`` of a response (none: "no \\boxed{}")."""
    boxed = extract_answer(response)
    return "no \\boxed{}" if boxed is None else why_wrong_expr(boxed, numbers, target)


def check_expr(expr: str, numbers: Sequence[int], target: int) -> bool:
    return why_wrong_expr(expr, numbers, target) is None


def check(response: str | None, numbers: Sequence[int], target: int) -> bool:
    """The reward: the last ``\\boxed{}`` of the response is a solution."""
    return why_wrong(response, numbers, target) is None


def solves_like(response: str | None, reference_expr: str) -> bool:
    """The reward against a row's reference answer alone (``data.answer_extract=countdown``): the
    response's boxed expression uses the reference's numbers and reaches its value."""
    node = parse(reference_expr)
    target = value(node)
    return target.denominator == 1 and check(response, leaves(node), int(target))


def _fmt(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


# --- enumeration: every distinct expression over a multiset, by subsets --------------------------

class _Expr:
    """A canonical expression: a number, a sum (``pos`` - ``neg`` terms that are not sums) or a
    product (``pos`` / ``neg`` factors that are not products), each part sorted by ``order``
    (decreasing value, then text: any fixed order of the parts makes equal forms equal texts)."""

    __slots__ = ("value", "kind", "text", "pos", "neg", "order", "nice")

    def __init__(self, value: Fraction, kind: str, text: str, pos: tuple = (), neg: tuple = ()):
        self.value, self.kind, self.text, self.pos, self.neg = value, kind, text, pos, neg
        self.order = (-float(value), text)  # floats of these small rationals are exact enough to sort
        # Every value met left to right is a non-negative integer: the parts are, and so is the
        # whole (a sum adds its terms first; a product that is an integer is one after each division).
        self.nice = value.denominator == 1 and value >= 0 and all(t.nice for t in pos + neg)


_ORDER = attrgetter("order")


def _make(kind: str, pos: tuple[_Expr, ...], neg: tuple[_Expr, ...], val: Fraction) -> _Expr:
    pos, neg = sorted(pos, key=_ORDER), sorted(neg, key=_ORDER)
    if kind == "+":
        text = "+".join([t.text for t in pos]) + "".join(["-" + t.text for t in neg])
    else:  # factors that are sums need parentheses; terms never do (products bind tighter)
        paren = [f"({t.text})" if t.kind == "+" else t.text for t in pos + neg]
        text = "*".join(paren[: len(pos)]) + "".join(["/" + p for p in paren[len(pos):]])
    return _Expr(val, kind, text, tuple(pos), tuple(neg))


def _parts(e: _Expr, kind: str) -> tuple[tuple[_Expr, ...], tuple[_Expr, ...]]:
    return (e.pos, e.neg) if e.kind == kind else ((e,), ())


def _combine(a: _Expr, b: _Expr) -> Iterator[_Expr]:
    """a+b, a-b, b-a, a*b, a/b, b/a, flattened (so associativity gives one form)."""
    (ap, an), (bp, bn) = _parts(a, "+"), _parts(b, "+")
    yield _make("+", ap + bp, an + bn, a.value + b.value)
    yield _make("+", ap + bn, an + bp, a.value - b.value)
    yield _make("+", bp + an, bn + ap, b.value - a.value)
    (ap, an), (bp, bn) = _parts(a, "*"), _parts(b, "*")
    yield _make("*", ap + bp, an + bn, a.value * b.value)
    if b.value:
        yield _make("*", ap + bn, an + bp, a.value / b.value)
    if a.value:
        yield _make("*", bp + an, bn + ap, b.value / a.value)


@lru_cache(maxsize=4096)
def _table(numbers: tuple[int, ...]) -> tuple[Mapping[Fraction, tuple[str, ...]], frozenset[str]]:
    """(texts by value, the nice texts): a read-only, memoised enumeration by subsets of indices."""
    full = (1 << len(numbers)) - 1
    found: dict[int, dict[str, _Expr]] = {1 << i: {str(n): _Expr(Fraction(n), "n", str(n))} for i, n in enumerate(numbers)}
    for mask in range(1, full + 1):
        if mask in found:
            continue
        out: dict[str, _Expr] = {}
        low = mask & -mask
        sub = (mask - 1) & mask
        while sub:  # unordered splits: the part with the lowest bit is ``a``
            if sub & low:
                for a in found[sub].values():
                    for b in found[mask ^ sub].values():
                        for e in _combine(a, b):
                            out.setdefault(e.text, e)
            sub = (sub - 1) & mask
        found[mask] = out
    table: dict[Fraction, list[str]] = {}
    for e in found[full].values():
        table.setdefault(e.value, []).append(e.text)
    nice = frozenset(e.text for e in found[full].values() if e.nice)
    return MappingProxyType({v: tuple(sorted(ts)) for v, ts in table.items()}), nice


def expressions(numbers: Sequence[int]) -> Mapping[Fraction, tuple[str, ...]]:
    """Every distinct (canonical) expression using all of ``numbers``, by exact value (read-only)."""
    return _table(tuple(sorted(numbers)))[0]


def nice_expressions(numbers: Sequence[int]) -> frozenset[str]:
    """Those of ``expressions`` whose values left to right are all non-negative integers."""
    return _table(tuple(sorted(numbers)))[1]


def solutions(numbers: Sequence[int], target: int) -> tuple[str, ...]:
    return expressions(numbers).get(Fraction(target), ())


def additive(expr: str) -> bool:
    return not any(c in expr for c in "*/")


def _simplicity(expr: str) -> tuple:
    """Sort key: integer non-negative intermediates first, then short, then few parentheses."""
    ugly = any(v.denominator != 1 or v < 0 for _, v in steps(parse(expr)))
    return ugly, len(expr), expr.count("("), expr


def domain_of(numbers: Sequence[int], target: int) -> str | None:
    """``add`` if some solution is + and - only, ``mul`` if there are solutions but none is, else None."""
    sols = solutions(numbers, target)
    return None if not sols else "add" if any(map(additive, sols)) else "mul"


def reference(numbers: Sequence[int], target: int) -> str:
    """The simplest solution, + and - only whenever one exists (the ``add`` domain's skill)."""
    sols = solutions(numbers, target)
    pool = [s for s in sols if additive(s)] or list(sols)
    return min(pool, key=_simplicity)


# --- traces ----------------------------------------------------------------------------------------

def _try(expr: str, val: Fraction | int, ok: bool) -> str:
    return f"try {expr}={_fmt(Fraction(val))} {'yes' if ok else 'no'}"


def n_failed(rng: random.Random, explore: Explore) -> int:
    """Geometric (P(k) ~ q^k, mean ``mean_failed`` before the cap), capped at ``max_failed``."""
    q, k = explore.mean_failed / (1 + explore.mean_failed), 0
    while k < explore.max_failed and rng.random() < q:
        k += 1
    return k


def wrong_tries(numbers: Sequence[int], target: int) -> list[tuple[str, Fraction]]:
    """Every expression a failed try may be: a nice one (integer steps a solver can write down)
    whose value is not the target."""
    nice = nice_expressions(numbers)
    return [(t, v) for v, ts in sorted(expressions(numbers).items()) if v != target for t in ts if t in nice]


def render_trace(numbers: Sequence[int], target: int, answer: str, rng: random.Random, explore: Explore = STUDENT) -> str:
    """Failed tries (distinct, drawn uniformly from ``wrong_tries``), then ``answer``, then the box."""
    k = n_failed(rng, explore)
    pool = wrong_tries(numbers, target) if k else []
    failed = rng.sample(pool, min(k, len(pool)))
    lines = [_try(t, v, False) for t, v in failed] + [_try(answer, target, True), f"\\boxed{{{answer}}}"]
    return "\n".join(lines)


def sample_trace(row: Mapping, rng: random.Random, explore: Explore = STUDENT) -> str:
    return render_trace(row["numbers"], row["target"], row["answer"], rng, explore)


_TRY = re.compile(r"^try (.*)=(\S+) (yes|no)[ \t]*$", re.M)


def attempts(text: str) -> list[tuple[str, str, bool]]:
    """The tries of a response: (expression, value as written, whether it says yes)."""
    return [(m.group(1), m.group(2), m.group(3) == "yes") for m in _TRY.finditer(text or "")]


def count_attempts(text: str) -> int:
    """Lines that start with ``try `` (well-formed or not): the search effort of a response."""
    return sum(line.startswith("try ") for line in (text or "").splitlines())


def failed_attempts(text: str) -> int:
    """Well-formed tries that end in ``no``."""
    return sum(not ok for _, _, ok in attempts(text))


# --- rows and splits -----------------------------------------------------------------------------------

def first_step(expr: str) -> str:
    """The first operation evaluated, e.g. ``8-2`` for ``(8-2)*3``."""
    node = next(n for n, _ in steps(parse(expr)))
    return f"{node.left.value}{node.op}{node.right.value}"


def soft_hint(expr: str) -> str:
    """The operators of the solution (and whether it needs parentheses): never a number."""
    ops = [o for o in "*/+-" if o in expr]
    words = "only + and -" if additive(expr) else ", ".join(ops[:-1]) + " and " + ops[-1] if len(ops) > 1 else ops[0]
    return f"A solution uses {words}{' with parentheses' if '(' in expr else ''}."


def make_row(numbers: Sequence[int], target: int) -> dict:
    """One row (without ``id``) for a solvable problem."""
    answer, domain = reference(numbers, target), domain_of(numbers, target)
    return {
        "domain": domain,
        "problem": f"Use {' '.join(map(str, numbers))} to make {target}.",
        "numbers": list(numbers),
        "target": target,
        "solution": render_trace(numbers, target, answer, random.Random(0), Explore()),
        "answer": answer,
        "n_solutions": len(solutions(numbers, target)),
        "hint_solution": f"A solution is {answer}.",
        "hint_first_step": f"Start with {first_step(answer)}.",
        "hint_soft": soft_hint(answer),
    }


def targets(numbers: Sequence[int], domain: str) -> list[int]:
    """The targets a problem of ``domain`` may have with these numbers (see the module rules).

    Distinct problems (number multiset and target) per domain: add 4,221, mul 35,129 (sizes 3 and 4)."""
    return list(_targets(tuple(sorted(numbers)), domain))


@lru_cache(maxsize=4096)
def _targets(numbers: tuple[int, ...], domain: str) -> tuple[int, ...]:  # a split draws each multiset many times
    trivial = {sum(numbers), math.prod(numbers)}
    out = []
    for v, ts in expressions(numbers).items():
        if v.denominator == 1 and 1 <= v <= MAX_TARGET and v not in trivial:
            if any(map(additive, ts)) == (domain == "add"):
                out.append(int(v))
    return tuple(sorted(out))


def sample_problem(rng: random.Random, domain: str, sizes: Sequence[int] = (3, 4)) -> tuple[list[int], int]:
    """Numbers (as drawn) and a target of ``domain``; redraws numbers that have none."""
    while True:
        k = rng.choice(sizes)
        lo, hi = SIZES[k]
        numbers = [rng.randint(lo, hi) for _ in range(k)]
        if ts := targets(numbers, domain):
            return numbers, rng.choice(ts)


def key(numbers: Sequence[int], target: int) -> tuple[tuple[int, ...], int]:
    """Problems are the same when their multisets of numbers and their targets are."""
    return tuple(sorted(numbers)), target


def make_splits(seed: int = 0, n_train: int = 2000, n_test: int = 200, *, sizes: Sequence[int] = (3, 4)) -> dict[str, list[dict]]:
    """Balanced domains (round-robin), deduplicated by ``key``; test drawn first, train excludes it."""
    rng, seen, out = random.Random(f"gopd-countdown-{seed}"), set(), {}
    for split, n in (("test", n_test), ("train", n_train)):
        rows, tries = [], 0
        while len(rows) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise RuntimeError(f"countdown problem space too small for {n} distinct {split} problems")
            numbers, target = sample_problem(rng, DOMAINS[len(rows) % len(DOMAINS)], sizes)
            if key(numbers, target) not in seen:
                seen.add(key(numbers, target))
                rows.append({"id": f"{split}-{len(rows):05d}", **make_row(numbers, target)})
        out[split] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gopd.tasks.countdown", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="the task is a pure function of it")
    ap.add_argument("--n-train", type=int, default=2000, help="training problems")
    ap.add_argument("--n-test", type=int, default=200, help="held-out problems")
    ap.add_argument("--show", type=int, default=3, help="test rows to print, each with a student trace")
    args = ap.parse_args(argv)
    splits = make_splits(args.seed, args.n_train, args.n_test)
    rng = random.Random(args.seed)
    for row in splits["test"][: args.show]:
        print(json.dumps(row))
        print(sample_trace(row, rng, STUDENT), end="\n\n")
    print({k: len(v) for k, v in splits.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
