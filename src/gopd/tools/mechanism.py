"""Does the hint raise the answer? The hinted teacher's log-prob ``q`` of the student's own sampled
tokens against the student's ``s``, split by correct vs wrong rollouts and by answer tokens (those
that spell the completion's extracted answer, ``data.answer_extract``) vs the rest.

    python -m gopd.tools.mechanism model=smollm2_135m data=word_problems rollout.n=4 \\
        rollout.max_new_tokens=96 --prompts 64 --out results/smollm2_mechanism/table

Positional arguments are the trainer's Hydra overrides (student, data, prompts, sampling, seed);
rollouts are sampled and scored as ``gopd.tools.diagnose`` does (the trainer's ``HFRollout`` and
``Scorer``; the teacher is the step-0 student with the hint in its prompt). Per group: rollouts,
tokens, mean ``s``, mean ``q``, mean ``q - s`` (the G-OPD signal at alpha = 1), and the share of
tokens with ``q > s``. Printed, and saved as ``<out>.csv`` / ``<out>.md`` with a settings line.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import time
from pathlib import Path

from gopd.tools import trainconf

def answer_tokens(tokenizer, ids, mask, how: str = "boxed"):
    """``[B, T]`` bool: the completion tokens whose text overlaps the last occurrence of the answer
    ``gopd.verifier.extract`` reads (none where it reads no answer)."""
    import torch

    from gopd.verifier import extract

    out = torch.zeros_like(mask, dtype=torch.bool)
    for b in range(ids.shape[0]):
        n = int(mask[b].sum())
        row = ids[b, :n].tolist()
        ends = [len(tokenizer.decode(row[:k + 1], skip_special_tokens=True)) for k in range(n)]
        text = tokenizer.decode(row, skip_special_tokens=True)
        answer = extract(text, how)
        start = text.rfind(answer) if answer else -1
        if start < 0:
            continue
        stop = start + len(answer)
        for k in range(n):
            begin = ends[k - 1] if k else 0
            out[b, k] = begin < stop and ends[k] > start
    return out


def split_table(s, q, mask, correct, answer) -> list[dict]:
    """One row per ``outcome`` (correct | wrong rollouts) x ``tokens`` (answer | other | all): the
    rollouts and tokens counted, mean ``s`` and ``q``, mean ``q - s``, the share with ``q > s``."""
    rows = []
    for outcome, pick in (("correct", correct), ("wrong", ~correct)):
        for part, tok in (("answer", answer), ("other", ~answer), ("all", None)):
            keep = mask.bool() & pick[:, None] & (tok if tok is not None else True)
            n_tok, n_roll = int(keep.sum()), int(pick.sum())
            ss, qq = s[keep], q[keep]
            rows.append({"outcome": outcome, "tokens": part, "rollouts/n": n_roll, "tokens/n": n_tok,
                         "s/mean": float(ss.mean()) if n_tok else float("nan"),
                         "q/mean": float(qq.mean()) if n_tok else float("nan"),
                         "q-s/mean": float((qq - ss).mean()) if n_tok else float("nan"),
                         "q>s/frac": float((qq > ss).float().mean()) if n_tok else float("nan")})
    return rows


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def save(rows: list[dict], meta: dict, out: str) -> list[Path]:
    base = Path(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    keys = list(rows[0])
    with open(base.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    lines = [f"<!-- {json.dumps(meta, sort_keys=True)} -->", "| " + " | ".join(keys) + " |",
             "|" + "---|" * len(keys)] + ["| " + " | ".join(_fmt(r[k]) for k in keys) + " |" for r in rows]
    base.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return [base.with_suffix(".csv"), base.with_suffix(".md")]


def main(argv: list[str] | None = None) -> int:
    ap = trainconf.parser("python -m gopd.tools.mechanism", __doc__, "student, data, prompts, rollout.*, seed")
    ap.add_argument("--prompts", type=int, default=64, help="training problems sampled (rollout.n rollouts each)")
    ap.add_argument("--hints", nargs="+", default=None, help="hint columns, one teacher each (default: data.hint_fields)")
    ap.add_argument("--batch-size", type=int, default=32, help="prompts per generate call, rollouts per scoring call")
    ap.add_argument("--out", default=None, help="output path without suffix (default outputs/mechanism/<time>)")
    args = ap.parse_args(argv)
    conf = trainconf.load_or_exit(args.overrides)
    cfg = conf.cfg
    hints = list(args.hints or cfg.data.hint_fields)
    import torch

    from gopd.data import load_splits
    from gopd.pool import load_model, load_tokenizer
    from gopd.rollout import decode
    from gopd.scoring import Route, Scorer
    from gopd.tools.diagnose import Prompts, sample_batch, score_in_chunks
    from gopd.verifier import verify_batch

    t0 = time.perf_counter()
    train, _, _ = load_splits(cfg.data)
    missing = [h for h in hints if h not in train.column_names]
    if missing:
        print(f"error: --hints: column {missing[0]!r} not in the data (columns: {', '.join(train.column_names)})",
              file=sys.stderr)
        return 2
    remote = bool(cfg.model.get("trust_remote_code", False))
    tok = load_tokenizer(cfg.model.path, trust_remote_code=remote)
    student = load_model(cfg.model.path, cfg.model.dtype, trust_remote_code=remote)
    prompts = Prompts.from_config(cfg)
    idx = sorted(random.Random(cfg.seed).sample(range(len(train)), min(args.prompts, len(train))))
    r = cfg.rollout
    batch = sample_batch(student, tok, train.select(idx).to_list(), n=r.n, max_new_tokens=r.max_new_tokens,
                         temperature=r.temperature, top_p=r.top_p, seed=cfg.seed, prompts=prompts,
                         prompts_per_call=args.batch_size)

    def score(builder):
        scorer = Scorer({"route": Route(student, builder)}, chunk_size=cfg.loss.chunk_size)
        return score_in_chunks(scorer, batch, tok.pad_token_id, args.batch_size)

    how = cfg.data.get("answer_extract", "boxed")
    texts = decode(tok, batch.completion_ids, batch.mask)
    correct = torch.tensor(verify_batch(texts, [str(x[cfg.data.answer_field]) for x in batch.rows], how=how))
    answer = answer_tokens(tok, batch.completion_ids, batch.mask, how)
    s = score(prompts.student(tok))
    rows = [{"hint": h, **row} for h in hints
            for row in split_table(s, score(prompts.hinted(tok, h)), batch.mask, correct, answer)]
    meta = {"student": conf.raw.model.path, "data": conf.raw.data.path, "prompts": len(idx),
            "rollouts": len(batch.rows), "max_new_tokens": r.max_new_tokens, "temperature": r.temperature,
            "answer_extract": how, "seed": cfg.seed}
    for row in rows:
        print("  ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
    paths = save(rows, meta, args.out or f"outputs/mechanism/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    print(f"wrote {', '.join(map(str, paths))} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
