"""gopd.rewards: the same rewards inline and from worker processes, their CPU counted, the pool closed."""

import pytest
import torch

from gopd.rewards import Verification

ROWS = [{"answer": a} for a in ("15", "0.5", "7", "42", "3", "12")]
TEXTS = ["so \\boxed{15}", "half: \\boxed{\\frac{1}{2}}", "\\boxed{8}", "no box", "\\boxed{3.0}", "\\boxed{9^99}"]
EXPECTED = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0]  # the second and fifth only by math_verify's symbolic path


def test_inline_rewards_are_the_verdicts():
    v = Verification("answer")
    rewards = v.submit(ROWS, TEXTS, "cpu")()
    assert rewards.dtype == torch.float32 and rewards.tolist() == EXPECTED
    assert v.worker_cpu_s == 0.0


@pytest.mark.parametrize("workers", [2])
def test_workers_give_the_inline_rewards_in_row_order(workers):
    v = Verification("answer", workers=workers)
    try:
        first = v.submit(ROWS, TEXTS, "cpu")
        second = v.submit(ROWS[::-1], TEXTS[::-1], "cpu")  # two batches in flight at once
        assert second().tolist() == EXPECTED[::-1] and first().tolist() == EXPECTED
        assert first() is first()  # resolved once
        assert v.worker_cpu_s > 0
    finally:
        v.close()
    assert v._pool is None
    assert v.submit(ROWS[:1], TEXTS[:1], "cpu")().tolist() == [1.0]  # a closed one starts again
    v.close()


def test_negative_workers_are_refused():
    with pytest.raises(ValueError, match=r"verify.workers must be >= 0, got -1"):
        Verification("answer", workers=-1)
