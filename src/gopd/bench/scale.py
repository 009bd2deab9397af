"""Benchmark: one training job on one process, on 2 DDP ranks and on 2 FSDP2 ranks, each with
rollout=hf and rollout=vllm: seconds per step by stage and rollout tokens per second.

    python -m gopd.bench.scale [--steps 30] [--prompts 8] [HYDRA OVERRIDES...]

Every arm does the same work per step: ``--prompts`` prompts x ``rollout.n`` rollouts, on one
process or split over the ranks (``rollout.prompts_per_step`` halved per rank). Each arm is
``src/train.py`` in its own process(es), one after another; the machine's cores are shared the
same way in each (one process: ``OMP_NUM_THREADS`` = the cores; two ranks: half each). The
figures are medians over the steps after the first five, read from the runs' ``metrics.csv``
(the perf columns are rank means; ``rollout tok/s`` counts every rank's tokens).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STAGES = ("perf/rollout_s", "perf/score_s", "perf/update_s")
WARMUP = 5
TRAINERS = {"1 process": [], "ddp x2": ["trainer=ddp"], "fsdp x2": ["trainer=fsdp", "trainer.strategy.mixed_precision=null"]}
ROLLOUTS = ("hf", "vllm")


def _run(name: str, trainer: list[str], rollout: str, args, overrides: list[str], out: Path) -> Path:
    ranks = 2 if trainer else 1
    run_dir = out / f"{name.replace(' ', '_')}_{rollout}"
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), *trainer, f"rollout={rollout}",
           f"trainer.max_steps={args.steps}", f"rollout.prompts_per_step={args.prompts // ranks}",
           "eval.n_problems=8", "eval.every_n_steps=0", "checkpoint.every_n_steps=0", "save_final=false",
           "logger.progress=false", "logger.wandb.mode=disabled", f"hydra.run.dir={run_dir}", *overrides]
    if ranks > 1:
        cmd += ["trainer.accelerator=cpu", f"trainer.devices={ranks}", "trainer.precision=32-true"]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(args.cores // ranks, 1)), "WANDB_MODE": "disabled"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run_dir / "metrics.csv"


def medians(metrics: Path, rollouts_per_step: int) -> dict[str, float]:
    rows = [r for r in csv.DictReader(metrics.open()) if r.get(STAGES[0])][WARMUP:]
    if not rows:
        raise SystemExit(f"error: {metrics} has no timed steps after the {WARMUP} warm-up steps; raise --steps")
    out = {s: statistics.median(float(r[s]) for r in rows) for s in STAGES}
    out["step_s"] = statistics.median(sum(float(r[s]) for s in STAGES) for r in rows)
    out["rollout_tok_s"] = statistics.median(float(r["train/response_len"]) * rollouts_per_step / float(r[STAGES[0]])
                                             for r in rows)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30, help="training steps per arm (the first 5 are not timed)")
    ap.add_argument("--prompts", type=int, default=8, help="prompts per step, all ranks together (even)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="CPU threads shared by an arm's processes")
    ap.add_argument("--rollouts", nargs="+", default=list(ROLLOUTS), choices=ROLLOUTS, help="rollout engines to time")
    args, overrides = ap.parse_known_args(argv)
    n = next((int(o.split("=", 1)[1]) for o in overrides if o.startswith("rollout.n=")), 1)
    res = {}
    with tempfile.TemporaryDirectory(prefix="gopd-bench-scale-") as tmp:
        for rollout in args.rollouts:
            for name, trainer in TRAINERS.items():
                res[name, rollout] = medians(_run(name, trainer, rollout, args, overrides, Path(tmp)), args.prompts * n)
    base = res["1 process", args.rollouts[0]]["step_s"]
    print(f"median over steps {WARMUP}..{args.steps - 1}; {args.prompts} prompts x {n} per step; {args.cores} cores; "
          f"overrides: {' '.join(overrides) or '(none)'}")
    print(f"{'trainer':<11}{'rollout':<8}{'rollout s':>10}{'score s':>9}{'update s':>9}{'step s':>8}"
          f"{'vs first':>9}{'rollout tok/s':>15}")
    for (name, rollout), r in res.items():
        print(f"{name:<11}{rollout:<8}{r['perf/rollout_s']:>10.3f}{r['perf/score_s']:>9.3f}{r['perf/update_s']:>9.3f}"
              f"{r['step_s']:>8.3f}{r['step_s'] / base:>8.2f}x{r['rollout_tok_s']:>15.0f}")
    return 0


if __name__ == "__main__":  # vLLM may start worker processes: the guard keeps them from re-running this
    raise SystemExit(main())
