"""Benchmark: one ``estimator=full`` scoring + loss + backward step, chunked vs naive.

    python -m gopd.bench.vocab [--vocab 151936] [--tokens 1024,4096] [--chunk 128] [--mem-limit-gb 14]

Three random Qwen2 models (student, teacher, reference: 2 layers, d=128, the given vocabulary)
score 2 completions of ``tokens / 2`` positions each. Variants, each in its own fresh process:

- ``naive``     whole ``[B, T, V]`` fp32 log-softmaxes of the three models + autograd
                (``vocab.naive_vocab_opd_loss``);
- ``chunked``   the training path, ``vocab.vocab_opd_loss`` (chunks of positions, fused gradient);
- ``recompute`` the same chunks under ``torch.utils.checkpoint`` (backward recomputes each chunk's
                three heads): the alternative design, for comparison (no diagnostics).

Peak memory is the growth of the process's max RSS over what the models and inputs already hold;
wall and CPU (process) time are each the best of ``--repeats`` full steps (forward + backward).
On a machine shared with other jobs, wall time is noisy: CPU time is the steadier comparison. A worker whose address space
would exceed ``--mem-limit-gb`` reports "over limit" instead of pushing a shared machine to OOM.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VARIANTS = ("naive", "chunked", "recompute")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


class _FixedPrompts:
    """A PromptBuilder stand-in: every row gets the same prompt ids (no tokenizer needed)."""

    def __init__(self, ids: list[int]):
        self.ids = ids

    def batch_ids(self, rows):
        return [list(self.ids) for _ in rows]


def _model(vocab: int, seed: int, trainable: bool):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=8192,
                      tie_word_embeddings=True)
    return Qwen2ForCausalLM(cfg).float().train(trainable).requires_grad_(trainable)


def _recompute_loss(student, teacher, reference, batch, pad_id, *, chunk_size: int, alpha: float):
    """The checkpoint-per-chunk design: backward recomputes the chunk's student/teacher/reference heads."""
    import torch
    from torch.nn.functional import linear
    from torch.utils.checkpoint import checkpoint

    from gopd import objective
    from gopd.vocab import _Plan, completion_hidden

    plan = _Plan(teacher, reference, batch, pad_id, estimator="full", k=32, alpha=alpha, pressure="full",
                 clip=None, correct=None)
    hidden = completion_hidden(student, batch.prompt_ids, batch.completion_ids, batch.mask, pad_id)
    head = student.get_output_embeddings()

    def chunk(h, weight, t_name, r_name, rc, cc):
        s = torch.log_softmax(linear(h, weight).float(), dim=-1)
        adv, _, _ = plan.chunk(s.detach(), t_name, r_name, rc, cc)
        return objective.vocab_opd_loss_terms(s, adv).sum()

    total = 0.0
    for t_name, r_name, rows, cols in plan.groups():
        for i in range(0, rows.numel(), chunk_size):
            rc, cc = rows[i : i + chunk_size], cols[i : i + chunk_size]
            total = total + checkpoint(chunk, hidden[rc, cc], head.weight, t_name, r_name, rc, cc, use_reentrant=False)
    return total / batch.mask.sum()


def _worker(variant: str, vocab: int, tokens: int, chunk: int, repeats: int, mem_limit_gb: float, threads: int) -> dict:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)

    from gopd.rollout import RolloutBatch
    from gopd.scoring import Route, Scorer
    from gopd.vocab import naive_vocab_opd_loss, vocab_opd_loss

    student = _model(vocab, 0, trainable=True)
    teacher = Scorer({"teacher": Route(_model(vocab, 1, False), _FixedPrompts(list(range(10, 40))))})
    reference = Scorer({"ref": Route(_model(vocab, 2, False), _FixedPrompts(list(range(10, 26))))})
    g = torch.Generator().manual_seed(0)
    rows = [{"problem": "a"}, {"problem": "b"}]
    ids = torch.randint(3, vocab, (2, tokens // 2), generator=g)
    batch = RolloutBatch(rows, [list(range(10, 26))] * 2, ids, torch.ones_like(ids), torch.tensor([0, 1]))
    kw = dict(alpha=2.0)

    def step():
        if variant == "naive":
            loss = naive_vocab_opd_loss(student, teacher, reference, batch, 0, **kw).loss
        elif variant == "chunked":
            loss = vocab_opd_loss(student, teacher, reference, batch, 0, chunk_size=chunk, **kw).loss
        else:
            loss = _recompute_loss(student, teacher, reference, batch, 0, chunk_size=chunk, **kw)
        loss.backward()
        student.zero_grad(set_to_none=True)
        return float(loss.detach())

    limit = int(mem_limit_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # fail this worker, not the machine
    base = _maxrss_mb()
    times, cpu, loss = [], [], None
    try:
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = step()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    except (RuntimeError, MemoryError) as e:
        return {"error": f"over the {mem_limit_gb:g} GB limit ({type(e).__name__})", "threads": torch.get_num_threads()}
    return {"time_s": min(times), "cpu_s": min(cpu), "peak_extra_mb": _maxrss_mb() - base, "loss": loss, "threads": torch.get_num_threads()}


def _fmt(r: dict, key: str, spec: str) -> str:
    return format(r[key], spec) if key in r else "-".rjust(len(format(0.0, spec)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", type=int, default=151_936)
    p.add_argument("--tokens", default="1024,4096", help="comma-separated total positions (2 sequences each)")
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--mem-limit-gb", type=float, default=14.0, help="address-space cap per worker")
    p.add_argument("--threads", type=int, default=0, help="torch threads per worker (0 = torch's default); 1 gives "
                   "steady CPU times on a busy machine (idle threads spin-wait and inflate CPU time)")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(a.worker, a.vocab, int(a.tokens), a.chunk, a.repeats, a.mem_limit_gb, a.threads)))
        return
    variants = a.variants.split(",")
    print(f"estimator=full scoring + loss + backward, fp32 CPU, V={a.vocab}, 3 models (2 layers, d=128), "
          f"chunk={a.chunk}, best of {a.repeats}")
    for tokens in (int(t) for t in a.tokens.split(",")):
        res = {}
        for variant in variants:
            cmd = [sys.executable, "-m", "gopd.bench.vocab", "--worker", variant, "--vocab", str(a.vocab),
                   "--tokens", str(tokens), "--chunk", str(a.chunk), "--repeats", str(a.repeats),
                   "--mem-limit-gb", str(a.mem_limit_gb), "--threads", str(a.threads)]
            res[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"\n2 x {tokens // 2} completion tokens ({next(iter(res.values()))['threads']} threads)")
        print(f"{'':11s}{'wall s':>10s}{'cpu s':>10s}{'peak extra MB':>16s}{'loss':>12s}")
        for variant in variants:
            r = res[variant]
            print(f"{variant:11s}{_fmt(r, 'time_s', '10.2f')}{_fmt(r, 'cpu_s', '10.2f')}"
                  f"{_fmt(r, 'peak_extra_mb', '16.0f')}{_fmt(r, 'loss', '12.5f')}  {r.get('error', '')}")
        n = res.get("naive", {})
        for variant in variants:
            r = res[variant]
            if variant != "naive" and "time_s" in r and "time_s" in n:
                print(f"{variant}/naive: wall {r['time_s'] / n['time_s']:.2f}x, cpu {r['cpu_s'] / n['cpu_s']:.2f}x, "
                      f"memory 1/{n['peak_extra_mb'] / max(r['peak_extra_mb'], 1e-9):.1f}")


if __name__ == "__main__":
    main()
