"""Where a training step goes: model compute (forward, backward, optimizer, the vocabulary math of
the loss) against everything around it (generate's sampling loop, tokenising, decoding,
verifying, metrics, the Lightning loop), in CPU seconds per step.

    python -m gopd.bench.profile [--steps 10] [--warmup 3] [--threads 1] [HYDRA OVERRIDES...]

One ``src/train.py`` run with a callback that times named regions of the step. Regions nest and
each counts only its own time (a forward inside ``generate`` is forward, not generate), so the
categories add up to the step. A step is timed from its start to the next step's start.
Forward hooks sit on the student, every frozen model and their transformer bodies; ``backward``
is ``torch.autograd.backward``; the optimizer is timed by torch's global step hooks; the rest are
the functions named in ``REGIONS``. The overhead of the timers is a few hundred clock reads a step.
"""

from __future__ import annotations

import argparse
import csv
import functools
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gopd.bench import vs_trl

ROOT = Path(__file__).resolve().parents[3]
MODEL = "model"  # the kind of a category that is model compute; the rest is "around"
# (module, attribute path) -> category; functions looked up where the step calls them.
GENERATE = "generate: sampling loop, KV cache, stopping"
REGIONS = {
    ("transformers.generation.utils", "GenerationMixin.generate"): GENERATE,
    ("gopd.prompts", "PromptBuilder.batch_ids"): "prompts: render + tokenise",
    ("gopd.module", "decode"): "decode completions",
    ("gopd.rewards", "Verification.submit"): "verify answers",
    ("gopd.module", "GOPDModule._response_shape"): "step metrics (lengths, tries)",
    ("gopd.scoring", "token_logprobs_from_hidden"): "LM head + log-softmax (chunked)",
    ("gopd.estimators", "completion_logprobs"): "scoring: pack, pad, gather",
    ("gopd.scoring", "completion_logprobs"): "scoring: pack, pad, gather",
    ("gopd.vocab", "completion_hidden"): "scoring: pack, pad, gather",
    ("gopd.vocab", "vocab_opd_loss"): "vocabulary loss: LM heads + KL (chunked)",
}
KIND = {"backward": MODEL, "optimizer step": MODEL, "LM head + log-softmax (chunked)": MODEL,
        "vocabulary loss: LM heads + KL (chunked)": MODEL, "objective math (gopd.objective)": MODEL}
STEP_REST = "rest of training_step (Python glue)"
BETWEEN = "between steps (Lightning loop, prompt stream, callbacks, logging)"
WORKERS = "verify answers, in worker processes (verify.workers)"  # their CPU, beside the trainer's


class Regions:
    """Exclusive time per category: a stack of open regions, each charged its time minus its children's."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self._stack: list[list] = []  # [category, start, children]

    def enter(self, category: str) -> None:
        self._stack.append([category, time.process_time(), 0.0])

    def exit(self) -> None:
        category, start, children = self._stack.pop()
        spent = time.process_time() - start
        self.totals[category] = self.totals.get(category, 0.0) + spent - children
        if self._stack:
            self._stack[-1][2] += spent

    def wrap(self, fn, category: str):
        @functools.wraps(fn)
        def timed(*a, **k):
            self.enter(category)
            try:
                return fn(*a, **k)
            finally:
                self.exit()
        return timed

    def open(self, category: str) -> bool:
        return any(c == category for c, _, _ in self._stack)

    def take(self) -> dict[str, float]:
        out, self.totals = self.totals, {}
        return out


def _patch(regions: Regions, module: str, path: str, category: str) -> None:
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for p in parents:
        owner = getattr(owner, p)
    setattr(owner, name, regions.wrap(getattr(owner, name), category))


def _install(regions: Regions, pl_module) -> None:
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    from gopd import objective

    for (module, path), category in REGIONS.items():
        _patch(regions, module, path, category)
    for name in objective.__all__ if hasattr(objective, "__all__") else dir(objective):
        fn = getattr(objective, name)
        if callable(fn) and getattr(fn, "__module__", None) == objective.__name__ and not name.startswith("_"):
            setattr(objective, name, regions.wrap(fn, "objective math (gopd.objective)"))
    torch.autograd.backward = regions.wrap(torch.autograd.backward, "backward")
    register_optimizer_step_pre_hook(lambda *a: regions.enter("optimizer step"))
    register_optimizer_step_post_hook(lambda *a: regions.exit())
    roles = [(pl_module.student, "student"), *[(m, "teacher / reference") for m in pl_module._frozen]]
    for model, role in roles:
        for m in (model, getattr(model, "base_model", None)):
            if isinstance(m, torch.nn.Module):
                m.register_forward_pre_hook(lambda *a, role=role: regions.enter(_forward_category(regions, role)))
                m.register_forward_hook(lambda *a: regions.exit())


def _forward_category(regions: Regions, role: str) -> str:
    if regions.open(GENERATE):
        return f"forward: {role}, sampling"
    return f"forward: {role}" + (", with grad" if torch_grad_enabled() else ", no grad")


def torch_grad_enabled() -> bool:
    import torch

    return torch.is_grad_enabled()


def _lightning_callback():
    import lightning as L

    class StepProfile(L.Callback):
        """``+callbacks.step_profile._target_=gopd.bench.profile.StepProfile``: per-step category totals."""

        def __init__(self, out: str):
            self.out, self.regions, self.steps, self._mark = Path(out), Regions(), [], None
            self._workers = 0.0

        def on_train_start(self, trainer, pl_module):
            _install(self.regions, pl_module)
            step = type(pl_module).training_step
            pl_module.training_step = self.regions.wrap(step.__get__(pl_module), STEP_REST)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            now, workers = time.process_time(), pl_module.verification.worker_cpu_s
            if self._mark is not None:
                spent = self.regions.take()
                spent[BETWEEN] = now - self._mark - sum(spent.values())
                if workers > self._workers:
                    spent[WORKERS] = workers - self._workers
                self.steps.append(spent)
            self._workers = workers
            self.regions.take()
            self._mark = now

        def on_train_end(self, trainer, pl_module):
            self.out.write_text(json.dumps(self.steps))

    return StepProfile


def __getattr__(name):  # Lightning is imported only by the run that builds the callback
    if name == "StepProfile":
        return _lightning_callback()
    raise AttributeError(name)


def profile(args, overrides: list[str], tmp: Path) -> tuple[list[dict], Path]:
    out, run_dir = tmp / "profile.json", tmp / "run"
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), f"trainer.max_steps={args.warmup + args.steps + 1}",
           "callbacks.evaluation=null", "callbacks.progress=null", "checkpoint.every_n_steps=0", "save_final=false",
           "logger.wandb.mode=disabled", f"hydra.run.dir={run_dir}",
           "+callbacks.step_profile._target_=gopd.bench.profile.StepProfile", f"+callbacks.step_profile.out={out}",
           *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "WANDB_MODE": "disabled"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        sys.exit(f"error: the profiled run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())[args.warmup:], run_dir / "metrics.csv"


def stage_shares(metrics: Path, warmup: int) -> dict[str, float]:
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("perf/rollout_s")][warmup:]
    stages = {s: sum(float(r[f"perf/{s}_s"]) for r in rows) for s in ("rollout", "score", "update")}
    total = sum(stages.values())
    return {s: v / total for s, v in stages.items()}


def _kind(category: str) -> str:
    return MODEL if category.startswith("forward") else KIND.get(category, "around")


def report(steps: list[dict], shares: dict[str, float], args, overrides: list[str]) -> str:
    """Shares of the mean step (what throughput pays: rare spikes, such as math-verify's symbolic
    path, count), with each category's median beside its mean."""
    categories = sorted({c for s in steps for c in s}, key=lambda c: (_kind(c) != MODEL, c))
    median = {c: statistics.median(s.get(c, 0.0) for s in steps) for c in categories}
    mean = {c: statistics.fmean(s.get(c, 0.0) for s in steps) for c in categories}
    total = sum(mean.values())
    around = sum(v for c, v in mean.items() if _kind(c) != MODEL)
    beyond = around - mean.get(GENERATE, 0.0)  # generate's own loop counted as generate
    lines = [f"{len(steps)} steps after {args.warmup} warm-up, {args.threads} thread(s), model {args.model}; overrides: "
             f"{' '.join(overrides) or '(none)'}",
             f"stages (wall, perf/*_s): rollout {shares['rollout']:.0%}, score {shares['score']:.0%}, "
             f"update {shares['update']:.0%}",
             "| category | kind | CPU ms/step median | mean | share of the mean step |", "|---|---|---:|---:|---:|"]
    for c, v in sorted(mean.items(), key=lambda kv: (_kind(kv[0]) != MODEL, -kv[1])):
        lines.append(f"| {c} | {_kind(c)} | {1000 * median[c]:.1f} | {1000 * v:.1f} | {v / total:.1%} |")
    lines.append(f"| **outside model compute** | | | {1000 * around:.1f} | **{around / total:.1%}** |")
    lines.append(f"| **outside forward, backward and generate** | | | {1000 * beyond:.1f} | **{beyond / total:.1%}** |")
    lines.append(f"| step (sum of means) | | | {1000 * total:.1f} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10, help="profiled steps")
    ap.add_argument("--warmup", type=int, default=3, help="steps run before profiling")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads")
    ap.add_argument("--model", default="toy", choices=["toy", *vs_trl.MODELS],
                    help="toy: the configured models; else vs_trl's random Qwen3-0.6B student and teacher (a real vocabulary)")
    args, overrides = ap.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="gopd-profile-") as tmp:
        models = vs_trl.random_models(args.model, Path(tmp) / "models")
        steps, metrics = profile(args, [*models, *overrides], Path(tmp))
        shares = stage_shares(metrics, args.warmup)
    print(report(steps, shares, args, overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
