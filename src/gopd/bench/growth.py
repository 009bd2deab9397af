"""How a step's cost grows: CPU seconds per step against ``rollout.max_new_tokens`` and against
``rollout.prompts_per_step``, with HF generate and with vLLM rollouts.

    python -m gopd.bench.growth [--tokens 16 32 64 128 256] [--prompts 8 16 32 64 128]
                                [--rollouts hf vllm] [--steps 4] [--threads 1] [HYDRA OVERRIDES...]

Every completion runs to the budget (EOS suppressed until ``max_new_tokens``), so a point's cost
is that of exactly ``prompts x tokens`` completion tokens; the tokens axis holds the prompts at
32, the prompts axis holds the tokens at 64. The job is ``gopd.bench.vs_trl``'s (the RL teacher,
``estimator=full`` unless overridden). Each point is its own process, timed as that bench times
a step; ``x2`` is a point's median CPU s/step over the previous point's: 2.0 where cost grows in
proportion (each axis doubles), less where a fixed cost per step still weighs, more where it grows
faster than the tokens (attention over longer sequences, caches that no longer fit).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from gopd.bench import vs_trl

ENGINES = {"hf": "gopd full", "vllm": "gopd full, vLLM rollouts"}  # vs_trl's arms


def points(args) -> list[tuple[str, int, int]]:
    """(axis, prompts, tokens) in order: the tokens axis, then the prompts axis."""
    return [("tokens", 32, t) for t in args.tokens] + [("prompts", p, 64) for p in args.prompts]


def measure(args, overrides: list[str], tmp: Path) -> dict[tuple[str, str, int, int], dict]:
    out, k = {}, 0
    for engine in args.rollouts:
        for axis, prompts, tokens in points(args):
            sizes = [f"rollout.prompts_per_step={prompts}", f"rollout.max_new_tokens={tokens}"]
            run = vs_trl._worker(ENGINES[engine], args, [*sizes, *overrides], tmp, k, fixed_length=True)
            out[engine, axis, prompts, tokens] = run
            k += 1
            print(f"{engine} {prompts} x {tokens}: {statistics.median(run['cpu']):.3f} s/step", file=sys.stderr,
                  flush=True)
    return out


def report(results: dict, args, overrides: list[str]) -> str:
    lines = [f"CPU s/step, median of {args.steps} steps after {args.warmup} warm-up, {args.threads} thread(s), "
             f"completions at the full budget; overrides: {' '.join(overrides) or '(none)'}",
             "| rollout | prompts x tokens | completion tokens/step | CPU s/step | wall s/step | ms per 1k tokens | x2 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    previous = {}
    for (engine, axis, prompts, tokens), run in results.items():
        cpu = statistics.median(run["cpu"])
        per_k = 1000 * cpu / (prompts * tokens) * 1000
        before = previous.get((engine, axis))
        growth = f"{cpu / before:.2f}" if before else "-"
        previous[engine, axis] = cpu
        lines.append(f"| {engine} | {prompts} x {tokens} | {statistics.mean(run['tokens']):.0f} | {cpu:.3f} | {statistics.median(run['wall']):.3f} | "
                     f"{per_k:.1f} | {growth} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[16, 32, 64, 128, 256], help="max_new_tokens, prompts at 32")
    ap.add_argument("--prompts", type=int, nargs="+", default=[8, 16, 32, 64, 128], help="prompts_per_step, tokens at 64")
    ap.add_argument("--rollouts", nargs="+", default=list(ENGINES), choices=list(ENGINES), help="rollout engines")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per point")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each process")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    args, overrides = ap.parse_known_args(argv)
    args.device, args.precision = "cpu", "32-true"  # vs_trl's workers read them; growth counts CPU seconds
    with tempfile.TemporaryDirectory(prefix="gopd-growth-") as tmp:
        results = measure(args, overrides, Path(tmp))
    print(report(results, args, overrides))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
