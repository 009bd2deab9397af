"""gopd.bench.vs_trl: the summary's arithmetic by hand, TRL's prompts against gopd's stream, and the
whole side-by-side run (TRL 1.16 and gopd, one round) at a tiny size."""

import re

import pytest

from gopd.bench import vs_trl


def test_summary_by_hand():
    runs = {"a": [{"cpu": [1.0, 3.0], "wall": [2.0, 4.0], "tokens": [100, 300], "peak_rss_mb": 500.0},
                  {"cpu": [2.0], "wall": [9.0], "tokens": [200], "peak_rss_mb": 700.0}]}
    row = vs_trl.summarize(runs)["a"]
    assert row == {"n": 3, "cpu_min": 1.0, "cpu_median": 2.0, "wall_median": 4.0, "tokens_step": 200.0,
                   "tok_per_cpu_s": 600 / 6.0, "tok_per_wall_s": 600 / 15.0, "peak_rss_mb": 700.0,
                   "peak_gpu_mb": 0.0}


def test_the_ratio_to_trl_is_per_cpu_second_on_a_cpu_and_per_wall_second_on_a_gpu():
    runs = {vs_trl.BASELINE: [{"cpu": [2.0], "wall": [1.0], "tokens": [100], "peak_rss_mb": 1.0}],
            "gopd full": [{"cpu": [1.0], "wall": [1.0], "tokens": [100], "peak_rss_mb": 1.0, "peak_gpu_mb": 9.0}]}
    rows = vs_trl.summarize(runs)
    for device, ratio in (("cpu", "2.00x"), ("cuda", "1.00x")):
        args = vs_trl._parser().parse_args(["--device", device, "--rounds", "1"])
        args.precision = "32-true"
        line = next(x for x in vs_trl.report(rows, args, []).splitlines() if x.startswith("| gopd full |"))
        assert f"| {ratio} |" in line and line.endswith(" 9 |") == (device == "cuda"), (device, line)


def test_cuda_without_a_gpu_is_refused_in_one_line(capsys):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SystemExit, match=r"^error: --device cuda, but torch sees no CUDA device"):
        vs_trl.main(["--device", "cuda"])


def test_random_qwen3_models_take_the_prompts_token_for_token(tmp_path):
    """--model: student and teacher differ (seeds), share the wide tokenizer, and TRL's chat
    template renders gopd's prompt tokens (checked inside _trl_prompts)."""
    from safetensors.torch import load_file

    from gopd.pool import load_tokenizer

    overrides = vs_trl.random_models("qwen3-0.6b-tiny", tmp_path)
    assert overrides == [f"model.path={tmp_path / 'student'}", f"teacher.path={tmp_path / 'teacher'}",
                         "model.dtype=float32"]
    cfg = vs_trl._compose([*overrides, "rollout.prompts_per_step=4"])
    assert len(vs_trl._trl_prompts(cfg, load_tokenizer(cfg.model.path), 2)) == 8
    student, teacher = (load_file(tmp_path / m / "model.safetensors") for m in ("student", "teacher"))
    assert sorted(student) == sorted(teacher) and not all(student[k].equal(teacher[k]) for k in student)


def test_trl_gets_the_prompts_of_gopds_stream_in_order():
    from gopd.data import PromptStream, load_splits
    from gopd.pool import load_tokenizer

    cfg = vs_trl._compose(["rollout.prompts_per_step=4"])
    messages = vs_trl._trl_prompts(cfg, load_tokenizer(cfg.model.path), 2)
    rows = [r for k in range(2) for r in PromptStream(load_splits(cfg.data).train, 4, cfg.seed).batch(k)]
    assert len(messages) == 8
    assert all(str(r["problem"]) in m[0]["content"] for r, m in zip(rows, messages))


@pytest.mark.slow
def test_side_by_side_run_reports_every_arm_against_trl(capsys):
    pytest.importorskip("trl")
    assert vs_trl.main(["--rounds", "1", "--steps", "1", "--warmup", "1",
                        "rollout.prompts_per_step=4", "rollout.max_new_tokens=16"]) == 0
    out = capsys.readouterr().out
    for arm in vs_trl.DEFAULT_ARMS:
        assert re.search(rf"^\| {re.escape(arm)} \| 1 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+ \| \d+ \| [\d.]+x \| \d+ \|$",
                         out, re.M), (arm, out)
    assert re.search(r"^\| trl reverse KL \|.*\| 1\.00x \|", out, re.M)
    assert "Differences that remain" in out
