"""The Countdown search world (gopd.tasks.countdown): verifier, enumeration, rows, traces, splits."""

from __future__ import annotations

import itertools
import math
import random
import re
from fractions import Fraction

import pytest

from gopd.tasks import countdown as cd

NUMBERS, TARGET = [8, 3, 2], 18


@pytest.fixture(scope="module")
def splits():
    return cd.make_splits(seed=0, n_train=300, n_test=100)


@pytest.fixture(scope="module")
def rows(splits):
    return splits["train"] + splits["test"]


def brute_values(numbers: list[int]) -> set[Fraction]:
    """Every value of every ordered binary tree over every order of the numbers (no canonical forms)."""

    def go(xs: tuple[Fraction, ...]) -> set[Fraction]:
        if len(xs) == 1:
            return {xs[0]}
        out = set()
        for i in range(1, len(xs)):
            for a in go(xs[:i]):
                for b in go(xs[i:]):
                    out |= {a + b, a - b, a * b} | ({a / b} if b else set())
        return out

    return set().union(*(go(p) for p in itertools.permutations(map(Fraction, numbers))))


# --- the verifier -------------------------------------------------------------------------------------


@pytest.mark.parametrize("expr", ["(8-2)*3", "3*(8-2)", " ( 8 - 2 ) * 3 ", "((8-2))*3"])
def test_the_hand_computed_solutions_are_accepted(expr):
    assert cd.why_wrong_expr(expr, NUMBERS, TARGET) is None
    assert cd.check(f"try 8+3-2=9 no\n\\boxed{{{expr}}}", NUMBERS, TARGET)


@pytest.mark.parametrize(
    "expr, reason",
    [
        ("8*2+3", "makes 19, not 18"),
        ("8*3", "does not use 2"),
        ("8*3*3/2", "uses 3 too often"),
        ("(8-2)*4", "4 is not given"),
        ("8-2)*3", "unbalanced parentheses"),
        ("(8-2*3", "unbalanced parentheses"),
        (")8-2(*3", "unexpected ')'"),
        ("", "empty"),
        ("   ", "empty"),
        ("(8-2)*3+", "ends with an operator"),
        ("(8-2)*3*", "ends with an operator"),
        ("*(8-2)*3", "unexpected '*'"),
        ("-2+8*3", "unexpected '-'"),  # no unary minus
        ("8--2*3", "unexpected '-'"),
        ("()8-2*3", "unexpected ')'"),
        ("(8-2)3", "unexpected '3'"),
        ("8 2-3", "unexpected '2'"),
        ("82-3", "82 is not given"),  # digits side by side are one number
        ("08*2+3", "leading zero in 08"),
        ("(8-2)x3", "bad character 'x'"),
        ("(8-2)**3", "unexpected '*'"),
        ("(8-2)*3=18", "bad character '='"),
        ("8.0*2+2", "bad character '.'"),
        ("(8-2)×3", "bad character '×'"),
        ("(8-2)*٣", "bad character '٣'"),  # only ASCII digits
        ("8/(3-3)", "uses 3 too often"),
    ],
)
def test_the_verifier_rejects_with_a_reason(expr, reason):
    assert cd.why_wrong_expr(expr, NUMBERS, TARGET) == reason
    assert not cd.check_expr(expr, NUMBERS, TARGET)
    assert not cd.check(f"\\boxed{{{expr}}}", NUMBERS, TARGET)


def test_division_by_zero_and_fractions():
    assert cd.why_wrong_expr("8/(2-2)*3", [8, 2, 2, 3], 18) == "division by zero"
    assert cd.why_wrong_expr("(3-3)/(8-8)", [3, 3, 8, 8], 0) == "division by zero"
    # exact rationals: a non-integer intermediate is fine, 24 = 8/(3-8/3)
    assert cd.check_expr("8/(3-8/3)", [8, 8, 3, 3], 24)
    assert cd.evaluate("8/(3-8/3)") == 24 and cd.evaluate("7/2") == Fraction(7, 2)
    assert cd.why_wrong_expr("8/3*2", [8, 3, 2], 5) == "makes 16/3, not 5"  # no rounding


def test_responses_use_their_last_box():
    assert cd.check("\\boxed{8*3} no, \\boxed{(8-2)*3}", NUMBERS, TARGET)
    assert not cd.check("\\boxed{(8-2)*3} or \\boxed{8*3}", NUMBERS, TARGET)
    assert cd.why_wrong("try (8-2)*3=18 yes", NUMBERS, TARGET) == "no \\boxed{}"
    assert cd.why_wrong("", NUMBERS, TARGET) == "no \\boxed{}" and not cd.check(None, NUMBERS, TARGET)
    assert cd.why_wrong("\\boxed{(8-2)*3", NUMBERS, TARGET) == "no \\boxed{}"  # not closed
    assert cd.why_wrong("\\boxed{{(8-2)*3}}", NUMBERS, TARGET) == "bad character '{'"  # nested braces kept whole
    assert cd.why_wrong("\\boxed{}", NUMBERS, TARGET) == "empty"


# --- enumeration -----------------------------------------------------------------------------------------


def test_the_hand_computed_solution_sets():
    assert cd.solutions(NUMBERS, TARGET) == ("(8-2)*3",)
    assert set(cd.solutions([1, 2, 3], 6)) == {"3+2+1", "3*2*1", "3*2/1"}  # 3/(1/2) is 3*2/1
    assert cd.solutions([1, 1, 1], 7) == ()
    assert cd.solutions([3, 2, 8], TARGET) == cd.solutions(NUMBERS, TARGET)  # order does not matter


@pytest.mark.parametrize("numbers", [[8, 3, 2], [1, 2, 3], [2, 2, 5], [8, 8, 3, 3], [10, 7, 4, 3], [1, 1, 9, 9], [6, 6, 6, 6]])
def test_the_enumeration_is_complete_distinct_and_verified(numbers):
    table = cd.expressions(numbers)
    assert set(table) == brute_values(numbers)  # every reachable value, found independently
    texts = [t for ts in table.values() for t in ts]
    assert len(texts) == len(set(texts))
    nice = cd.nice_expressions(numbers)
    for v, ts in table.items():
        for t in ts:
            assert cd.evaluate(t) == v and sorted(cd.leaves(cd.parse(t))) == sorted(numbers)
            if v.denominator == 1 and v > 0:
                assert cd.check_expr(t, numbers, int(v)) and cd.check(f"\\boxed{{{t}}}", numbers, int(v))
            steps_nice = all(x.denominator == 1 and x >= 0 for _, x in cd.steps(cd.parse(t)))
            assert (t in nice) == steps_nice


def test_commutative_and_associative_duplicates_are_one():
    sols = cd.solutions([1, 2, 3, 4], 10)
    assert "4+3+2+1" in sols and sum(cd.additive(s) for s in sols) == 1  # not 24 orders, not 5 bracketings
    assert len(cd.solutions([2, 3, 4], 24)) == 1  # 4*3*2 only


# --- rows --------------------------------------------------------------------------------------------------


def check_trace(trace: str, numbers: list[int], target: int, answer: str) -> None:
    lines = trace.split("\n")
    assert lines[-1] == f"\\boxed{{{answer}}}" and lines[-2] == f"try {answer}={target} yes"
    tries = cd.attempts(trace)
    assert len(tries) == len(lines) - 1 == cd.count_attempts(trace) == cd.failed_attempts(trace) + 1
    assert [ok for _, _, ok in tries] == [False] * (len(tries) - 1) + [True]
    assert len({e for e, _, _ in tries}) == len(tries)  # distinct tries
    for expr, stated, ok in tries:
        assert re.fullmatch(r"\d+", stated)  # failed tries are non-negative integers, written as such
        assert cd.evaluate(expr) == int(stated) and sorted(cd.leaves(cd.parse(expr))) == sorted(numbers)
        assert (int(stated) == target) == ok
    assert cd.check(trace, numbers, target)


def test_every_row_verifies_and_its_hints_are_graded(rows):
    assert set(rows[0]) == set(cd.COLUMNS)
    for r in rows:
        numbers, target, answer = r["numbers"], r["target"], r["answer"]
        assert len(numbers) in cd.SIZES and all(cd.SIZES[len(numbers)][0] <= n <= cd.SIZES[len(numbers)][1] for n in numbers)
        assert 1 <= target <= cd.MAX_TARGET and target not in (sum(numbers), math.prod(numbers))
        assert r["problem"] == f"Use {' '.join(map(str, numbers))} to make {target}."
        assert cd.check_expr(answer, numbers, target) and answer in cd.solutions(numbers, target)
        assert r["solution"] == f"try {answer}={target} yes\n\\boxed{{{answer}}}"
        check_trace(r["solution"], numbers, target, answer)
        assert r["n_solutions"] == len(cd.solutions(numbers, target)) >= 1
        sols = cd.solutions(numbers, target)
        if r["domain"] == "add":
            assert cd.additive(answer) and any(cd.additive(s) for s in sols)
        else:
            assert r["domain"] == "mul" and not any(cd.additive(s) for s in sols)
        assert r["hint_solution"] == f"A solution is {answer}."
        step = r["hint_first_step"].removeprefix("Start with ").removesuffix(".")
        assert answer not in r["hint_first_step"] and step in answer.replace("(", "").replace(")", "")
        assert len(cd.leaves(cd.parse(step))) == 2
        assert not any(c.isdigit() for c in r["hint_soft"])
        assert ("only + and -" in r["hint_soft"]) == (r["domain"] == "add")


def test_hand_made_row():
    row = cd.make_row(NUMBERS, TARGET)
    assert row == {
        "domain": "mul", "problem": "Use 8 3 2 to make 18.", "numbers": [8, 3, 2], "target": 18,
        "solution": "try (8-2)*3=18 yes\n\\boxed{(8-2)*3}", "answer": "(8-2)*3", "n_solutions": 1,
        "hint_solution": "A solution is (8-2)*3.", "hint_first_step": "Start with 8-2.",
        "hint_soft": "A solution uses * and - with parentheses.",
    }
    assert cd.make_row([8, 3, 2], 9)["answer"] == "8+3-2" and cd.make_row([8, 3, 2], 9)["domain"] == "add"


# --- traces ------------------------------------------------------------------------------------------------


def quantile(xs: list[int], q: float) -> int:
    return sorted(xs)[int(q * (len(xs) - 1))]


def test_traces_are_valid_and_vary_in_length(rows):
    rng = random.Random(0)
    student, teacher = [], []
    for r in rows[:200]:
        for _ in range(2):
            for out, explore in ((student, cd.STUDENT), (teacher, cd.TEACHER)):
                trace = cd.sample_trace(r, rng, explore)
                check_trace(trace, r["numbers"], r["target"], r["answer"])
                out.append(trace)
    s_len, t_len = [len(t) for t in student], [len(t) for t in teacher]
    assert quantile(s_len, 0.9) >= 2 * quantile(s_len, 0.1)  # the world's point: length varies
    assert quantile(s_len, 0.5) > quantile(t_len, 0.5) and sum(s_len) > 2 * sum(t_len)
    assert max(map(cd.count_attempts, teacher)) <= cd.TEACHER.max_failed + 1
    assert max(map(cd.count_attempts, student)) > 5
    # samples of one problem differ in length too
    r = next(r for r in rows if len(r["numbers"]) == 4)
    assert len({cd.count_attempts(cd.sample_trace(r, rng)) for _ in range(50)}) >= 4
    assert cd.render_trace(NUMBERS, TARGET, "(8-2)*3", rng, cd.Explore()) == cd.make_row(NUMBERS, TARGET)["solution"]


def test_the_number_of_failed_tries_is_geometric():
    rng = random.Random(0)
    draws = [cd.n_failed(rng, cd.Explore(mean_failed=3.0, max_failed=1000)) for _ in range(4000)]
    assert abs(sum(draws) / len(draws) - 3.0) < 0.3 and draws.count(0) / len(draws) == pytest.approx(0.25, abs=0.04)
    assert max(cd.n_failed(rng, cd.Explore(mean_failed=50.0, max_failed=3)) for _ in range(100)) == 3
    assert {cd.n_failed(rng, cd.Explore()) for _ in range(10)} == {0}


def test_attempt_counters():
    text = "try 8+3-2=9 no\ntry 8*3-2=22 no\n  try this\ntry (8-2)*3=18 yes\n\\boxed{(8-2)*3}"
    assert cd.count_attempts(text) == 3 and cd.failed_attempts(text) == 2
    assert cd.attempts(text)[-1] == ("(8-2)*3", "18", True)
    assert cd.count_attempts("") == cd.failed_attempts(None) == 0
    assert cd.count_attempts("try 1+2\ntry 3") == 2  # any try line counts as effort


# --- splits ------------------------------------------------------------------------------------------------


def test_splits_are_deterministic_disjoint_and_balanced(splits):
    assert cd.make_splits(seed=0, n_train=300, n_test=100) == splits
    assert cd.make_splits(seed=1, n_train=30, n_test=10) != cd.make_splits(seed=0, n_train=30, n_test=10)
    assert cd.make_splits(0, 300, 100)["test"] == splits["test"]  # positional works too
    train, test = splits["train"], splits["test"]
    assert (len(train), len(test)) == (300, 100)
    keys = {s: [cd.key(r["numbers"], r["target"]) for r in rows] for s, rows in splits.items()}
    assert len(set(keys["train"])) == 300 and len(set(keys["test"])) == 100
    assert not set(keys["train"]) & set(keys["test"])
    for rows in (train, test):
        assert sum(r["domain"] == "add" for r in rows) == sum(r["domain"] == "mul" for r in rows)
        assert {len(r["numbers"]) for r in rows} == {3, 4}
    assert [r["id"] for r in test[:2]] == ["test-00000", "test-00001"] and train[-1]["id"] == "train-00299"
