"""Answer verification: the last ``\\boxed{...}`` of a completion against a reference answer.

``verify`` is the reward for toy and real math data alike. Fast path: the boxed text and the
answer are compared after a light normalisation (spaces, ``$``, ``\\left``/``\\right``, a
trailing period, thousands separators, ``\\dfrac``); integers compare by value. Only when
those differ is ``math_verify`` asked (symbolic equivalence: ``\\frac{1}{2}`` vs ``0.5``, ...).

math_verify's timeouts use ``signal.alarm``, which only works in the main thread; elsewhere
the timeouts are switched off (the comparison then runs without a time limit).

Measured on this machine (toy completions, one core): fast path ~1-2 us per call; a call that
falls through to math_verify ~0.2-1 ms (see ``python -m gopd.verifier`` for a benchmark).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_INT = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?\d[\d,]*(?:\.\d+)?")
EXTRACT = ("boxed", "boxed_or_last_number", "countdown")  # data.answer_extract
_MATH_VERIFY_TIMEOUT_S = 5


def extract_answer(text: str | None) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces balanced), or None if there is none.

    An unterminated last box yields None.
    """
    if not text:
        return None
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text):  # escaped brace \{ \} does not nest
                i += 2
                continue
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
            i += 1
        return None  # the last box is not closed
    return None


def last_number(text: str | None) -> str | None:
    """The last number of ``text`` (lm-eval's "flexible extract" for GSM8K-style answers), or None."""
    found = _NUMBER.findall(text or "")
    return found[-1].rstrip(",") if found else None


def extract(text: str | None, how: str = "boxed") -> str | None:
    """The answer of a completion: its last ``\\boxed{}``; with ``boxed_or_last_number``, else its
    last number (a small instruct model that states "The answer is 41." without a box)."""
    boxed = extract_answer(text)
    return last_number(text) if boxed is None and how == "boxed_or_last_number" else boxed


def normalize(ans: str) -> str:
    """Light, cheap normalisation used for the exact-match fast path."""
    s = ans.strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s.strip("$")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", "")
    s = "".join(s.split())
    s = s.rstrip(".")
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+", s):
        s = s.replace(",", "")
    return s


def _math_verify_equal(pred: str, gold: str) -> bool:
    from math_verify import parse
    from math_verify import verify as mv_verify

    in_main = threading.current_thread() is threading.main_thread()
    parse_timeout = _MATH_VERIFY_TIMEOUT_S if in_main else None
    verify_timeout = _MATH_VERIFY_TIMEOUT_S if in_main else None
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=parse_timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=parse_timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(mv_verify(gold_parsed, pred_parsed, timeout_seconds=verify_timeout))
    except Exception:  # math_verify raises on pathological inputs; an unparseable answer is wrong
        return False


def answers_match(pred: str, gold: str, *, use_math_verify: bool = True) -> bool:
    """Is the extracted ``pred`` the same answer as ``gold``?"""
    p, g = normalize(pred), normalize(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    if _INT.fullmatch(p) and _INT.fullmatch(g):
        return int(p) == int(g)
    if not use_math_verify:
        return False
    return _math_verify_equal(p, g)


def verify(completion: str, answer: str, *, use_math_verify: bool = True, how: str = "boxed") -> bool:
    """True iff the completion's answer (``extract``) is ``answer`` (string, int or math equivalence).

    ``how="countdown"``: the answer is a Countdown expression, and any boxed expression that uses
    the same numbers and reaches the same value is right (``gopd.tasks.countdown``)."""
    if how == "countdown":
        from gopd.tasks.countdown import solves_like

        return solves_like(completion, str(answer))
    pred = extract(completion, how)
    if pred is None:
        return False
    return answers_match(pred, str(answer), use_math_verify=use_math_verify)


def verify_batch(completions: Sequence[str], answers: Sequence[str], *, use_math_verify: bool = True,
                 how: str = "boxed") -> list[bool]:
    """``verify`` over aligned lists."""
    if len(completions) != len(answers):
        raise ValueError(f"{len(completions)} completions but {len(answers)} answers")
    return [verify(c, a, use_math_verify=use_math_verify, how=how) for c, a in zip(completions, answers)]


def _benchmark(n: int = 2000) -> dict[str, float]:  # pragma: no cover - a measurement, not a test
    import time

    from math_verify import parse
    from math_verify import verify as mv_verify

    from gopd.toy.data import make_rows

    rows = make_rows(seed=0, n_train=0, n_test=n)["test"]
    right = [r["solution"] for r in rows]
    wrong = [r["solution"].replace("\\boxed{", "\\boxed{1") for r in rows]
    answers = [r["answer"] for r in rows]
    out = {}
    for name, comps in (("right", right), ("wrong", wrong)):
        t = time.perf_counter()
        verify_batch(comps, answers)
        out[f"verify_{name}_us"] = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for c, a in zip(wrong, answers):
        _math_verify_equal(extract_answer(c), a)
    out["math_verify_only_us"] = (time.perf_counter() - t) / n * 1e6
    k = min(n, 300)
    t = time.perf_counter()
    for c, a in zip(right[:k], answers[:k]):
        mv_verify(parse(f"${a}$"), parse(c))
    out["math_verify_full_completion_us"] = (time.perf_counter() - t) / k * 1e6
    return out


if __name__ == "__main__":  # pragma: no cover
    for k, v in _benchmark().items():
        print(f"{k:36s} {v:10.1f}")
