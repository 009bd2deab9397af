"""What a step's responses look like, beyond their reward: the spread of their lengths and, in a
search world (``data.answer_extract=countdown``), how much they search and where the pressure falls.

- ``train/response_len_p10``, ``train/response_len_p90``: completion tokens (every run).
- ``search/tries``: ``try`` lines per response; ``search/multi_try_correct``: the share of correct
  responses that needed more than one try (nan without a correct one).
- ``search/{pos,neg}_mass_{tries,answer}``: the step's per-token advantage (after the pressure
  mode and the GRPO mix), ``max(A, 0)`` and ``max(-A, 0)`` averaged over the tokens of failed tries
  and over the tokens of the answer (the successful try and the box). Full pressure under a
  hint-conditioned teacher puts negative mass on the failed tries: the seeds' "regret" of
  exploration, which shortens responses.
"""

from __future__ import annotations

import math
import re

import torch

SEARCH_EXTRACT = "countdown"  # data.answer_extract of a search world
_FAILED = re.compile(r"^try .*=\S+ no\s*$")
_SUCCEEDED = re.compile(r"^try .*=\S+ yes\s*$")


def length_metrics(mask: torch.Tensor) -> dict[str, float]:
    lengths = mask.sum(-1).float()
    if lengths.numel() == 0:
        return {}
    q = torch.quantile(lengths, torch.tensor([0.1, 0.9], dtype=lengths.dtype, device=lengths.device))
    return {"train/response_len_p10": float(q[0]), "train/response_len_p90": float(q[1])}


def segments(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) character spans of a response's lines: ``tries`` (a failed try) or
    ``answer`` (a successful try, or the line with the box)."""
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        body = line.strip()
        kind = "tries" if _FAILED.match(body) else "answer" if _SUCCEEDED.match(body) or "\\boxed" in body else None
        if kind:
            out.append((pos, pos + len(line), kind))
        pos += len(line)
    return out


def token_kinds(pieces: list[str], text_segments: list[tuple[int, int, str]]) -> list[str | None]:
    """Each token's segment kind, by where the token starts in the concatenated text."""
    kinds, pos, i = [], 0, 0
    for piece in pieces:
        while i < len(text_segments) and text_segments[i][1] <= pos:
            i += 1
        inside = i < len(text_segments) and text_segments[i][0] <= pos < text_segments[i][1]
        kinds.append(text_segments[i][2] if inside else None)
        pos += len(piece)
    return kinds


def search_metrics(tokenizer, texts: list[str], completion_ids: torch.Tensor, mask: torch.Tensor,
                   rewards: torch.Tensor, advantages: torch.Tensor | None) -> dict[str, float]:
    from gopd.tasks.countdown import count_attempts

    tries = [count_attempts(t) for t in texts]
    correct = [n for n, r in zip(tries, rewards.tolist()) if r > 0]
    out = {"search/tries": sum(tries) / max(1, len(tries)),
           "search/multi_try_correct": sum(n > 1 for n in correct) / len(correct) if correct else math.nan}
    if advantages is None:
        return out
    lengths = mask.sum(-1).tolist()
    flat = [[int(t)] for row, n in zip(completion_ids.tolist(), lengths) for t in row[: int(n)]]
    pieces = tokenizer.batch_decode(flat, skip_special_tokens=True)  # one call: every token's text
    sums = {k: [0.0, 0.0, 0] for k in ("tries", "answer")}  # positive mass, negative mass, tokens
    start = 0
    for text, n, row_adv in zip(texts, lengths, advantages.tolist()):  # plain floats: no tensor indexing per token
        kinds = token_kinds(pieces[start:start + int(n)], segments(text))
        start += int(n)
        for a, kind in zip(row_adv, kinds):
            if kind is None:
                continue
            acc = sums[kind]
            acc[0] += max(a, 0.0)
            acc[1] += max(-a, 0.0)
            acc[2] += 1
    for kind, (pos, neg, n) in sums.items():
        out[f"search/pos_mass_{kind}"] = pos / n if n else math.nan
        out[f"search/neg_mass_{kind}"] = neg / n if n else math.nan
    return out
