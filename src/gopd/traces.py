"""Per-token traces: what the teacher pushed up and down, token by token.

During training (``traces.every_n_steps``), a few rollouts of a step are saved with their
per-token ids, text pieces and signals to ``<run dir>/traces/step-XXXXXX.jsonl``, one JSON
record per rollout::

    step, rollout, group, row_id, prompt, hint, answer, reward, alpha, pressure,
    prompt_ids, ids, pieces, text,              # "".join(pieces) == text
    s, q, r, delta, A, opd                      # one float per token (null when not computed)

(``A`` is the final advantage after the GRPO mix; ``opd`` the OPD advantage after the pressure
mode; ``delta = alpha * (q - r) - (s - r)``; ``r`` is null when alpha = 1 and no reference was
loaded, ``q`` / ``delta`` / ``opd`` under pure GRPO.) ``gopd.tools.traces`` reads them
(render, top, agree).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TRACE_DIR = "traces"
SIGNALS = ("s", "q", "r", "delta", "A", "opd")


# ------------------------------------------------------------------------------- records
def token_pieces(tokenizer, ids: Sequence[int]) -> list[str]:
    """One text piece per token id, such that ``"".join(pieces) == decode(ids)``.

    Incremental detokenisation (as vLLM does it): each token's piece is what it adds to the
    decoded text of a short window before it, so byte-level tokens that split a UTF-8 character
    give ``""`` until the character is complete, and SentencePiece's leading-space rule holds.
    """
    ids = [int(i) for i in ids]
    kw = dict(skip_special_tokens=False, clean_up_tokenization_spaces=False)
    pieces: list[str] = []
    prefix = read = 0  # ids[prefix:read] is already emitted; it is kept as the decoding context
    for i in range(len(ids)):
        prev = tokenizer.decode(ids[prefix:read], **kw)
        new = tokenizer.decode(ids[prefix:i + 1], **kw)
        if len(new) > len(prev) and new.startswith(prev) and not new.endswith("\ufffd"):
            pieces.append(new[len(prev):])
            prefix, read = read, i + 1
        else:
            pieces.append("")
    full = tokenizer.decode(ids, **kw)
    joined = "".join(pieces)
    if joined != full:
        if pieces and full.startswith(joined):
            pieces[-1] += full[len(joined):]  # a trailing incomplete character
        else:  # a tokenizer whose decode is not prefix-stable: fall back to one id at a time
            pieces = [tokenizer.decode([i], **kw) for i in ids]
    return pieces


def _floats(x, n: int) -> list[float] | None:
    if x is None:
        return None
    return [round(float(v), 6) for v in x[:n].tolist()]


def step_records(step: int, batch, tokenizer, *, s, q=None, r=None, adv=None, opd=None, rewards=None,
                 alpha: float = 1.0, pressure: str | None = None, rollouts: int | None = None,
                 hint_field: str | None = None, answer_field: str = "answer",
                 delta=None) -> list[dict]:
    """One training step's tensors -> one record per rollout (the first ``rollouts`` of the batch).

    ``batch`` is a ``rollout.RolloutBatch``; ``s``, ``q``, ``r``, ``adv``, ``opd`` are ``[B, T]``
    (any may be None but ``s``), ``rewards`` ``[B]``. ``delta`` defaults to ``objective.token_delta``
    of ``s``, ``q``, ``r`` at ``alpha`` (``r`` may be None only at alpha = 1).
    """
    from gopd.objective import token_delta

    if delta is None and q is not None:
        delta = token_delta(s, q, r, alpha=alpha)  # r is None only at alpha = 1 (no reference loaded)
    keep = len(batch.rows) if rollouts is None else min(int(rollouts), len(batch.rows))
    kw = dict(skip_special_tokens=False, clean_up_tokenization_spaces=False)
    out = []
    for i in range(keep):
        row = batch.rows[i]
        n = int(batch.mask[i].sum())
        ids = batch.completion_ids[i, :n].tolist()
        rec = {
            "step": int(step),
            "rollout": i,
            "group": int(batch.group_ids[i]),
            "row_id": row.get("id", None),
            "prompt": tokenizer.decode(batch.prompt_ids[i], **kw),
            "hint": None if hint_field is None else row.get(hint_field),
            "answer": None if row.get(answer_field) is None else str(row.get(answer_field)),
            "reward": None if rewards is None else float(rewards[i]),
            "alpha": float(alpha),
            "pressure": pressure,
            "prompt_ids": [int(t) for t in batch.prompt_ids[i]],
            "ids": ids,
            "pieces": token_pieces(tokenizer, ids),
            "text": tokenizer.decode(ids, **kw),
        }
        for name, x in (("s", s), ("q", q), ("r", r), ("delta", delta), ("A", adv), ("opd", opd)):
            rec[name] = _floats(None if x is None else x[i], n)
        out.append(rec)
    return out


def trace_path(run_dir: str | os.PathLike, step: int, rank: int = 0) -> Path:
    """``step-XXXXXX.jsonl`` (rank 0, or one process), ``step-XXXXXX.rankK.jsonl`` (rank K > 0)."""
    return Path(run_dir) / TRACE_DIR / (f"step-{int(step):06d}" + (f".rank{rank}" if rank else "") + ".jsonl")


def write_records(run_dir: str | os.PathLike, step: int, records: Iterable[Mapping], rank: int = 0) -> Path:
    """``<run dir>/traces/step-XXXXXX[.rankK].jsonl``, written to a temporary name and renamed (a
    step re-run after a resume replaces its file; a kill mid-write leaves no half file)."""
    path = trace_path(run_dir, step, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class Tracer:
    """What a run's traces record, from the config: the ``traces`` section, and the objective and
    data settings each record names (alpha, pressure, the hint and answer columns)."""

    every_n_steps: int = 0
    rollouts: int = 4
    alpha: float = 1.0
    pressure: str = "full"
    hint_field: str | None = None
    answer_field: str = "answer"

    @classmethod
    def from_config(cls, cfg) -> "Tracer":
        t = cfg.get("traces") if hasattr(cfg, "get") else None
        if t is None:  # a config without a traces section traces nothing
            return cls()
        teacher = cfg.get("teacher")
        hinted = teacher is not None and teacher.get("name") == "hinted"
        return cls(every_n_steps=int(t.get("every_n_steps", 0) or 0), rollouts=int(t.get("rollouts", 4)),
                   alpha=float(cfg.alpha), pressure=str(cfg.pressure.name),
                   hint_field=teacher.get("hint_field") if hinted else None, answer_field=str(cfg.data.answer_field))

    def due(self, step: int) -> bool:
        """Whether ``traces.every_n_steps`` asks for this step's traces (never at 0 = off)."""
        return self.every_n_steps > 0 and step % self.every_n_steps == 0

    def save(self, run_dir, step: int, batch, tokenizer, *, s, q=None, r=None, adv=None, opd=None,
             rewards=None, rank: int = 0) -> Path:
        """A step's traces (the training step calls it when ``due``: the signals cost a scoring pass),
        from every rank (each its own rollouts; a sharded teacher scores on all ranks together).

        Every estimator gives the sampled tokens' ``s``, ``q``, ``r``; with ``topk``/``full``, ``opd``
        is the position's expected advantage under the student, ``sum_v pi(v) A(v)``, and ``A`` that
        mixed with GRPO.
        """
        recs = step_records(step, batch, tokenizer, s=s, q=q, r=r, adv=adv, opd=opd, rewards=rewards,
                            alpha=self.alpha, pressure=self.pressure, rollouts=self.rollouts,
                            hint_field=self.hint_field, answer_field=self.answer_field)
        return write_records(run_dir, step, recs, rank)


def due(cfg, step: int) -> bool:
    return Tracer.from_config(cfg).due(step)


def maybe_save(cfg, run_dir, step: int, batch, tokenizer, **signals) -> Path | None:
    """``Tracer.save`` when ``traces.every_n_steps`` says this step is due, else nothing (None)."""
    tracer = Tracer.from_config(cfg)
    return tracer.save(run_dir, step, batch, tokenizer, **signals) if tracer.due(step) else None
