"""gopd.bench.verify: the batch it verifies, and a tiny run that reports every worker count."""

import re

import pytest

from gopd.bench import verify as bench
from gopd.verifier import normalize, verify_batch


def test_the_batch_needs_math_verify_and_a_third_is_right():
    rows, texts = bench.batch(len(bench.PAIRS))
    assert all(normalize(p) != normalize(g) for p, g in bench.PAIRS)  # none settles on the fast path
    right = {"0.75", "\\sqrt{12}", "\\frac{1}{\\sqrt{2}}", "\\binom{5}{2}"}  # 3/4, 2 sqrt 3, sqrt 2 / 2, 10
    assert verify_batch(texts, [r["answer"] for r in rows]) == [p in right for p, _ in bench.PAIRS]


@pytest.mark.slow
def test_a_tiny_run_reports_inline_and_workers(capsys):
    assert bench.main(["--rows", "12", "--tokens", "8", "--forwards", "1", "--rounds", "1", "--workers", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\| 0 \| [\d.]+ \| 1\.00x \| \d+% \|$", out, re.M), out
    assert re.search(r"^\| 1 \| [\d.]+ \| [\d.]+x \| \d+% \|$", out, re.M), out
