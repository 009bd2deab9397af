"""Benchmark: chunked sampled-token log-probs vs the naive ``log_softmax(...).gather``.

    python -m gopd.bench.logprobs [--vocab 151936] [--tokens 8192] [--chunk 256]

Each variant runs in its own fresh process on identical fp32 logits ``[2, T/2, V]``; peak memory
is the growth of the process's max RSS over what the inputs already hold, time the best of
``--repeats`` runs. Both are printed side by side with their ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _worker(variant: str, vocab: int, tokens: int, chunk: int, repeats: int) -> dict:
    import torch

    from gopd.logprobs import token_logprobs

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, tokens // 2, vocab, generator=g)
    targets = torch.randint(0, vocab, (2, tokens // 2), generator=g)
    if variant == "naive":
        def fn():
            return torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    else:
        def fn():
            return token_logprobs(logits, targets, chunk_size=chunk)
    base = _maxrss_mb()
    times, out = [], None
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t0)
            del out
    return {"time_s": min(times), "peak_extra_mb": _maxrss_mb() - base, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--tokens", type=int, default=8_192, help="total positions (2 sequences)")
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--worker", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(a.worker, a.vocab, a.tokens, a.chunk, a.repeats)))
        return
    res = {}
    for variant in ("naive", "chunked"):
        cmd = [sys.executable, "-m", "gopd.bench.logprobs", "--worker", variant, "--vocab", str(a.vocab),
               "--tokens", str(a.tokens), "--chunk", str(a.chunk), "--repeats", str(a.repeats)]
        res[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    n, c = res["naive"], res["chunked"]
    print(f"sampled-token log-probs, fp32 CPU, V={a.vocab}, {a.tokens} tokens, chunk={a.chunk}, "
          f"{n['threads']} threads, best of {a.repeats}")
    print(f"{'':10s}{'time s':>10s}{'peak extra MB':>16s}")
    print(f"{'naive':10s}{n['time_s']:>10.3f}{n['peak_extra_mb']:>16.1f}")
    print(f"{'chunked':10s}{c['time_s']:>10.3f}{c['peak_extra_mb']:>16.1f}")
    print(f"ratio chunked/naive: time {c['time_s'] / n['time_s']:.3f}x (target <= 1.1), "
          f"memory 1/{n['peak_extra_mb'] / max(c['peak_extra_mb'], 1e-9):.1f} (target <= 1/16)")


if __name__ == "__main__":
    main()
