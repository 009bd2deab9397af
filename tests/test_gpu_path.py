"""The GPU path, on CPU: the real model / data / trainer configs compose; hub names fail fast
offline; a local stand-in for a real checkpoint (Qwen3 architecture, ChatML chat template with
Qwen3's ``enable_thinking`` switch, a 32k-entry byte-level BPE vocabulary) trains two steps
through the real configs with LoRA off and on; the LoRA step-0 student is the student's own
base weights (one copy); DDP runs two CPU processes. FSDP does not run on CPU (see
``test_fsdp_strategy``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from test_data import deepmath_rows
from conftest import MINI
from test_train import read_metrics

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 32_000

# ChatML as Qwen3 writes it, with its thinking switch (an empty think block when disabled).
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)

SETUPS = {  # the README's commands, minus the run-length keys
    "olmo_opd": ["model=olmo3_7b_think_sft", "teacher=olmo3_7b_think", "reference=olmo3_7b_think_sft",
                 "data=nemotron_math_v2", "alpha=1.25", "trainer=fsdp", "rollout=vllm"],
    "olmo_opsd": ["model=olmo3_7b_think_sft", "teacher=hinted", "reference=student", "data=nemotron_math_v2",
                  "pressure=positive", "grpo_mix=0.5", "rollout.n=4", "trainer=fsdp", "rollout=vllm"],
    "qwen3_s2w": ["model=qwen3_1_7b", "teacher=qwen3_8b", "reference=qwen3_8b_base", "data=deepmath", "alpha=1.25",
                  "trainer=ddp"],
    "qwen3_4b_teacher": ["model=qwen3_1_7b", "teacher=qwen3_4b", "reference=qwen3_4b_base", "data=deepmath"],
    "qwen3_opsd_lora": ["model=qwen3_8b", "model.lora.enabled=true", "teacher=hinted", "reference=student",
                        "data=opsd_openthoughts_math", "alpha=2", "trainer=fsdp", "rollout=vllm"],
    "qwen3_4b_opsd": ["model=qwen3_4b", "teacher=hinted", "data=opsd_openthoughts_math", "+cluster=h100_nodes",
                      "trainer=fsdp", "trainer.num_nodes=2", "rollout=vllm"],
}


def train_cmd(*overrides: str) -> list[str]:
    return [sys.executable, str(ROOT / "src" / "train.py"), *overrides]


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_real_configs_compose(setup):
    proc = subprocess.run(train_cmd(*SETUPS[setup], "--cfg", "job", "--resolve"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import yaml

    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["dtype"] == "bfloat16" and cfg["model"]["trust_remote_code"] is False
    assert "/" in cfg["model"]["path"] and "/" in cfg["data"]["path"]
    if cfg["teacher"]["name"] == "hinted":
        assert cfg["teacher"]["hint_field"] == cfg["data"]["hint_field"]


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_real_configs_pass_the_config_checks(setup):
    from gopd.validate import check_config

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[o for o in SETUPS[setup] if not o.startswith("+cluster")])
    check_config(cfg)


@pytest.mark.parametrize("overrides,message", [
    (["model.lora.enabled=true", "model.lora.r=0"], "model.lora.r must be an integer >= 1"),
    (["model.lora.enabled=true", "model.lora.dropout=1.5"], "model.lora.dropout must be a number in [0, 1)"),
    (["model.lora.enabled=true", "model.lora.target_modules=[q_proj,lm_head]"],
     "the LM head and embeddings stay frozen"),
])
def test_scale_config_errors(overrides, message):
    from gopd.validate import ConfigError, check_config

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model=qwen3_4b", *overrides])
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(cfg)


# ------------------------------------------------------------------------- offline, fail fast


def offline_env(tmp_path: Path, *, probe: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_HOME=str(tmp_path / "hf_home"), WANDB_MODE="disabled", OMP_NUM_THREADS="1")
    if probe:  # no offline flag: the start-up probe must find the hub unreachable (a closed local port)
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    else:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_offline_hub_model_fails_fast(tmp_path):
    """No offline flag, the hub unreachable: one probe, then one line and exit code 2."""
    setup = [o for o in SETUPS["qwen3_s2w"] if not o.startswith("trainer")]
    proc = subprocess.run(train_cmd(*setup, f"hydra.run.dir={tmp_path / 'run'}"), capture_output=True, text=True,
                          env=offline_env(tmp_path, probe=True), cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, "model.path: 'Qwen/Qwen3-1.7B'", "needs network access or a local path")
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow
def test_offline_hub_dataset_fails_fast(tmp_path, standin):
    proc = subprocess.run(train_cmd("model=qwen3_1_7b", f"model.path={standin}", "data=deepmath",
                                    f"hydra.run.dir={tmp_path / 'run'}"),
                          capture_output=True, text=True, env=offline_env(tmp_path, probe=False), cwd=tmp_path,
                          timeout=120)
    assert_one_line_error(proc, "data.path: 'zwhe99/DeepMath-103K'", "needs network access or a local path")


@pytest.fixture
def hub_offline(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 and an empty cache, in this process; every flag restored afterwards."""
    import datasets
    from huggingface_hub import constants

    from gopd import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    for obj, name in ((constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"),
                      (datasets.config, "HF_DATASETS_OFFLINE")):
        monkeypatch.setattr(obj, name, getattr(obj, name))
    hub.reachable.cache_clear()
    yield
    hub.reachable.cache_clear()


@pytest.mark.parametrize("overrides,message", [
    (["model=olmo3_7b_think_sft"], "model.path: 'allenai/Olmo-3-7B-Think-SFT'"),
    (["model=qwen3_1_7b", "model.path={standin}", "teacher=qwen3_8b"], "teacher.path: 'Qwen/Qwen3-8B'"),
    (["model=olmo3_7b_think_sft", "model.path={standin}", "teacher=hinted", "reference=olmo3_7b_think_sft"],
     "reference.path: 'allenai/Olmo-3-7B-Think-SFT'"),
])
def test_offline_hub_checkpoints_are_config_errors(hub_offline, standin, overrides, message):
    from gopd.validate import ConfigError, check_resources

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[o.format(standin=standin) for o in overrides])
    with pytest.raises(ConfigError) as e:
        check_resources(cfg)
    assert message in str(e.value) and "needs network access or a local path" in str(e.value)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------- the local stand-in model


def build_standin(out: Path) -> Path:
    """A Qwen3-architecture checkpoint with a 32k byte-level BPE vocabulary and a Qwen3-style
    chat template, saved the way hub checkpoints are (config, safetensors, tokenizer files)."""
    import torch
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    from gopd.toy.tokenizer import _pipeline

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    merges = []
    for a in alphabet:  # every pair of byte symbols, in a fixed order, until the vocabulary is full
        for b in alphabet:
            if len(vocab) >= VOCAB:
                break
            merges.append((a, b))
            vocab[a + b] = len(vocab)
    bpe = models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None, continuing_subword_prefix="",
                     end_of_word_suffix="", fuse_unk=False, byte_fallback=False)
    tok = _pipeline(Tokenizer(bpe))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                        chat_template=CHAT_TEMPLATE, padding_side="left",
                                        clean_up_tokenization_spaces=False)
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=64, max_position_embeddings=512,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return build_standin(tmp_path_factory.mktemp("standin") / "qwen3-standin")


def test_standin_is_a_real_looking_checkpoint(standin):
    from gopd.pool import load_tokenizer
    from gopd.prompts import render_prompt

    tok = load_tokenizer(str(standin))
    assert len(tok) >= VOCAB and tok.eos_token == "<|im_end|>"
    text = "Find x: 3x + 4 = 19. \\boxed{5} — déjà vu"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    assert render_prompt(tok, "1+1?", enable_thinking=False) == \
        "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


@pytest.fixture(scope="module")
def deepmath_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("deepmath")
    pd.DataFrame(deepmath_rows(16)).to_parquet(d / "train.parquet")
    return d


def standin_overrides(standin, deepmath_dir, *extra):
    """The Qwen3 + DeepMath configs, pointed at local files, sized for a CPU."""
    mine = ["model=qwen3_4b", f"model.path={standin}", "model.dtype=float32", "data=deepmath",
            f"data.path={deepmath_dir}", "data.holdout=4", "rollout.max_new_tokens=8", "eval.n_problems=4"]
    keys = {o.split("=")[0] for o in mine} | {"model.toy_variant"}
    return [*mine, *[o for o in MINI if o.split("=")[0] not in keys], *extra]


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_standin_trains_two_steps(standin, deepmath_dir, tmp_path, lora, one_thread):
    from transformers import AutoModelForCausalLM

    from gopd.run import run

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=standin_overrides(
            standin, deepmath_dir, "teacher=hinted", "reference=student", "alpha=2", "pressure=positive",
            "grpo_mix=0.5", f"model.lora.enabled={lora}", "model.lora.r=4", "model.lora.alpha=8", "save_final=true"))
    summary = run(cfg, tmp_path, "standin")
    assert summary["status"] == "completed" and summary["steps"] == 2 and summary["train/skipped_steps"] == 0
    # one frozen step-0 copy without LoRA (shared by teacher and reference), none with LoRA
    assert summary["models_loaded"] == (1 if lora else 2)
    rows = read_metrics(tmp_path)
    assert all(float(r["opd/neg_mass"]) == 0 for r in rows[:2])
    # the exact prompts, logged once: the same chat template, the hint in the user turn only
    prompts = (tmp_path / "prompts.txt").read_text()
    student = prompts.split("===== student prompt =====\n")[1].split("=====")[0]
    teacher = prompts.split("===== teacher (hinted) prompt =====\n")[1].split("=====")[0]
    instruction = "Please reason step by step, and put your final answer within \\boxed{}."
    assert student.startswith("<|im_start|>user\nCompute ") and instruction in student
    assert student.endswith("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n\n")
    hint = teacher.split("Hint: ")[1].split("<|im_end|>")[0]
    assert teacher == student.replace(instruction, instruction + "\nHint: " + hint)
    # the trained student saved as a plain checkpoint (LoRA merged in)
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    original = AutoModelForCausalLM.from_pretrained(standin)
    assert final.state_dict().keys() == original.state_dict().keys()


def test_lora_step0_student_is_one_copy_of_the_base(standin, deepmath_dir, one_thread):
    """teacher=hinted weights=initial and reference=student score with the LoRA student's own base
    weights (adapters off): no second copy, and exactly the step-0 student's log-probs."""
    import torch

    from gopd.lora import AdapterDisabled, prepare_student
    from gopd.pool import ModelPool, load_model, load_tokenizer
    from gopd.prompts import PromptBuilder, prompt_style
    from gopd.rollout import HFRollout
    from gopd.scoring import Route, Scorer
    from gopd.teachers import REFERENCES, TEACHERS, Context

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=standin_overrides(standin, deepmath_dir, "teacher=hinted", "reference=student",
                                                           "alpha=2", "model.lora.enabled=true", "model.lora.r=4"))
    tok = load_tokenizer(str(standin))
    student = prepare_student(load_model(str(standin), "float32", trainable=True), cfg.model)
    with torch.no_grad():  # trained adapters: the LoRA student now differs from its base
        for n, p in student.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    pool = ModelPool("float32")
    ctx = Context(student=student, student_path=str(standin), tokenizer=tok, pool=pool,
                  problem_field=cfg.data.problem_field, domain_field=cfg.data.domain_field, chunk_size=64,
                  prompt_style=prompt_style(cfg))
    teacher = TEACHERS["hinted"](cfg.teacher, ctx)
    reference = REFERENCES["student"](cfg.reference, ctx, teacher)
    frozen = [teacher.routes["hinted"].model, reference.routes["student0"].model]
    assert len(pool) == 0 and all(isinstance(m, AdapterDisabled) for m in frozen)
    student_ptrs = {p.data_ptr() for p in student.parameters()}
    for m in frozen:  # the same storage, not a copy
        assert {p.data_ptr() for p in m.parameters()} == student_ptrs
    storage = {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes()
               for m in [student, *frozen] for p in m.parameters()}
    assert sum(storage.values()) == sum(p.numel() * p.element_size() for p in student.parameters())

    rows = [dict(r, **{cfg.data.hint_field: r["final_answer"]}) for r in deepmath_rows(3)]
    batch = HFRollout(student, tok, PromptBuilder(tok, problem_field="question", **prompt_style(cfg)), n=2,
                      max_new_tokens=6).sample(rows)
    r = reference.score(batch.rows, batch.completion_ids, batch.mask, tok.pad_token_id)
    base = load_model(str(standin), "float32")
    r0 = Scorer({"base": Route(base, reference.routes["student0"].prompts)}).score(
        batch.rows, batch.completion_ids, batch.mask, tok.pad_token_id)
    assert torch.allclose(r, r0, atol=1e-5)  # adapters off = the step-0 (base) student
    s = Scorer({"s": Route(student, reference.routes["student0"].prompts)}).score(
        batch.rows, batch.completion_ids, batch.mask, tok.pad_token_id)
    assert (s - r0).abs().max() > 1e-3  # while the student itself runs with its adapters
    assert all(p.requires_grad == ("lora_" in n) for n, p in student.named_parameters())  # flags restored


# ---------------------------------------------------------------------------- the fsdp strategy (runs: test_strategy.py)


def test_fsdp_strategy():
    """trainer=fsdp builds the FSDP2 strategy (Lightning's ModelParallelStrategy, every rank a data-
    parallel shard) carrying its Sharding: bf16 compute with fp32 reduction, ZeRO-3, activation
    checkpointing per decoder layer (HF's, so parameter names stay the model's)."""
    from lightning.pytorch.strategies import ModelParallelStrategy
    from omegaconf import OmegaConf

    from gopd.strategy import Sharding, build, uses_fsdp, wants_activation_checkpointing

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["trainer=fsdp"])
    assert uses_fsdp(cfg.trainer) and wants_activation_checkpointing(cfg.trainer)
    strategy = build(OmegaConf.to_container(cfg.trainer.strategy, resolve=True))
    assert isinstance(strategy, ModelParallelStrategy)
    assert strategy.sharding == Sharding("bfloat16", True, True, "DecoderLayer", False)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        ddp = compose("train", overrides=["trainer=ddp"])
    assert not uses_fsdp(ddp.trainer) and build(ddp.trainer.strategy) == "ddp"
    assert not wants_activation_checkpointing(ddp.trainer)
