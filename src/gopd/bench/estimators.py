"""Benchmark: seconds per training step of estimator=token / topk / full on the toy world.

    python -m gopd.bench.estimators [--steps 40] [--threads 2] [HYDRA OVERRIDES...]
    python -m gopd.bench.estimators teacher=hinted --steps 60

Runs ``src/train.py`` once per estimator, one after another in this process's machine state
(same overrides, seed and thread count; held-out evaluation cut to a handful of problems), and
reads each run's per-step ``perf/rollout_s``, ``perf/score_s`` and ``perf/update_s`` from its
``metrics.csv``. Medians over the steps after the first five (warm-up) are printed side by side
with the ratio to ``token``. Run it on an otherwise idle machine: the studies' own timings mix
jobs that ran under different loads.
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
ESTIMATORS = ("token", "topk", "full")
STAGES = ("perf/rollout_s", "perf/score_s", "perf/update_s")
WARMUP = 5


def _run(estimator: str, steps: int, threads: int, overrides: list[str], out: Path) -> Path:
    run_dir = out / estimator
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), f"estimator={estimator}", f"trainer.max_steps={steps}",
           "eval.n_problems=20", "eval.every_n_steps=0", "checkpoint.every_n_steps=0", "save_final=false",
           "logger.progress=false", "logger.wandb.mode=disabled", f"hydra.run.dir={run_dir}", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run_dir / "metrics.csv"


def _medians(metrics: Path) -> dict[str, float]:
    rows = [r for r in csv.DictReader(metrics.open()) if r.get(STAGES[0])][WARMUP:]
    if not rows:
        raise SystemExit(f"error: {metrics} has no timed steps after the {WARMUP} warm-up steps; raise --steps")
    out = {s: statistics.median(float(r[s]) for r in rows) for s in STAGES}
    out["step_s"] = statistics.median(sum(float(r[s]) for s in STAGES) for r in rows)
    out["tokens"] = statistics.median(float(r["train/response_len"]) for r in rows)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="training steps per estimator (the first 5 are not timed)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each run (OMP_NUM_THREADS)")
    args, overrides = ap.parse_known_args(argv)
    with tempfile.TemporaryDirectory(prefix="gopd-bench-est-") as tmp:
        res = {e: _medians(_run(e, args.steps, args.threads, overrides, Path(tmp))) for e in ESTIMATORS}
    print(f"median seconds per step over steps {WARMUP}..{args.steps - 1}, {args.threads} thread(s), overrides: "
          f"{' '.join(overrides) or '(none)'}")
    print(f"{'estimator':<10}{'rollout':>10}{'score':>10}{'update':>10}{'step':>10}{'vs token':>10}")
    for e, r in res.items():
        print(f"{e:<10}{r['perf/rollout_s']:>10.3f}{r['perf/score_s']:>10.3f}{r['perf/update_s']:>10.3f}"
              f"{r['step_s']:>10.3f}{r['step_s'] / res['token']['step_s']:>9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
