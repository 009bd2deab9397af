"""Held-out greedy evaluation: accuracy and response length, overall and per domain."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from gopd import distributed
from gopd.rollout import decode, hf_generate
from gopd.scoring import Scorer
from gopd.verifier import verify_batch


def greedy_accuracy(model, tokenizer, prompts, rows: Sequence[Mapping], **kw) -> dict[str, float]:
    """``{"accuracy", "response_len", "accuracy/<domain>"...}`` of greedy answers on ``rows``.

    Keywords: ``answer_field``, ``domain_field``, ``max_new_tokens``, ``batch_size``, ``answer_extract``,
    ``cache`` (``hf_generate``'s KV cache).
    """
    res = _per_row(model, tokenizer, prompts, rows, **kw)
    return summarize(rows, [ok for ok, _ in res], [n for _, n in res], kw["domain_field"])


def scorer_accuracy(scorer: Scorer, tokenizer, rows: Sequence[Mapping], **kw) -> dict[str, float]:
    """Greedy accuracy of a teacher: each row answered by its own route (hint, expert)."""
    correct, lengths = [None] * len(rows), [0] * len(rows)
    for name, idx in scorer.split(rows).items():
        route = scorer.routes[name]
        sub = [rows[i] for i in idx]
        res = _per_row(route.model, tokenizer, route.prompts, sub, **kw)
        for j, (ok, n) in zip(idx, res):
            correct[j], lengths[j] = ok, n
    return summarize(rows, correct, lengths, kw["domain_field"])


def _per_row(model, tokenizer, prompts, rows, *, answer_field, domain_field, max_new_tokens, batch_size,
             answer_extract="boxed", cache="dynamic"):
    """(correct, length) per row. Several ranks split the rows (rank r takes every W-th from r) and
    gather the verdicts; every rank runs as many ``generate`` calls as the busiest (a rank with no
    rows left repeats one and drops it), as a sharded model needs."""
    mine, calls = distributed.share(len(rows), batch_size)
    out = {}
    for c in range(calls):
        idx = mine[c * batch_size:(c + 1) * batch_size]
        chunk = [rows[i] for i in idx] or rows[:1]
        ids, mask = hf_generate(model, tokenizer, prompts.batch_ids(chunk), max_new_tokens=max_new_tokens, greedy=True,
                                 cache=cache)
        ok = verify_batch(decode(tokenizer, ids, mask), [str(r[answer_field]) for r in chunk], how=answer_extract)
        out.update(zip(idx, zip(ok, mask.sum(-1).tolist())))
    out = distributed.gather_dict(out)
    return [out[i] for i in range(len(rows))]


def summarize(rows, correct, lengths, domain_field) -> dict[str, float]:
    n = max(len(rows), 1)
    out = {"accuracy": sum(map(bool, correct)) / n, "response_len": sum(lengths) / n}
    by_domain = defaultdict(list)
    for r, ok in zip(rows, correct):
        if domain_field in r:
            by_domain[r[domain_field]].append(bool(ok))
    if len(by_domain) > 1:
        for d, oks in sorted(by_domain.items()):
            out[f"accuracy/{d}"] = sum(oks) / len(oks)
    return out


def gap_closed(initial: float, current: float, teacher: float | None) -> float | None:
    """Fraction of the student-teacher accuracy gap closed so far (None without a gap)."""
    if teacher is None or teacher - initial <= 1e-9:
        return None
    return (current - initial) / (teacher - initial)
