"""Sharded training on CPU ranks (gopd.strategy): trainer=fsdp (FSDP2) on 2 gloo processes takes
the steps trainer=ddp takes, saves a plain HF student, and resumes from a signal identically."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import MINI, overridden, train_cmd
from safetensors.torch import load_file

from gopd import checkpoint

TWO_RANKS = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
FSDP = ["trainer=fsdp", *TWO_RANKS, "trainer.strategy.mixed_precision=null"]  # fp32: comparable to DDP
DDP = ["trainer=ddp", *TWO_RANKS]
RUN = ["alpha=2", "grpo_mix=0.5", "save_final=true"]
EXACT = ("train/reward", "train/response_len", "train/loss", "opd/pos_mass", "opd/neg_mass", "opd/teacher_kl",
         "opd/ref_kl", "grpo/zero_std_frac", "eval/accuracy", "eval/response_len")


def start(run_dir: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = train_cmd(*overridden(MINI, *RUN, *overrides), f"hydra.run.dir={run_dir}")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=run_dir)


def finish(proc: subprocess.Popen, timeout: int = 400) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def train(run_dir: Path, *overrides: str) -> str:
    run_dir.mkdir(parents=True, exist_ok=True)
    code, out = finish(start(run_dir, *overrides))
    assert code == 0, out[-4000:]
    return out


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("lora", [[], ["model.lora.enabled=true", "model.lora.r=4"]], ids=["full-ema", "lora"])
def test_fsdp_on_two_cpu_ranks_takes_the_ddp_steps(toy_world_mini, tmp_path, lora):
    """The same job sharded (FSDP2) and replicated (DDP): the same metrics, the same final student.
    Full: an EMA teacher (sharded, updated shard by shard) and the step-0 reference (sharded). LoRA:
    the adapters merged; the hinted teacher and the reference are the sharded base."""
    from transformers import AutoModelForCausalLM

    lora = lora or ["teacher.weights=ema", "teacher.ema_decay=0.5"]
    out = train(tmp_path / "fsdp", *FSDP, *lora)
    frozen = 0 if "model.lora.enabled=true" in lora else 2  # EMA + step-0 copy; with LoRA the base is the student's
    assert f"FSDP: the student and {frozen} frozen model(s) sharded over 2 ranks" in out, out[-3000:]
    train(tmp_path / "ddp", *DDP, *lora)
    fsdp, ddp = rows(tmp_path / "fsdp"), rows(tmp_path / "ddp")
    assert [r["step"] for r in fsdp] == [r["step"] for r in ddp] == ["0", "1", "2"]
    for a, b in zip(fsdp, ddp):
        for key in EXACT:
            assert a[key] == b[key], (a["step"], key)
        if a["train/grad_norm"]:  # reduced in another order: float noise
            assert float(a["train/grad_norm"]) == pytest.approx(float(b["train/grad_norm"]), rel=1e-5)
    a, b = (load_file(tmp_path / d / "final" / "model.safetensors") for d in ("fsdp", "ddp"))
    assert sorted(a) == sorted(b) and max(float((a[k] - b[k]).abs().max()) for k in b) < 1e-6  # the whole model
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "final")
    assert sum(p.numel() for p in model.parameters()) == sum(t.numel() for k, t in b.items())
    for run in ("fsdp", "ddp"):
        summary = json.loads((tmp_path / run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["steps"] == 2
        assert (tmp_path / run / "checkpoints" / "last").read_text().strip() == "step-000002"


@pytest.mark.slow
def test_fsdp_signal_then_restart_resumes_identically(toy_world_mini, tmp_path):
    """SIGUSR1 reaches rank 0 only (as Lightning's launcher runs rank 1): both ranks still save
    one gathered checkpoint (the EMA teacher's shards too) and stop; the same command resumes both."""
    steps = ["trainer.max_steps=4", "checkpoint.every_n_steps=1", "eval.every_n_steps=2", "teacher.weights=ema",
             "teacher.ema_decay=0.5"]
    train(tmp_path / "whole", *FSDP, *steps)
    run_dir = tmp_path / "cut"
    run_dir.mkdir()
    proc = start(run_dir, *FSDP, *steps)
    deadline = time.time() + 300
    while checkpoint.latest(run_dir) is None:
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    code, out = finish(proc)
    assert code == -signal.SIGUSR1, out[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "preempted" and 0 < summary["steps"] < 4, summary
    train(run_dir, *FSDP, *steps)
    resumed, whole = rows(run_dir), rows(tmp_path / "whole")
    assert [r["step"] for r in resumed] == [r["step"] for r in whole] == [str(i) for i in range(5)]
    for a, b in zip(resumed, whole):
        for key in EXACT:
            assert a[key] == b[key], (a["step"], key)
    a, b = (load_file(d / "final" / "model.safetensors") for d in (run_dir, tmp_path / "whole"))
    assert all(torch.equal(a[k], b[k]) for k in b)


@pytest.mark.slow
def test_vllm_engine_on_every_rank_under_ddp_and_fsdp(toy_world_mini, tmp_path):
    """rollout=vllm with 2 ranks: each rank's in-process engine (vLLM's external_launcher, in the
    trainer's process group) samples its own prompts and is synced after every step, sharded
    student included. optim.lr=1e-3 moves the student ~2e-2 nats a step: a stale engine shows."""
    from test_rollout_vllm import require_vllm

    require_vllm()
    vllm = ["rollout=vllm", "optim.lr=1e-3", "trainer.max_steps=3", "save_final=false", "traces.every_n_steps=1"]
    train(tmp_path / "ddp", *DDP, *vllm)
    train(tmp_path / "fsdp", *FSDP, *vllm)
    ddp, fsdp = rows(tmp_path / "ddp"), rows(tmp_path / "fsdp")
    for a, b in zip(ddp[:3], fsdp[:3]):
        assert float(a["rollout/logp_gap_max"]) < 1e-4 and float(b["rollout/logp_gap_max"]) < 1e-4, (a, b)
        for key in EXACT:
            assert a[key] == b[key], (a["step"], key)
    for step in range(3):
        prompts = [{json.loads(line)["prompt"] for line in (tmp_path / "fsdp" / "traces" / name).open()}
                   for name in (f"step-{step:06d}.jsonl", f"step-{step:06d}.rank1.jsonl")]
        assert prompts[0] and prompts[1] and not prompts[0] & prompts[1], step  # each rank its own prompts
