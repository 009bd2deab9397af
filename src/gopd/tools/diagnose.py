"""Hint-strength diagnostic: pick the hinted teacher's hint before spending GPU hours.

    python -m gopd.tools.diagnose alpha=2 pressure=positive rollout.n=4
    python -m gopd.tools.diagnose model=qwen3_1_7b data=deepmath alpha=2 pressure=positive rollout.n=4 \\
        rollout.max_new_tokens=1024 --hints final_answer --prompts 64 --out results/hints/mine

Positional arguments are Hydra overrides of the trainer's ``conf/train.yaml``: the student
(``model.path``, ``model.dtype``), the data (``data.path``, its splits and fields), the prompts
(``data.problem_template``, ``model.chat_template_kwargs``, ``teacher.hint_template``), ``alpha``,
``pressure``, ``reference``, the sampling (``rollout.n``, ``max_new_tokens``, ``temperature``,
``top_p``), the greedy budget (``eval.max_new_tokens``) and ``seed`` are the trainer's, checked as
it checks them. The flags are the tool's own: the hint columns (default ``data.hint_fields``),
how many prompts and held-out problems, the target alphas, an RL checkpoint to compare with, the
batch size, the device and the output. ``rollout.n`` is 1 in the trainer's defaults: pass
``rollout.n=4`` for groups of 4 rollouts per prompt.

The student samples rollouts once (``n`` per prompt, the trainer's ``HFRollout``); the same
rollouts are then scored under the hinted teacher of each hint column (the step-0 student with
the hint in its prompt: ``teacher=hinted teacher.weights=initial``), through the trainer's own
``Scorer`` / ``PromptBuilder`` / ``token_advantages`` / ``opd_diagnostics``, so the numbers are
those of the first training step on a larger batch. One row per hint:

    teacher/accuracy   the hinted teacher's own greedy accuracy on held-out problems
    hint/tokens        mean hint length (tokens)
    delta/mean, delta/max, delta/min   per-token G-OPD reward over every completion token
    opd/max_shock      max |q - s| (the "KL shock" positive-pressure OPSD attributes to the hint), opd/teacher_kl, opd/ref_kl
    opd/pos_mass, opd/neg_mass, opd/pos_frac   as logged by training (after the pressure mode)
    agree/pos, agree/neg   with --opd-teacher: fraction of positive (negative) pressure tokens
                           where the RL teacher's OPD signal q_rl - s has the same sign

    solution/exact     teacher-forced on the held-out reference solutions: the share that
                       greedy decoding of the teacher's distribution reproduces exactly
    target/exact@<a>   the same for G-OPD's optimum pi* ∝ pi_ref (pi_T / pi_ref)^a at each
                       --target-alphas value: where a run at that alpha leads if it converges
                       (below the student's own solution/exact: worse than where it starts)

The first row, ``(student)``, is the student's own greedy accuracy (no hint); with
``--opd-teacher`` a last row ``(opd teacher)`` holds the RL checkpoint's target columns. The
table is printed and saved as ``<out>.csv`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gopd.prompts import DEFAULT_HINT_TEMPLATE, PROBLEM, PromptBuilder, prompt_style  # light: no torch
from gopd.tools import trainconf

REFERENCES = ("student", "teacher")  # or any other name with a ref_model (pre_rl: a pre-RL base)
COLUMNS = ("hint", "teacher/accuracy", "solution/exact", "hint/tokens", "delta/mean", "delta/max", "delta/min", "opd/max_shock",
           "opd/teacher_kl", "opd/ref_kl", "opd/pos_mass", "opd/neg_mass", "opd/pos_frac", "agree/pos", "agree/neg")


@dataclass(frozen=True)
class Prompts:
    """The run's prompts, built as the trainer builds them: the student's (``gopd.run``) and each
    hint column's hinted teacher's (``gopd.teachers.hinted_teacher``), in one prompt style."""

    problem_field: str = "problem"
    hint_template: str = DEFAULT_HINT_TEMPLATE
    problem_template: str = PROBLEM
    template_kwargs: Mapping = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg) -> "Prompts":
        return cls(cfg.data.problem_field, cfg.teacher.hint_template, **prompt_style(cfg))

    def _style(self) -> dict:
        return {"problem_field": self.problem_field, "problem_template": self.problem_template,
                "template_kwargs": dict(self.template_kwargs)}

    def student(self, tokenizer) -> PromptBuilder:
        return PromptBuilder(tokenizer, **self._style())

    def hinted(self, tokenizer, hint_field: str) -> PromptBuilder:
        return PromptBuilder(tokenizer, hint_field=hint_field, hint_template=self.hint_template, **self._style())


def concat_batches(batches: Sequence, pad_id: int):
    """One ``RolloutBatch`` from several (completions right-padded to the longest; groups renumbered)."""
    import torch

    from gopd.rollout import RolloutBatch

    t = max(b.completion_ids.shape[1] for b in batches)

    def pad(x, value):
        return torch.nn.functional.pad(x, (0, t - x.shape[1]), value=value)

    offset, groups = 0, []
    for b in batches:
        groups.append(b.group_ids + offset)
        offset += int(b.group_ids.max()) + 1 if b.group_ids.numel() else 0
    return RolloutBatch(rows=[r for b in batches for r in b.rows],
                        prompt_ids=[p for b in batches for p in b.prompt_ids],
                        completion_ids=torch.cat([pad(b.completion_ids, pad_id) for b in batches]),
                        mask=torch.cat([pad(b.mask, 0) for b in batches]),
                        group_ids=torch.cat(groups))


def sample_batch(student, tokenizer, rows: Sequence[Mapping], *, n: int = 4, max_new_tokens: int = 64,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, prompts: Prompts = Prompts(),
                 prompts_per_call: int = 64):
    """The student's rollouts of ``rows`` (``n`` each), sampled as the trainer samples them."""
    import torch

    from gopd.rollout import HFRollout

    torch.manual_seed(seed)
    engine = HFRollout(student, tokenizer, prompts.student(tokenizer), n=n,
                       max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    parts = [engine.sample(list(rows[i:i + prompts_per_call])) for i in range(0, len(rows), prompts_per_call)]
    return parts[0] if len(parts) == 1 else concat_batches(parts, tokenizer.pad_token_id)


def score_in_chunks(scorer, batch, pad_id: int, per_call: int | None):
    """``scorer.score`` over the batch, ``per_call`` rollouts at a time (memory on real models)."""
    import torch

    b = len(batch.rows)
    if not per_call or per_call >= b:
        return scorer.score(batch.rows, batch.completion_ids, batch.mask, pad_id)
    return torch.cat([scorer.score(batch.rows[i:i + per_call], batch.completion_ids[i:i + per_call],
                                   batch.mask[i:i + per_call], pad_id) for i in range(0, b, per_call)])


def hint_table(student, tokenizer, batch, hints: Sequence[str], *, alpha: float = 1.0, pressure: str = "full",
               clip: float | None = None, reference: str = "student", ref_model=None, opd_teacher=None,
               prompts: Prompts = Prompts(), answer_field: str = "answer", answer_extract: str = "boxed",
               chunk_size: int = 128,
               score_per_call: int | None = None) -> list[dict]:
    """One dict per hint column: ``delta/*``, every ``opd_diagnostics`` term, ``agree/*``.

    ``reference``: ``student`` (the frozen step-0 student: ``r = s``), ``teacher`` (``r = q``),
    or anything else with ``ref_model`` (``pre_rl``: a pre-RL base, scored in the student's prompt).
    ``opd_teacher``: a model scored in the student's prompt, for the sign agreement with OPD.
    """
    import torch

    from gopd import objective
    from gopd.rollout import decode
    from gopd.scoring import Route, Scorer
    from gopd.tools.traces import tensor_agreement
    from gopd.verifier import verify_batch

    pad, mask = tokenizer.pad_token_id, batch.mask
    plain = prompts.student(tokenizer)

    def scorer(model, prompts):
        return Scorer({"route": Route(model, prompts)}, chunk_size=chunk_size)

    s = score_in_chunks(scorer(student, plain), batch, pad, score_per_call)
    correct = torch.tensor(verify_batch(decode(tokenizer, batch.completion_ids, mask),
                                        [str(r[answer_field]) for r in batch.rows], how=answer_extract),
                           dtype=torch.bool)
    r_fixed = None
    if reference == "student":
        r_fixed = s
    elif reference != "teacher":
        if ref_model is None:
            raise ValueError(f"reference {reference!r} needs ref_model (or use one of {', '.join(REFERENCES)})")
        r_fixed = score_in_chunks(scorer(ref_model, plain), batch, pad, score_per_call)
    q_rl = None if opd_teacher is None else score_in_chunks(scorer(opd_teacher, plain), batch, pad, score_per_call)
    keep = mask.bool()
    unique_rows = list({id(r): r for r in batch.rows}.values())
    out = []
    for h in hints:
        q = score_in_chunks(scorer(student, prompts.hinted(tokenizer, h)), batch, pad, score_per_call)
        r = q if reference == "teacher" else r_fixed
        opd = objective.token_advantages(s, q, r, mask, alpha=alpha, pressure=pressure, correct=correct, clip=clip)
        diag = objective.opd_diagnostics(s, q, r, mask, opd)
        delta = objective.token_delta(s, q, r, alpha=alpha)[keep]
        row = {"hint": h,
               "hint/tokens": sum(len(tokenizer(str(x[h]), add_special_tokens=False)["input_ids"])
                                  for x in unique_rows) / max(len(unique_rows), 1),
               "delta/mean": float(delta.mean()) if delta.numel() else 0.0,
               "delta/max": float(delta.max()) if delta.numel() else 0.0,
               "delta/min": float(delta.min()) if delta.numel() else 0.0, **diag}
        if q_rl is not None:
            agree = tensor_agreement(objective.token_delta(s, q, r, alpha=alpha), q_rl - s, mask)
            row.update({"agree/pos": agree["pos_agree"], "agree/neg": agree["neg_agree"]})
        out.append(row)
    return out


def solution_batch(tokenizer, rows: Sequence[Mapping], solution_field: str = "solution"):
    """The reference solutions as completions: ``(ids [B, L], mask [B, L])``, each ending in EOS."""
    from gopd.rollout import right_pad

    seqs = [tokenizer(str(r[solution_field]), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            for r in rows]
    return right_pad(seqs, tokenizer.pad_token_id)


def solution_exact(logp_v, ids, mask):
    """Teacher-forced on the reference solutions: bool ``[B]``, whether every token of the
    solution is the distribution's argmax (i.e. greedy decoding reproduces it exactly)."""
    return (logp_v.argmax(-1).eq(ids) | ~mask.bool()).all(-1)


def target_table(student, tokenizer, rows: Sequence[Mapping], teachers: Mapping, alphas: Sequence[float], *,
                 reference: str = "student", ref_model=None, solution_field: str = "solution",
                 prompts: Prompts = Prompts(), rows_per_call: int = 16) -> dict[str, dict[str, float]]:
    """Where G-OPD leads, before training. For the student and each teacher (name -> (model,
    ``PromptBuilder``)): ``solution/exact``, the share of reference solutions that greedy decoding
    of its distribution reproduces (teacher-forced); for each teacher, ``target/exact@<a>``, the
    same for the G-OPD optimum ``pi* ∝ pi_ref (pi_T / pi_ref)^a`` (``objective.target_logp``).

    A target below the student's own ``solution/exact`` means the run's optimum is worse than its
    start, whatever the estimator or learning rate. ``reference`` as in ``hint_table`` (with
    ``teacher``, alpha is inert and there are no target columns). Holds ``[rows_per_call, T, V]``.
    """
    import torch

    from gopd import objective
    from gopd.vocab import full_logprobs

    if reference not in REFERENCES and ref_model is None:
        raise ValueError(f"reference {reference!r} needs ref_model (or use one of {', '.join(REFERENCES)})")
    pad, device = tokenizer.pad_token_id, next(student.parameters()).device
    plain = prompts.student(tokenizer)
    hits: dict[str, dict[str, int]] = {"(student)": {}, **{name: {} for name in teachers}}

    def count(name, key, logp_v, ids, mask):
        hits[name][key] = hits[name].get(key, 0) + int(solution_exact(logp_v, ids, mask).sum())

    with torch.no_grad():
        for i in range(0, len(rows), rows_per_call):
            part = list(rows[i:i + rows_per_call])
            ids, mask = (t.to(device) for t in solution_batch(tokenizer, part, solution_field))
            s = full_logprobs(student, plain.batch_ids(part), ids, mask, pad)
            count("(student)", "solution/exact", s, ids, mask)
            if reference == "student":
                r = s
            elif reference != "teacher":  # a pre-RL base, in the student's prompt
                r = full_logprobs(ref_model, plain.batch_ids(part), ids, mask, pad)
            for name, (model, builder) in teachers.items():
                q = full_logprobs(model, builder.batch_ids(part), ids, mask, pad)
                count(name, "solution/exact", q, ids, mask)
                for a in alphas if reference != "teacher" else ():
                    count(name, f"target/exact@{a:g}", objective.target_logp(q, r, alpha=a), ids, mask)
    return {name: {key: n / max(len(rows), 1) for key, n in per.items()} for name, per in hits.items()}


def accuracies(student, tokenizer, rows: Sequence[Mapping], hints: Sequence[str], *, prompts: Prompts = Prompts(),
               answer_field: str = "answer", domain_field: str = "domain", max_new_tokens: int = 64,
               batch_size: int = 250, answer_extract: str = "boxed") -> dict[str | None, float]:
    """Greedy accuracy of the student (key ``None``) and of each hinted teacher on ``rows``."""
    from gopd.evaluate import greedy_accuracy, scorer_accuracy
    from gopd.scoring import Route, Scorer

    kw = dict(answer_field=answer_field, domain_field=domain_field, max_new_tokens=max_new_tokens,
              batch_size=batch_size, answer_extract=answer_extract)
    out = {None: greedy_accuracy(student, tokenizer, prompts.student(tokenizer), rows, **kw)["accuracy"]}
    for h in hints:
        route = Route(student, prompts.hinted(tokenizer, h))
        out[h] = scorer_accuracy(Scorer({"hinted": route}), tokenizer, rows, **kw)["accuracy"]
    return out


# ------------------------------------------------------------------------------- output
def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def table_columns(rows: Sequence[Mapping]) -> list[str]:
    present = {k for r in rows for k, v in r.items() if v is not None}
    targets = sorted((k for k in present if k.startswith("target/exact@")), key=lambda k: float(k.split("@")[1]))
    return [c for c in COLUMNS if c in present] + targets


def _provenance(student_path: str) -> dict:
    """The toy world the student lies in (if any) and the code's commit, as runs record them."""
    from gopd.runlog import code_version
    from gopd.toy.build import world_label

    return {"world": world_label(student_path), "code": code_version()}


def to_markdown(rows: Sequence[Mapping], meta: Mapping) -> str:
    cols = table_columns(rows)
    lines = [f"Hint-strength diagnostic: {', '.join(f'{k}={v}' for k, v in meta.items())}", "",
             "| " + " | ".join(cols) + " |", "|" + "|".join("---" if c == "hint" else "---:" for c in cols) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def save(rows: Sequence[Mapping], meta: Mapping, out: str | Path) -> list[Path]:
    """``<out>.csv`` (every column), ``<out>.md`` (with the settings) and ``<out>.json``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cols = table_columns(rows)
    paths = [out.with_name(out.name + ext) for ext in (".csv", ".md", ".json")]
    with open(paths[0], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows([[_cell(r.get(c)) for c in cols] for r in rows])
    paths[1].write_text(to_markdown(rows, meta))
    paths[2].write_text(json.dumps({"settings": dict(meta), "rows": list(rows)}, indent=2, default=str))
    return paths


def print_table(rows: Sequence[Mapping], meta: Mapping) -> None:
    from rich.console import Console
    from rich.table import Table

    cols = table_columns(rows)
    cells = {c: [_cell(r.get(c)) or "-" for r in rows] for c in cols}
    console = Console()
    if not console.is_terminal:  # piped into a file or a log: do not squeeze to 80 columns
        console = Console(width=max(console.width, 160))
    parts = column_chunks(cols, cells, console.width)
    for i, part in enumerate(parts):  # never an ellipsis in a number: a table too wide is printed in parts
        title = "hint strength" + (f" ({i + 1}/{len(parts)})" if len(parts) > 1 else "")
        caption = ", ".join(f"{k}={v}" for k, v in meta.items()) if i == len(parts) - 1 else None
        table = Table(title=title, caption=caption)
        for c in part:  # two-line headers ("opd" over "pos_mass") keep the table narrow
            table.add_column(c.replace("/", "\n"), justify="left" if c == "hint" else "right", no_wrap=True)
        for j in range(len(rows)):
            table.add_row(*[cells[c][j] for c in part])
        console.print(table)


def column_chunks(cols: Sequence[str], cells: Mapping[str, list[str]], width: int) -> list[list[str]]:
    """Columns in groups that each fit ``width`` at their full widths, the first column (the hint)
    repeated in every group."""
    def need(c):  # the widest of its header lines and cells, plus rich's padding and border
        return max([len(line) for line in c.split("/")] + [len(x) for x in cells[c]]) + 3

    first, rest = cols[0], list(cols[1:])
    chunks, current, used = [], [first], need(first) + 1
    for c in rest:
        if used + need(c) > width and len(current) > 1:
            chunks.append(current)
            current, used = [first], need(first) + 1
        current.append(c)
        used += need(c)
    chunks.append(current)
    return chunks


# ------------------------------------------------------------------------------- CLI
def _quiet_libraries() -> None:
    """Per-file progress bars and load reports of datasets / transformers hide the table."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def build_parser() -> argparse.ArgumentParser:
    ap = trainconf.parser("python -m gopd.tools.diagnose", __doc__,
                          "student, data, prompts, alpha, pressure, reference, rollout.* sampling, seed "
                          "(e.g. alpha=2 pressure=positive rollout.n=4 model.toy_variant=mini)")
    ap.add_argument("--hints", nargs="+", default=None, help="hint columns to compare (None: data.hint_fields)")
    ap.add_argument("--prompts", type=int, default=32, help="prompts rolled out (a seeded random sample of data.train_split)")
    ap.add_argument("--eval-problems", type=int, default=200,
                    help="held-out problems (first of the test set) for the greedy accuracies and the targets (0 = skip)")
    ap.add_argument("--target-alphas", type=float, nargs="*", default=[1.5, 2.0, 3.0],
                    help="alphas whose G-OPD optimum is scored on the reference solutions (none = skip)")
    ap.add_argument("--opd-teacher", default=None,
                    help="RL checkpoint (toy://NAME in model.toy_variant's world): add the sign agreement with OPD (q_rl - s)")
    ap.add_argument("--batch-size", type=int, default=64, help="prompts per generate call / rollouts per scoring call")
    ap.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda:N")
    ap.add_argument("--out", default=None, help="output prefix (default: outputs/diagnose/hints-<time>)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, KeyError) as e:  # ConfigError included: one line, as the trainer's
        print(f"error: {e}", file=sys.stderr)
        return 2


@dataclass
class _Models:
    """What one diagnostic loads: tokenizer, student, reference (pre_rl only), RL checkpoint (optional)."""

    tok: object
    student: object
    ref_model: object = None
    opd_teacher: object = None


def _load_models(cfg, opd_teacher: str | None, device: str) -> _Models:
    from gopd.pool import load_model, load_tokenizer
    from gopd.toy import resolve_path

    remote = bool(cfg.model.get("trust_remote_code", False))

    def load(path):
        return load_model(path, cfg.model.dtype, trust_remote_code=remote).to(device)

    return _Models(tok=load_tokenizer(cfg.model.path, trust_remote_code=remote), student=load(cfg.model.path),
                   ref_model=None if cfg.reference.name in REFERENCES else load(cfg.reference.path),
                   # a tool flag, not a config key: its toy:// name resolves in the config's world
                   opd_teacher=None if opd_teacher is None else load(resolve_path(opd_teacher, cfg.model.toy_variant)))


def _add_targets(rows_out: list[dict], m: _Models, test_rows, hints, prompts: Prompts, cfg, args) -> list[dict]:
    """Fill ``solution/exact`` and ``target/exact@<a>`` into the table; return the extra row of the
    ``--opd-teacher`` (if any)."""
    teachers = {h: (m.student, prompts.hinted(m.tok, h)) for h in hints}
    if m.opd_teacher is not None:
        teachers["(opd teacher)"] = (m.opd_teacher, prompts.student(m.tok))
    found = target_table(m.student, m.tok, test_rows, teachers, args.target_alphas, reference=cfg.reference.name,
                         ref_model=m.ref_model, solution_field=cfg.data.solution_field, prompts=prompts,
                         rows_per_call=max(1, args.batch_size // 4))
    for row in rows_out:
        row.update(found[row["hint"]])
    return [{"hint": "(opd teacher)", **found["(opd teacher)"]}] if m.opd_teacher is not None else []


def _evaluate(rows_out: list[dict], m: _Models, test, hints, prompts: Prompts, cfg, args) -> list[dict]:
    """Greedy accuracies on the first ``--eval-problems`` held-out problems, then the target columns."""
    test_rows = test.select(range(min(args.eval_problems, len(test)))).to_list()
    acc = accuracies(m.student, m.tok, test_rows, hints, prompts=prompts, answer_field=cfg.data.answer_field,
                     answer_extract=cfg.data.get("answer_extract", "boxed"),
                     domain_field=cfg.data.domain_field, max_new_tokens=cfg.eval.max_new_tokens,
                     batch_size=args.batch_size)
    for row, key in zip(rows_out, [None, *hints]):
        row["teacher/accuracy"] = acc[key]
    solution = cfg.data.solution_field
    if not solution or solution not in test.column_names:
        print(f"note: no data.solution_field column {solution!r} in the data: no target columns", file=sys.stderr)
        return rows_out
    return rows_out + _add_targets(rows_out, m, test_rows, hints, prompts, cfg, args)


def _check(args, cfg, columns: Sequence[str]) -> list[str]:
    """The tool's own flags against the config; returns the hint columns."""
    if cfg.teacher.name != "hinted":
        raise ValueError(f"teacher={cfg.teacher.name}: the diagnostic scores hinted teachers (teacher=hinted); "
                         f"compare an RL checkpoint with --opd-teacher")
    if any(a <= 0 for a in args.target_alphas):
        raise ValueError(f"--target-alphas must all be > 0, got {args.target_alphas}")
    if args.prompts < 1:
        raise ValueError("--prompts must be >= 1")
    hints = list(args.hints or cfg.data.hint_fields)
    if not hints:
        raise ValueError("no hint columns: pass --hints or set data.hint_fields")
    missing = [h for h in hints if h not in columns]
    if missing:
        raise ValueError(f"--hints: column(s) {', '.join(missing)} not in the data (columns: {', '.join(columns)})")
    return hints


def _meta(args, conf, batch) -> dict:
    """The table's settings line: the config as written (toy:// names, not this machine's paths)."""
    raw = conf.raw
    meta = {"student": raw.model.path, "data": raw.data.path, "rollouts": len(batch.rows), "tokens": batch.num_tokens,
            "alpha": float(raw.alpha), "pressure": raw.pressure.name, "reference": raw.reference.name,
            "eval_problems": args.eval_problems, "seed": raw.seed}
    if raw.pressure.clip is not None:
        meta["clip"] = raw.pressure.clip
    if raw.reference.name == "pre_rl":
        meta["reference_path"] = raw.reference.path
    if args.opd_teacher:
        meta["opd_teacher"] = args.opd_teacher
    if args.overrides:
        meta["overrides"] = " ".join(args.overrides)
    return meta


def _run(args) -> int:
    from gopd.tools.trainconf import load

    conf = load(args.overrides)
    for w in conf.warnings:
        print(f"warning: {w}", file=sys.stderr)
    cfg = conf.cfg
    import torch

    from gopd.data import load_splits

    _quiet_libraries()
    t0 = time.perf_counter()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    train, test, _ = load_splits(cfg.data)  # the trainer's splits (data.holdout, dedupe, ...)
    hints = _check(args, cfg, train.column_names)
    m = _load_models(cfg, args.opd_teacher, device)
    prompts = Prompts.from_config(cfg)
    idx = sorted(random.Random(cfg.seed).sample(range(len(train)), min(args.prompts, len(train))))
    r = cfg.rollout
    batch = sample_batch(m.student, m.tok, train.select(idx).to_list(), n=r.n, max_new_tokens=r.max_new_tokens,
                         temperature=r.temperature, top_p=r.top_p, seed=cfg.seed, prompts=prompts,
                         prompts_per_call=args.batch_size)
    table = hint_table(m.student, m.tok, batch, hints, alpha=cfg.alpha, pressure=cfg.pressure.name,
                       clip=cfg.pressure.clip, reference=cfg.reference.name, ref_model=m.ref_model,
                       opd_teacher=m.opd_teacher, prompts=prompts, answer_field=cfg.data.answer_field,
                       answer_extract=cfg.data.get("answer_extract", "boxed"),
                       chunk_size=cfg.loss.chunk_size, score_per_call=args.batch_size)
    rows_out = [{"hint": "(student)"}, *table]
    if args.eval_problems > 0:
        rows_out = _evaluate(rows_out, m, test, hints, prompts, cfg, args)
    meta = {**_meta(args, conf, batch), **_provenance(cfg.model.path)}
    print_table(rows_out, meta)
    out = args.out or f"outputs/diagnose/hints-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    paths = save(rows_out, meta, out)
    print(f"wrote {', '.join(map(str, paths))} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
