"""The numbers per run and per arm, the comparison built from run directories, and its
table.md, table.csv and runs.csv."""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path

from gopd.tools.compare.arms import ARM_ORDER, arm_keys, find_baselines, group_arms, parse_baseline, sort_key
from gopd.tools.compare.runs import (Arm, Comparison, Run, escape, find_run_dirs, fmt_value, missing_jobs,
                                     read_run, short, shown)

# A training step's seconds (metrics.csv): rollout, then scoring and loss, then optimizer update and
# rollout-engine sync. Evaluation, checkpointing and start-up are outside all three.
STEP_SECONDS = ("perf/rollout_s", "perf/score_s", "perf/update_s")


# ----------------------------------------------------------------------------- numbers


def num(x) -> float:
    """A summary value as a float; NaN when absent or not a number (``null`` gap, a string)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def mean_std(values) -> tuple[float, float, int]:
    """Mean and sample standard deviation (n - 1) of the finite values; std is NaN below two."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan), len(vals)


def gap_closed(s: dict) -> float:
    """The run's ``eval/gap_closed``; recomputed as in ``gopd.evaluate.gap_closed`` if absent."""
    if "eval/gap_closed" in s:
        return num(s["eval/gap_closed"])
    initial, final, teacher = (num(s.get(k)) for k in ("eval/accuracy_initial", "eval/accuracy_final",
                                                       "teacher/accuracy"))
    return (final - initial) / (teacher - initial) if teacher - initial > 1e-9 else math.nan


def column_mean(run: Run, column: str) -> float:
    """Mean over the run's logged steps (NaN without the column or any value)."""
    if run.metrics is None or column not in run.metrics:
        return math.nan
    return float(run.metrics[column].mean())  # pandas skips the empty (NaN) cells


def eval_len(run: Run, which: str) -> float:
    """Held-out response length at the first or last evaluation (summary.json, else metrics.csv)."""
    value = num(run.summary.get(f"eval/response_len_{which}"))
    if math.isnan(value) and run.metrics is not None and "eval/response_len" in run.metrics:
        col = run.metrics["eval/response_len"].dropna()
        value = float(col.iloc[0 if which == "initial" else -1]) if len(col) else math.nan
    return value


def train_seconds_before(metrics, steps) -> list[float]:
    """Training seconds spent before each of ``steps``: the sum over steps ``0 .. s-1`` of
    ``perf/rollout_s + perf/score_s + perf/update_s`` (metrics.csv). The evaluation logged at step s
    follows s training steps, so this is its x on a wall-time axis; step 0's is 0. NaN for a step
    after any training step without a row or without one of the three values (the sum is unknown)."""
    import pandas as pd

    if metrics is None or any(c not in metrics for c in STEP_SECONDS):
        per_step = pd.Series(dtype=float)
    else:
        per_step = metrics[list(STEP_SECONDS)].sum(axis=1, min_count=len(STEP_SECONDS))  # NaN if one is missing
        per_step = per_step.groupby(level=0).last()  # a step logged twice counts once
        per_step.index = per_step.index.astype(int)
    steps = [int(s) for s in steps]
    before = per_step.reindex(range(max(steps, default=0))).cumsum(skipna=False)  # a gap: NaN from there on
    return [0.0 if s == 0 else float(before.iloc[s - 1]) for s in steps]


def eval_times(run: Run):
    """The run's held-out accuracies, indexed by the training seconds before each (see
    ``train_seconds_before``); None without ``eval/accuracy`` or complete step timings."""
    if run.metrics is None or "eval/accuracy" not in run.metrics:
        return None
    acc = run.metrics["eval/accuracy"].dropna()
    x = train_seconds_before(run.metrics, acc.index)
    if not len(acc) or not all(math.isfinite(v) for v in x):
        return None
    return list(zip(x, acc.tolist()))


def train_s(run: Run) -> float:
    """Total training seconds: the sum of the step timings over the run's ``steps`` steps (NaN if any is missing)."""
    steps = num(run.summary.get("steps"))
    return train_seconds_before(run.metrics, [int(steps)])[0] if math.isfinite(steps) and steps > 0 else math.nan


SUMMARY_STATS = ("eval/accuracy_initial", "eval/accuracy_final", "teacher/accuracy", "wall_s")
ACC = "eval/accuracy_final"
DOMAIN = "eval/accuracy/"  # metrics.csv's per-domain held-out accuracy: eval/accuracy/<domain>
NUMBERS = ("steps", *SUMMARY_STATS, "train_s", "perf/tokens_per_s", "eval/gap_closed", "eval/response_len_initial",
           "eval/response_len_final", "opd/pos_mass", "opd/neg_mass")  # the keys of per_run


def find_domains(runs: list[Run]) -> list[str]:
    """The domains ``<d>`` of the ``eval/accuracy/<d>`` columns in the completed runs' metrics.csv, in column order."""
    cols = (c for r in runs if r.problem is None and r.metrics is not None for c in r.metrics.columns)
    return list(dict.fromkeys(c[len(DOMAIN):] for c in cols if c.startswith(DOMAIN) and len(c) > len(DOMAIN)))


def domain_accuracy(run: Run, domain: str, which: str) -> float:
    """``eval/accuracy/<domain>`` at the run's first (``initial``) or last (``final``) evaluation row
    (a row with ``eval/accuracy``; without that column, a row with this one). NaN without the column."""
    column = DOMAIN + domain
    if run.metrics is None or column not in run.metrics:
        return math.nan
    at = run.metrics["eval/accuracy" if "eval/accuracy" in run.metrics else column].notna().to_numpy()
    values = run.metrics[column][at]
    return float(values.iloc[0 if which == "initial" else -1]) if len(values) else math.nan


def per_run(run: Run, domains: list[str] = ()) -> dict:
    """One completed run's numbers, named as in summary.json / metrics.csv (``train_s``: ``train_s()``;
    per domain ``eval/accuracy/<d>_initial`` and ``_final``: ``domain_accuracy()``)."""
    out = {"steps": num(run.summary.get("steps"))}
    out.update({k: num(run.summary.get(k)) for k in SUMMARY_STATS})
    out["train_s"] = train_s(run)
    out["perf/tokens_per_s"] = num(run.summary.get("perf/tokens_per_s"))
    out["eval/gap_closed"] = gap_closed(run.summary)
    out.update({f"eval/response_len_{w}": eval_len(run, w) for w in ("initial", "final")})
    out.update({k: column_mean(run, k) for k in ("opd/pos_mass", "opd/neg_mass")})  # mean over steps
    out.update({f"{DOMAIN}{d}_{w}": domain_accuracy(run, d, w) for d in domains for w in ("initial", "final")})
    return out


def arm_stats(arm: Arm, domains: list[str] = ()) -> dict:
    """Mean and std (``<name>_std``) over the arm's completed runs of each per-run number
    (and of each domain's final accuracy)."""
    rows = [per_run(r, domains) for r in arm.ok]
    out = {"n": len(rows), "seeds": sorted((r.seed for r in arm.ok), key=lambda v: sort_key((v,))),
           "not_completed": len(arm.runs) - len(rows)}
    for name in (*NUMBERS, *(f"{DOMAIN}{d}_final" for d in domains)):
        out[name], out[name + "_std"], _ = mean_std([r[name] for r in rows])
    steps = {int(r["steps"]) for r in rows if math.isfinite(r["steps"])}
    out["steps"] = "" if not steps else str(min(steps)) if len(steps) == 1 else f"{min(steps)}-{max(steps)}"
    return out


def delta(stats: dict, base: dict) -> tuple[float, float]:
    """Change of mean final accuracy vs the baseline, and its standard error (NaN below 2 seeds)."""
    d = stats[ACC] - base[ACC]
    if stats["n"] < 2 or base["n"] < 2:
        return d, math.nan
    return d, math.sqrt(stats[ACC + "_std"] ** 2 / stats["n"] + base[ACC + "_std"] ** 2 / base["n"])


# ----------------------------------------------------------------------------- building the comparison


def build(roots: list[Path], baseline: str | None = None, ignore: tuple[str, ...] = ()) -> Comparison:
    dirs = find_run_dirs(roots)
    runs = sorted((read_run(d) for d in dirs), key=lambda r: natural(r.path))
    keys = arm_keys(runs, ignore)
    arms = group_arms(runs, keys)
    slice_keys = find_baselines(baseline, arms, keys, parse_baseline(baseline, runs, keys, ignore)) if baseline else []
    baselines = list(dict.fromkeys(a.base for a in arms if a.base is not None))
    missing, notes = missing_jobs(dirs, roots)
    notes += duplicate_seed_notes(arms) + timing_notes(arms)
    for base in baselines:
        if not base.ok:
            compared = "its slice" if slice_keys else "any arm"
            notes.append(f"the baseline arm ({base.label}) has no completed run: no change vs baseline for {compared}")
    return Comparison(runs, keys, arms, baselines, baseline, slice_keys, missing, notes, find_domains(runs))


def natural(path: Path) -> list:
    """Sort key putting sweep job 2 before job 10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def duplicate_seed_notes(arms: list[Arm]) -> list[str]:
    notes = []
    for arm in arms:
        seeds = [r.seed for r in arm.ok]
        twice = sorted({fmt_value(s) for s in seeds if seeds.count(s) > 1})
        if twice:
            notes.append(f"arm {arm.label}: seed {', '.join(twice)} appears in more than one completed run "
                         "(all are pooled; a sweep launched twice?)")
    return notes


def timing_notes(arms: list[Arm]) -> list[str]:
    notes = []
    for arm in arms:
        untimed = [r for r in arm.ok if eval_times(r) is None]
        if untimed:
            names = ", ".join(shown(r.path) for r in untimed)
            notes.append(f"arm {arm.label}: {len(untimed)} completed run(s) without eval/accuracy or without "
                         f"{' / '.join(STEP_SECONDS)} at every step, not in accuracy_time.png "
                         f"(train_s blank if a timing is missing): {names}")
    return notes



def problems(c: Comparison) -> list[dict]:
    """Every run not in the numbers, with its reason, then the jobs that left no directory."""
    label = {id(r): a.label for a in c.arms for r in a.runs}
    rows = [{"run": shown(r.path), "arm": label.get(id(r), "?"), "seed": fmt_value(r.seed) if r.config else "",
             "reason": r.problem} for r in c.runs if r.problem is not None]
    return rows + c.missing


# ----------------------------------------------------------------------------- writing


def fmt(x: float, digits: int = 3) -> str:
    return "" if not math.isfinite(x) else f"{x:.{digits}f}"


def pm(mean: float, std: float, digits: int = 3) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def table_rows(c: Comparison) -> list[dict]:
    """One row per arm (the numbers of table.csv; table.md formats the same dicts)."""
    stats = {id(arm): arm_stats(arm, c.domains) for arm in c.arms}
    rows = []
    for arm in c.arms:
        s = stats[id(arm)]
        base = stats[id(arm.base)] if arm.base is not None else None
        d, se = delta(s, base) if base is not None and base["n"] else (math.nan, math.nan)
        if arm.base is arm:
            se = math.nan  # the baseline against itself: no uncertainty to speak of
        row = {short(k): fmt_value(v) for k, v in zip(c.keys, arm.key)}
        row.update({"arm": arm.label, "baseline": arm.base is arm, "baseline_arm": arm.base.label if arm.base else "",
                    "n_seeds": s["n"],
                    "seeds": " ".join(fmt_value(x) for x in s["seeds"]), "not_completed": s["not_completed"],
                    "steps": s["steps"], ACC: s[ACC], ACC + "_std": s[ACC + "_std"],
                    "delta_vs_baseline": d, "delta_se": se})
        for name in (f"{DOMAIN}{d}_final" for d in c.domains):
            row.update({name: s[name], name + "_std": s[name + "_std"]})
        for name in NUMBERS[1:]:
            row.setdefault(name, s[name])
            row.setdefault(name + "_std", s[name + "_std"])
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    columns = columns or (list(rows[0]) if rows else ["arm"])
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({k: cell(v) for k, v in row.items()})


def cell(v):
    """A CSV cell: blank for NaN, floats to 6 significant digits (the sums' rounding noise is not data),
    text on one line (an error's traceback, a template's newline: one row per line stays true)."""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else format(v, ".6g")
    return escape(v) if isinstance(v, str) else v


def runs_rows(c: Comparison) -> list[dict]:
    label = {id(r): a.label for a in c.arms for r in a.runs}
    out = []
    for r in c.runs:
        row = {"run_dir": shown(r.path), "arm": label.get(id(r), "?"), "seed": fmt_value(r.seed) if r.config else "",
               "status": r.summary.get("status", ""), "problem": r.problem or "",
               "world": r.summary.get("world") or "", "code": r.summary.get("code") or ""}
        row.update(per_run(r, c.domains) if r.problem is None else {})
        out.append(row)
    return out


def md(text) -> str:
    """A markdown table cell: one line, no column separator."""
    return escape(str(text)).replace("|", "\\|")


def baseline_text(c: Comparison) -> str:
    if not c.baselines:
        return "none (pass --baseline)"
    if not c.slice_keys:
        return c.baseline_spec
    free = ", ".join(map(short, c.slice_keys))
    return f"{c.baseline_spec} per {free} (each arm against the {c.baseline_spec} arm with the same {free})"


def provenance(runs: list[Run], key: str) -> str:
    """The distinct values of a summary.json key (``world``, ``code``) over the runs, with run counts when they differ."""
    counts: dict = {}
    for r in runs:
        v = r.summary.get(key)
        counts[v] = counts.get(v, 0) + 1
    known = sorted(v for v in counts if v)
    parts = [f"`{v}`" + (f" ({counts[v]} runs)" if len(counts) > 1 else "") for v in known]
    if None in counts or "" in counts:
        parts.append(f"not recorded ({counts.get(None, 0) + counts.get('', 0)} runs)")
    return ", ".join(parts)


def markdown(c: Comparison, rows: list[dict], title: str, command: str) -> str:
    # the paper's axes get a column each; any other varying key shares one, so the table stays readable
    main = [short(k) for k in c.keys if k in ARM_ORDER]
    other = [short(k) for k in c.keys if k not in ARM_ORDER]
    head = main + (["other config"] if other else []) or ["arm"]
    cols = ["seeds", "steps", "acc start", "acc final", *(f"acc final {d}" for d in c.domains),
            "Δ vs baseline (± s.e.)", "gap closed", "resp len start → end", "opd/pos_mass", "opd/neg_mass",
            "train (s)", "wall (s)"]
    lines = [f"# {title}", "", f"Made by `{command}`.", "",
             f"World: {provenance(c.runs, 'world')}. Code: {provenance(c.runs, 'code')}.", "",
             f"{len(c.runs)} runs, {len(c.arms)} arms by {', '.join(map(short, c.keys)) or '(no key varies)'}; "
             f"seeds pooled (mean ± sample std over seeds); baseline: {baseline_text(c)}.", "",
             "| " + " | ".join(head + cols) + " |", "|" + "---|" * len(head) + "---:|" * len(cols)]
    for arm, row in zip(c.arms, rows):
        keys = [arm.parts.get(h, "") for h in main]
        keys += [" ".join(f"{h}={arm.parts[h]}" for h in other if h in arm.parts)] if other else []
        keys = keys or [arm.label]
        seeds = f"{row['n_seeds']}" + (f" ({row['not_completed']} not completed)" if row["not_completed"] else "")
        change = "baseline" if row["baseline"] else pm(row["delta_vs_baseline"], row["delta_se"])
        if change[0].isdigit():
            change = "+" + change
        lens = " → ".join(fmt(row[f"eval/response_len_{w}"], 1) or "–" for w in ("initial", "final"))
        lines.append("| " + " | ".join(md(x) for x in keys + [
            seeds, row["steps"], fmt(row["eval/accuracy_initial"]),
            pm(row["eval/accuracy_final"], row["eval/accuracy_final_std"]),
            *(pm(row[f"{DOMAIN}{d}_final"], row[f"{DOMAIN}{d}_final_std"]) for d in c.domains), change,
            pm(row["eval/gap_closed"], row["eval/gap_closed_std"], 2), lens,
            fmt(row["opd/pos_mass"], 4), fmt(row["opd/neg_mass"], 4), fmt(row["train_s"], 0),
            fmt(row["wall_s"], 0)]) + " |")
    lines += ["", COLUMN_NOTES, "", *not_in_numbers(c)]
    return "\n".join(lines) + "\n"


COLUMN_NOTES = (
    "acc: held-out greedy accuracy (`eval/accuracy_initial`, `eval/accuracy_final` of summary.json). "
    "acc final <domain> (when runs log them): `eval/accuracy/<domain>` of metrics.csv at the run's last "
    "evaluation, – for runs without it. "
    "Δ: difference of mean final accuracy from the baseline arm's (with a baseline per slice, the "
    "one with the same other arm keys), ± its standard error "
    "sqrt(sd_a²/n_a + sd_b²/n_b). gap closed: `eval/gap_closed` = (final - initial) / "
    "(teacher - initial), blank without a teacher. resp len: held-out greedy response length "
    "in tokens at the first and last evaluation (mean over seeds). opd/pos_mass, opd/neg_mass: mean "
    "over the run's logged steps (metrics.csv), then over seeds. train: `train_s`, seconds in training "
    "steps (sum over the run's steps of `perf/rollout_s + perf/score_s + perf/update_s` in metrics.csv: "
    "no evaluation, checkpointing or start-up), mean over seeds. wall: `wall_s` of summary.json, the "
    "whole run's wall-clock seconds (with start-up, model loading and evaluations), mean over seeds. "
    "Plots: accuracy.png (vs step), accuracy_time.png (vs training seconds), response_len.png "
    "(bands: ± std over seeds), heatmap.png when alpha and grpo_mix both vary.")


def not_in_numbers(c: Comparison) -> list[str]:
    rows = problems(c)
    lines = [f"## Runs not in the numbers ({len(rows)})", ""]
    if not rows:
        lines.append(f"None: all {len(c.runs)} runs completed and were read.")
    else:
        lines += ["| run | arm | seed | reason |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(md(r[k]) for k in ("run", "arm", "seed", "reason")) + " |" for r in rows]
    if c.notes:
        lines += ["", "## Notes", ""] + [f"- {escape(n)}" for n in c.notes]
    return lines
