"""gopd.bench.growth: the growth column by hand, and real runs whose completions fill the budget
(HF generate and vLLM)."""

import re

import pytest

from gopd.bench import growth


def _run(cpu):
    return {"cpu": [cpu], "wall": [cpu], "tokens": [0], "peak_rss_mb": 1.0}


def test_growth_is_each_point_over_the_previous_one_on_its_axis():
    args = type("A", (), {"steps": 1, "warmup": 0, "threads": 1})
    results = {("hf", "tokens", 32, 16): _run(1.0), ("hf", "tokens", 32, 32): _run(1.5),
               ("hf", "prompts", 8, 64): _run(2.0), ("hf", "prompts", 16, 64): _run(4.4)}
    rows = re.findall(r"^\| hf \| (\d+ x \d+) \|.*\| ([\d.-]+) \|$", growth.report(results, args, []), re.M)
    assert rows == [("32 x 16", "-"), ("32 x 32", "1.50"), ("8 x 64", "-"), ("16 x 64", "2.20")]


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["hf", "vllm"])
def test_completions_fill_the_budget(engine, capsys):
    if engine == "vllm":
        pytest.importorskip("vllm")
    assert growth.main(["--tokens", "24", "--prompts", "4", "--rollouts", engine, "--steps", "1", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    tokens = dict(re.findall(rf"^\| {engine} \| (\d+ x \d+) \| (\d+) \|", out, re.M))
    assert tokens == {"32 x 24": "768", "4 x 64": "256"}, out
