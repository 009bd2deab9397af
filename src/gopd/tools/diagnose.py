"""Hint-strength diagnostic: pick the hinted teacher's hint before spending GPU hours.

    python -m gopd.tools.diagnose --hints hint_answer hint_solution hint_soft
    python -m gopd.tools.diagnose --student <ckpt> --data <dir|file|hub> --hints hint hint_structural \\
        --alpha 2 --pressure positive --prompts 64 --n 4 --out results/hints/mine

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
from pathlib import Path

DEFAULT_HINTS = ("hint_answer", "hint_solution", "hint_soft")
REFERENCES = ("student", "teacher")  # or a checkpoint path (a pre-RL base)
COLUMNS = ("hint", "teacher/accuracy", "solution/exact", "hint/tokens", "delta/mean", "delta/max", "delta/min", "opd/max_shock",
           "opd/teacher_kl", "opd/ref_kl", "opd/pos_mass", "opd/neg_mass", "opd/pos_frac", "agree/pos", "agree/neg")


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
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, problem_field: str = "problem",
                 prompts_per_call: int = 64):
    """The student's rollouts of ``rows`` (``n`` each), sampled as the trainer samples them."""
    import torch

    from gopd.prompts import PromptBuilder
    from gopd.rollout import HFRollout

    torch.manual_seed(seed)
    engine = HFRollout(student, tokenizer, PromptBuilder(tokenizer, problem_field=problem_field), n=n,
                       max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
    parts = [engine.sample(list(rows[i:i + prompts_per_call])) for i in range(0, len(rows), prompts_per_call)]
    return parts[0] if len(parts) == 1 else concat_batches(parts, tokenizer.pad_token_id)


def _score(scorer, batch, pad_id: int, per_call: int | None):
    """``scorer.score`` over the batch, ``per_call`` rollouts at a time (memory on real models)."""
    import torch

    b = len(batch.rows)
    if not per_call or per_call >= b:
        return scorer.score(batch.rows, batch.completion_ids, batch.mask, pad_id)
    return torch.cat([scorer.score(batch.rows[i:i + per_call], batch.completion_ids[i:i + per_call],
                                   batch.mask[i:i + per_call], pad_id) for i in range(0, b, per_call)])


def hint_table(student, tokenizer, batch, hints: Sequence[str], *, alpha: float = 1.0, pressure: str = "full",
               clip: float | None = None, reference: str = "student", ref_model=None, opd_teacher=None,
               hint_template: str | None = None, problem_field: str = "problem", answer_field: str = "answer",
               chunk_size: int = 128, score_per_call: int | None = None) -> list[dict]:
    """One dict per hint column: ``delta/*``, every ``opd_diagnostics`` term, ``agree/*``.

    ``reference``: ``student`` (the frozen step-0 student: ``r = s``), ``teacher`` (``r = q``),
    or anything else with ``ref_model`` (e.g. a pre-RL base, scored in the student's prompt).
    ``opd_teacher``: a model scored in the student's prompt, for the sign agreement with OPD.
    """
    import torch

    from gopd import objective
    from gopd.prompts import DEFAULT_HINT_TEMPLATE, PromptBuilder
    from gopd.rollout import decode
    from gopd.scoring import Route, Scorer
    from gopd.tools.traces import tensor_agreement
    from gopd.verifier import verify_batch

    pad, mask = tokenizer.pad_token_id, batch.mask
    plain = PromptBuilder(tokenizer, problem_field=problem_field)

    def scorer(model, prompts):
        return Scorer({"route": Route(model, prompts)}, chunk_size=chunk_size)

    s = _score(scorer(student, plain), batch, pad, score_per_call)
    correct = torch.tensor(verify_batch(decode(tokenizer, batch.completion_ids, mask),
                                        [str(r[answer_field]) for r in batch.rows]), dtype=torch.bool)
    r_fixed = None
    if reference == "student":
        r_fixed = s
    elif reference != "teacher":
        if ref_model is None:
            raise ValueError(f"reference {reference!r} needs ref_model (or use one of {', '.join(REFERENCES)})")
        r_fixed = _score(scorer(ref_model, plain), batch, pad, score_per_call)
    q_rl = None if opd_teacher is None else _score(scorer(opd_teacher, plain), batch, pad, score_per_call)
    keep = mask.bool()
    unique_rows = list({id(r): r for r in batch.rows}.values())
    out = []
    for h in hints:
        prompts = PromptBuilder(tokenizer, hint_field=h, hint_template=hint_template or DEFAULT_HINT_TEMPLATE,
                                problem_field=problem_field)
        q = _score(scorer(student, prompts), batch, pad, score_per_call)
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
                 problem_field: str = "problem", rows_per_call: int = 16) -> dict[str, dict[str, float]]:
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
    from gopd.prompts import PromptBuilder
    from gopd.vocab import full_logprobs

    if reference not in REFERENCES and ref_model is None:
        raise ValueError(f"reference {reference!r} needs ref_model (or use one of {', '.join(REFERENCES)})")
    pad, device = tokenizer.pad_token_id, next(student.parameters()).device
    plain = PromptBuilder(tokenizer, problem_field=problem_field)
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
            for name, (model, prompts) in teachers.items():
                q = full_logprobs(model, prompts.batch_ids(part), ids, mask, pad)
                count(name, "solution/exact", q, ids, mask)
                for a in alphas if reference != "teacher" else ():
                    count(name, f"target/exact@{a:g}", objective.target_logp(q, r, alpha=a), ids, mask)
    return {name: {key: n / max(len(rows), 1) for key, n in per.items()} for name, per in hits.items()}


def accuracies(student, tokenizer, rows: Sequence[Mapping], hints: Sequence[str], *, hint_template: str | None = None,
               problem_field: str = "problem", answer_field: str = "answer", domain_field: str = "domain",
               max_new_tokens: int = 64, batch_size: int = 250) -> dict[str | None, float]:
    """Greedy accuracy of the student (key ``None``) and of each hinted teacher on ``rows``."""
    from gopd.evaluate import greedy_accuracy, scorer_accuracy
    from gopd.prompts import DEFAULT_HINT_TEMPLATE, PromptBuilder
    from gopd.scoring import Route, Scorer

    kw = dict(answer_field=answer_field, domain_field=domain_field, max_new_tokens=max_new_tokens,
              batch_size=batch_size)
    out = {None: greedy_accuracy(student, tokenizer, PromptBuilder(tokenizer, problem_field=problem_field), rows,
                                 **kw)["accuracy"]}
    for h in hints:
        prompts = PromptBuilder(tokenizer, hint_field=h, hint_template=hint_template or DEFAULT_HINT_TEMPLATE,
                                problem_field=problem_field)
        out[h] = scorer_accuracy(Scorer({"hinted": Route(student, prompts)}), tokenizer, rows, **kw)["accuracy"]
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
    table = Table(title="hint strength", caption=", ".join(f"{k}={v}" for k, v in meta.items()))
    for c in cols:  # two-line headers ("opd" over "pos_mass") keep the table narrow
        table.add_column(c.replace("/", "\n"), justify="left" if c == "hint" else "right", no_wrap=c == "hint")
    for r in rows:
        table.add_row(*[_cell(r.get(c)) or "-" for c in cols])
    console = Console()
    if not console.is_terminal:  # piped into a file or a log: do not squeeze to 80 columns
        console = Console(width=max(console.width, 160))
    console.print(table)


# ------------------------------------------------------------------------------- CLI
def _quiet_libraries() -> None:
    """Per-file progress bars and load reports of datasets / transformers hide the table."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m gopd.tools.diagnose", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--student", default="toy://student", help="student checkpoint (the hinted teacher is its step-0 copy)")
    ap.add_argument("--data", default="toy://data", help="dataset: toy://data, a directory with <split>.parquet|jsonl, a file, or a hub name")
    ap.add_argument("--split", default="train", help="split whose prompts are rolled out")
    ap.add_argument("--eval-split", default="test", help="split of the held-out problems for the accuracies")
    ap.add_argument("--toy-variant", default="full", help="toy world that toy:// paths resolve in (full | full_v1 | mini)")
    ap.add_argument("--hints", nargs="+", default=list(DEFAULT_HINTS), help="hint columns to compare")
    ap.add_argument("--hint-template", default=None, help="how the hint joins the problem (default: the trainer's '{problem}\\nHint: {hint}')")
    ap.add_argument("--prompts", type=int, default=32, help="prompts rolled out (a seeded random sample of the split)")
    ap.add_argument("--n", type=int, default=4, help="rollouts per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="completion budget per rollout")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    ap.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    ap.add_argument("--alpha", type=float, default=1.0, help="G-OPD reward scale (1 = OPD)")
    ap.add_argument("--pressure", default="full", help="full | positive | negative | reversed (for opd/* masses)")
    ap.add_argument("--clip", type=float, default=None, help="pressure.clip (default off)")
    ap.add_argument("--reference", default="student",
                    help="student (frozen step-0 copy: r = s), teacher (r = q), or a checkpoint path (pre-RL base)")
    ap.add_argument("--opd-teacher", default=None, help="RL checkpoint: add the sign agreement with OPD (q_rl - s)")
    ap.add_argument("--eval-problems", type=int, default=200, help="held-out problems for the greedy accuracies and the targets (0 = skip)")
    ap.add_argument("--target-alphas", type=float, nargs="*", default=[1.5, 2.0, 3.0],
                    help="alphas whose G-OPD optimum is scored on the reference solutions (none = skip)")
    ap.add_argument("--solution-field", default="solution", help="column with the reference solution (for the targets)")
    ap.add_argument("--eval-max-new-tokens", type=int, default=None, help="greedy budget (default: --max-new-tokens)")
    ap.add_argument("--problem-field", default="problem", help="column with the question")
    ap.add_argument("--answer-field", default="answer", help="column with the verifiable answer")
    ap.add_argument("--domain-field", default="domain", help="column with the domain (per-domain accuracy)")
    ap.add_argument("--batch-size", type=int, default=64, help="prompts per generate call / rollouts per scoring call")
    ap.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    ap.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda:N")
    ap.add_argument("--seed", type=int, default=0, help="seeds the prompt sample and the rollouts")
    ap.add_argument("--out", default=None, help="output prefix (default: outputs/diagnose/hints-<time>)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _add_targets(rows_out: list[dict], student, tok, test_rows, args, ref_model, opd_teacher) -> list[dict]:
    """Fill ``solution/exact`` and ``target/exact@<a>`` into the table; return the extra row of the
    ``--opd-teacher`` (if any)."""
    from gopd.prompts import DEFAULT_HINT_TEMPLATE, PromptBuilder

    teachers = {h: (student, PromptBuilder(tok, hint_field=h, hint_template=args.hint_template or DEFAULT_HINT_TEMPLATE,
                                           problem_field=args.problem_field)) for h in args.hints}
    if opd_teacher is not None:
        teachers["(opd teacher)"] = (opd_teacher, PromptBuilder(tok, problem_field=args.problem_field))
    found = target_table(student, tok, test_rows, teachers, args.target_alphas, reference=args.reference,
                         ref_model=ref_model, solution_field=args.solution_field, problem_field=args.problem_field,
                         rows_per_call=max(1, args.batch_size // 4))
    for row in rows_out:
        row.update(found[row["hint"]])
    return [{"hint": "(opd teacher)", **found["(opd teacher)"]}] if opd_teacher is not None else []


def _run(args) -> int:
    from gopd.objective import PRESSURES

    if args.pressure not in PRESSURES:
        raise ValueError(f"--pressure must be one of {', '.join(PRESSURES)}, got {args.pressure!r}")
    if args.alpha <= 0:
        raise ValueError(f"--alpha must be > 0, got {args.alpha}")
    if any(a <= 0 for a in args.target_alphas):
        raise ValueError(f"--target-alphas must all be > 0, got {args.target_alphas}")
    if args.prompts < 1 or args.n < 1:
        raise ValueError("--prompts and --n must be >= 1")
    if args.reference == "teacher" and args.alpha != 1:
        print(f"warning: alpha={args.alpha} is inert with --reference teacher (r = q, so delta = q - s)", file=sys.stderr)
    import torch

    from gopd.data import load_split
    from gopd.pool import load_model, load_tokenizer
    from gopd.toy import resolve_path

    _quiet_libraries()
    t0 = time.perf_counter()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    ds = load_split(resolve_path(args.data, args.toy_variant), args.split)
    missing = [h for h in args.hints if h not in ds.column_names]
    if missing:
        raise ValueError(f"--hints: column(s) {', '.join(missing)} not in the data (columns: {', '.join(ds.column_names)})")
    path = resolve_path(args.student, args.toy_variant)
    tok = load_tokenizer(path)
    student = load_model(path, args.dtype).to(device)

    def other(p):
        return load_model(resolve_path(p, args.toy_variant), args.dtype).to(device)

    ref_model = None if args.reference in REFERENCES else other(args.reference)
    opd_teacher = None if args.opd_teacher is None else other(args.opd_teacher)
    idx = sorted(random.Random(args.seed).sample(range(len(ds)), min(args.prompts, len(ds))))
    rows = ds.select(idx).to_list()
    batch = sample_batch(student, tok, rows, n=args.n, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                         problem_field=args.problem_field, prompts_per_call=args.batch_size)
    table = hint_table(student, tok, batch, args.hints, alpha=args.alpha, pressure=args.pressure, clip=args.clip,
                       reference=args.reference, ref_model=ref_model, opd_teacher=opd_teacher,
                       hint_template=args.hint_template, problem_field=args.problem_field,
                       answer_field=args.answer_field, score_per_call=args.batch_size)
    student_row = {"hint": "(student)"}
    if args.eval_problems > 0:
        test = load_split(resolve_path(args.data, args.toy_variant), args.eval_split)
        test_rows = test.select(range(min(args.eval_problems, len(test)))).to_list()
        acc = accuracies(student, tok, test_rows, args.hints, hint_template=args.hint_template,
                         problem_field=args.problem_field, answer_field=args.answer_field,
                         domain_field=args.domain_field,
                         max_new_tokens=args.eval_max_new_tokens or args.max_new_tokens, batch_size=args.batch_size)
        student_row["teacher/accuracy"] = acc[None]
        for r in table:
            r["teacher/accuracy"] = acc[r["hint"]]
    rows_out = [student_row, *table]
    if args.eval_problems > 0 and args.solution_field in test.column_names:
        rows_out += _add_targets(rows_out, student, tok, test_rows, args, ref_model, opd_teacher)
    elif args.eval_problems > 0:
        print(f"note: no {args.solution_field!r} column in the data: no target columns", file=sys.stderr)
    meta = {"student": args.student, "data": args.data, "rollouts": len(batch.rows), "tokens": batch.num_tokens,
            "alpha": args.alpha, "pressure": args.pressure, "reference": args.reference,
            "eval_problems": args.eval_problems, "seed": args.seed}
    if args.opd_teacher:
        meta["opd_teacher"] = args.opd_teacher
    meta.update(_provenance(path))
    print_table(rows_out, meta)
    out = args.out or f"outputs/diagnose/hints-{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    paths = save(rows_out, meta, out)
    print(f"wrote {', '.join(map(str, paths))} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
