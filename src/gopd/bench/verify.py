"""Benchmark: how much of verification ``verify.workers`` hides behind a step's forwards.

    python -m gopd.bench.verify [--rows 64] [--tokens 128] [--forwards 2] [--rounds 5] [--workers 0 1 2]

Completions whose boxed answers need math_verify's symbolic path (fractions, roots, intervals,
polynomials: the kind of final answers real math data has; the toy world's integer answers
almost never get there) are verified while the toy world's teacher runs ``--forwards`` no-grad
forwards over ``--rows`` x ``--tokens`` tokens, as the module does: submit, forwards, then the
rewards. Per worker count, alternated over ``--rounds``: the wall seconds of forwards + rewards
(median), the forwards alone, and verification alone (inline, CPU). One torch thread.
"""

from __future__ import annotations

import argparse
import statistics
import time

# (boxed prediction, reference answer): a third right in another form, the rest wrong; all miss the fast path
PAIRS = [("\\frac{4}{3}", "\\frac{3}{4}"), ("0.75", "\\frac{3}{4}"), ("\\sqrt{11}", "2\\sqrt{3}"),
         ("\\sqrt{12}", "2\\sqrt{3}"), ("\\frac{\\pi}{3}", "\\frac{\\pi}{2}"), ("[1,3)", "(1, 3]"),
         ("x^2-1", "x^2+1"), ("2e", "e^{2}"), ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"),
         ("3\\pi", "9.42"), ("\\infty", "0"), ("\\binom{5}{2}", "10")]


def batch(rows: int) -> tuple[list[dict], list[str]]:
    pairs = [PAIRS[i % len(PAIRS)] for i in range(rows)]
    return [{"answer": g} for _, g in pairs], [f"The answer is \\boxed{{{p}}}." for p, _ in pairs]


def run_forwards(model, ids, forwards: int) -> None:
    import torch

    with torch.no_grad():
        for _ in range(forwards):
            model(input_ids=ids)


def step(verification, model, ids, forwards: int, rows, texts) -> float:
    """Wall seconds of one step's part: submit, the forwards, then the rewards (as the module does)."""
    start = time.perf_counter()
    pending = verification.submit(rows, texts, "cpu")
    run_forwards(model, ids, forwards)
    pending()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=64, help="rollouts per step")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per rollout in the forwards")
    ap.add_argument("--forwards", type=int, default=2, help="no-grad forwards per step (teacher, reference, ...)")
    ap.add_argument("--rounds", type=int, default=5, help="steps per worker count, alternated")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="verify.workers values to compare")
    args = ap.parse_args(argv)

    import torch

    from gopd.pool import load_model
    from gopd.rewards import Verification
    from gopd.toy.build import shipped_dir
    from gopd.verifier import verify_batch

    torch.set_num_threads(1)
    model = load_model(str(shipped_dir("full") / "teacher")).eval()
    ids = torch.randint(3, model.config.vocab_size, (args.rows, args.tokens), generator=torch.Generator().manual_seed(0))
    rows, texts = batch(args.rows)
    answers = [r["answer"] for r in rows]
    verify_batch(texts[:len(PAIRS)], answers[:len(PAIRS)])  # imports math_verify outside the timings
    engines = {w: Verification("answer", workers=w) for w in args.workers}
    try:
        for v in engines.values():  # start the pools and warm up every path
            step(v, model, ids, args.forwards, rows, texts)
        walls: dict[int, list[float]] = {w: [] for w in args.workers}
        alone, verify_cpu = [], []
        for _ in range(args.rounds):
            for w, v in engines.items():
                walls[w].append(step(v, model, ids, args.forwards, rows, texts))
            start = time.perf_counter()
            run_forwards(model, ids, args.forwards)
            alone.append(time.perf_counter() - start)
            start = time.process_time()
            verify_batch(texts, answers)
            verify_cpu.append(time.process_time() - start)
    finally:
        for v in engines.values():
            v.close()
    forwards, verification = statistics.median(alone), statistics.median(verify_cpu)
    print(f"{args.rows} rollouts, {args.forwards} forward(s) of {args.rows} x {args.tokens} tokens, "
          f"{args.rounds} rounds, 1 torch thread; medians")
    print(f"forwards alone: {forwards:.3f} s wall; verification alone (inline): {verification:.3f} CPU s "
          f"({1000 * verification / args.rows:.1f} ms per answer)")
    print("| verify.workers | step wall s (forwards + rewards) | vs inline | verification left showing |")
    print("|---:|---:|---:|---:|")
    inline = statistics.median(walls[args.workers[0]])
    for w in args.workers:
        wall = statistics.median(walls[w])
        shown = max(wall - forwards, 0.0) / verification if verification else 0.0
        print(f"| {w} | {wall:.3f} | {inline / wall:.2f}x | {shown:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
