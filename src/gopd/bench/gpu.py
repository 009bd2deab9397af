"""GPU check: a few steps of the real training loop, sharded over every visible GPU, on a
random-initialised Qwen3-0.6B (the architecture shipped as ``qwen3_0_6b/config.json``: 28 layers,
151,936-token vocabulary; nothing is downloaded).

    python -m gopd.bench.gpu [--steps 6] [--prompts 8] [--n 4] [--tokens 1024] [--out FILE] [HYDRA OVERRIDES...]

It writes the checkpoint (and a tokenizer covering the whole vocabulary) to a temporary
directory, runs ``gopd.main`` with ``trainer=fsdp`` (bf16 compute, fp32 gradient reduction) on
all GPUs, ``--tokens``-token rollouts (a random model almost never samples EOS) from
``rollout=vllm`` where vLLM imports and ``rollout=hf`` otherwise, the hinted self-teacher and the
step-0 reference on the shipped toy world's prompts, and prints medians over the steps after
the first ``--warmup``: seconds per stage (rollout / score / update, and the engine's weight sync
inside the update), tokens per second, the peak GPU memory torch allocated in each stage (the
fullest rank), and the update's model FLOPs utilisation (``model_flops``: the backward of the
student's forward, no recomputation counted, against the GPU's dense bf16 peak).

Without a GPU it runs a tiny version of itself (the same architecture with 2 layers of width 64,
the full vocabulary, 2 CPU ranks, fp32, 32-token rollouts): the same code path, figures that
only show it runs. Its needs are torch, transformers, lightning and the project's light
dependencies; vLLM is optional.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SHIPPED = Path(__file__).with_name("qwen3_0_6b") / "config.json"
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=32, max_window_layers=2)  # the CPU version: the shipped architecture, narrow and shallow, full vocabulary
# Dense bf16 tensor-core peaks (vendor data sheets, SXM parts); --peak-tflops for any other device.
PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "B200": 2250.0, "L40S": 362.1, "A10G": 70.0}


def wide_tokenizer(vocab_size: int):
    """A byte-level tokenizer with exactly ``vocab_size`` ids, so every id a random model samples
    decodes: the 256 byte symbols, filler tokens ``x<i>`` (no merges reach them: text encodes byte
    by byte), then the toy world's special tokens and chat template."""
    from tokenizers import pre_tokenizers

    from gopd.toy.tokenizer import SPECIAL_TOKENS, assemble

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    fillers = vocab_size - len(alphabet) - len(SPECIAL_TOKENS)
    if fillers < 0:
        raise ValueError(f"vocab_size must be at least {len(alphabet) + len(SPECIAL_TOKENS)}, got {vocab_size}")
    vocab = {ch: i for i, ch in enumerate(alphabet)} | {f"x{i}": len(alphabet) + i for i in range(fillers)}
    return assemble(vocab, [], model_max_length=1 << 20)


def build_checkpoint(out: Path, *, tiny: bool, dtype: str, seed: int = 0):
    """A random-initialised checkpoint of the shipped architecture (``TINY`` applied when asked)
    with its tokenizer, saved to ``out``; returns its config and parameter count (tied ones once)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = json.loads(SHIPPED.read_text()) | (TINY if tiny else {})
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    tok = wide_tokenizer(config.vocab_size)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = None, tok.eos_token_id, tok.pad_token_id
    torch.manual_seed(seed)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initialising 0.6B on a GPU takes a second
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return config, sum(p.numel() for p in model.parameters())


def forward_flops(config, prompt_len: float, completion_len: float) -> float:
    """Model FLOPs of one scoring forward over a prompt and its completion: 2 per multiply-add of
    every projection at every position, the LM head at the completion's positions only (the
    scorers need no prompt logits), and causal attention (QK^T and AV over the visible pairs)."""
    d, hd = config.hidden_size, getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    per_layer = d * (q + 2 * kv) + q * d + 3 * d * config.intermediate_size  # q, k, v, o; gate, up, down
    s = prompt_len + completion_len
    attention = 2 * 2 * q * s * (s + 1) / 2  # QK^T and AV, a multiply-add per visible (query, key) pair and channel
    return config.num_hidden_layers * (2 * per_layer * s + attention) + 2 * d * config.vocab_size * completion_len


def peak_tflops(override: float | None) -> float | None:
    import torch

    if override is not None:
        return override
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def train(model_dir: Path, run_dir: Path, args, *, gpus: int, rollout: str, overrides: list[str]) -> Path:
    """The real loop (``gopd.main``) on the random checkpoint; returns its metrics.csv."""
    cmd = [sys.executable, "-m", "gopd.main", "trainer=fsdp", f"rollout={rollout}", f"model.path={model_dir}",
           f"trainer.max_steps={args.steps}", f"rollout.prompts_per_step={args.prompts}", f"rollout.n={args.n}",
           f"rollout.max_new_tokens={args.tokens}", "eval.every_n_steps=0", f"eval.n_problems={max(gpus, 1) * 2}",
           "eval.max_new_tokens=16", "checkpoint.every_n_steps=0", "save_final=false", "logger.progress=false",
           "logger.wandb.mode=disabled", f"hydra.run.dir={run_dir}"]
    if gpus:
        cmd += [f"trainer.devices={gpus}", "model.dtype=bfloat16"]
    else:  # the tiny CPU version: 2 gloo ranks, fp32 (bf16 collectives are not what is checked here)
        cmd += ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy.mixed_precision=null",
                "model.dtype=float32"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if not gpus:
        env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(cmd + overrides, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"error: the training run failed (exit {proc.returncode}); its output is above")
    return run_dir / "metrics.csv"


def summarise(metrics: Path, warmup: int, config, *, ranks: int, rollouts: int, peak: float | None) -> dict:
    """Medians over the timed steps (rank-reduced rows: seconds are rank means, memory the fullest rank)."""
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("perf/rollout_s")][warmup:]
    if not rows:
        raise SystemExit(f"error: {metrics} has no steps after the {warmup} warm-up steps; raise --steps")

    def med(f):
        return statistics.median(f(r) for r in rows)

    num = {k: med(lambda r, k=k: float(r[k])) for k in rows[0] if k.startswith(("perf/", "train/", "rollout/")) and rows[0][k]}
    prompt, completion = num["train/prompt_len"], num["train/response_len"]
    out = dict(num, step_s=med(lambda r: sum(float(r[f"perf/{s}_s"]) for s in ("rollout", "score", "update"))))
    out["rollout_tok_s"] = med(lambda r: float(r["train/response_len"]) * rollouts * ranks / float(r["perf/rollout_s"]))
    out["train_tok_s"] = (prompt + completion) * rollouts * ranks / (num["perf/score_s"] + num["perf/update_s"])
    backward = 2 * forward_flops(config, prompt, completion) * rollouts  # per rank, per step
    update_s = num["perf/update_s"] - num.get("perf/sync_s", 0.0)
    out["update_tflops"] = backward / update_s / 1e12
    out["update_mfu"] = out["update_tflops"] / peak if peak else None
    return out


def report(r: dict, *, device: str, ranks: int, args, rollout: str, params: int, peak: float | None) -> str:
    mem = [f"{s} {r[f'perf/mem_{s}_gb']:.1f}" for s in ("rollout", "score", "update") if f"perf/mem_{s}_gb" in r]
    mfu = f"{100 * r['update_mfu']:.1f}% of {peak:.0f} TFLOP/s" if r["update_mfu"] is not None else "n/a (no peak known)"
    lines = [
        f"gopd.bench.gpu: {device}, {ranks} rank(s), trainer=fsdp, rollout={rollout}",
        f"model: random {params / 1e9:.3f}B-parameter Qwen3, {args.prompts} prompts x {args.n} rollouts per rank, "
        f"up to {args.tokens} new tokens; medians over steps {args.warmup}..{args.steps - 1}",
        "",
        "| stage | seconds |",
        "|---|---|",
        f"| rollout | {r['perf/rollout_s']:.3f} |",
        f"| score (student + teacher + reference forwards) | {r['perf/score_s']:.3f} |",
        f"| update (backward, clip, AdamW, engine sync) | {r['perf/update_s']:.3f} |",
        f"| of which engine weight sync | {r.get('perf/sync_s', float('nan')):.3f} |",
        f"| step | {r['step_s']:.3f} |",
        "",
        f"tokens per rollout: prompt {r['train/prompt_len']:.0f}, completion {r['train/response_len']:.0f}",
        f"rollout tokens/s (all ranks): {r['rollout_tok_s']:.0f}",
        f"scored + trained tokens/s (prompt + completion, all ranks): {r['train_tok_s']:.0f}",
        f"peak memory allocated per stage, GiB (fullest rank): {', '.join(mem) if mem else 'n/a (no GPU)'}",
        f"update: {r['update_tflops']:.2f} model TFLOP/s per rank, MFU {mfu}",
    ]
    if "rollout/logp_gap_max" in r:  # the engine's sampling log-probs vs the trainer's, on the same tokens
        lines.append(f"engine vs trainer log-prob gap, nats: mean {r['rollout/logp_gap_mean']:.2e}, "
                     f"max {r['rollout/logp_gap_max']:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="training steps (the first --warmup are not timed)")
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the medians (start-up, compilation)")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step per GPU")
    ap.add_argument("--n", type=int, default=4, help="rollouts per prompt")
    ap.add_argument("--tokens", type=int, default=1024, help="new tokens per rollout")
    ap.add_argument("--rollout", choices=("auto", "hf", "vllm"), default="auto", help="auto: vllm where it imports")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak (else looked up)")
    ap.add_argument("--tiny", action="store_true", help="the CPU version even on a GPU machine")
    ap.add_argument("--out", type=Path, default=None, help="also write the printed table here")
    args, overrides = ap.parse_known_args(argv)
    gpus = 0 if args.tiny else torch.cuda.device_count()
    if not gpus:
        args.tokens = min(args.tokens, 32)
        args.prompts = min(args.prompts, 2)
        args.n = min(args.n, 2)
    if args.steps <= args.warmup:
        raise SystemExit(f"error: --steps ({args.steps}) must exceed --warmup ({args.warmup})")
    rollout = args.rollout
    if rollout == "auto":
        import importlib.util

        rollout = "vllm" if importlib.util.find_spec("vllm") else "hf"
    with tempfile.TemporaryDirectory(prefix="gopd-bench-gpu-") as tmp:
        config, params = build_checkpoint(Path(tmp) / "model", tiny=not gpus, dtype="bfloat16" if gpus else "float32")
        metrics = train(Path(tmp) / "model", Path(tmp) / "run", args, gpus=gpus, rollout=rollout, overrides=overrides)
        peak = peak_tflops(args.peak_tflops) if gpus else args.peak_tflops
        ranks = gpus or 2
        r = summarise(metrics, args.warmup, config, ranks=ranks, rollouts=args.prompts * args.n, peak=peak)
    device = f"{gpus} x {torch.cuda.get_device_name()}" if gpus else "CPU (tiny version)"
    text = report(r, device=device, ranks=ranks, args=args, rollout=rollout, params=params, peak=peak)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
