"""Compare ablation arms from run directories: a table and plots under ``results/<name>/``.

    python -m gopd.tools.compare multirun/alpha_x_mix/<time> --baseline alpha=1,grpo_mix=0 --name alpha_x_mix
    python -m gopd.tools.compare multirun/pressure/ multirun/pressure_seeds/ --baseline pressure=full

Reads only what a run writes (README, "Run outputs": ``.hydra/config.yaml``, ``metrics.csv``,
``summary.json``), so a comparison is reproducible from the run directories without W&B. Runs
are grouped into arms by the config keys whose values differ between runs; seeds are pooled.
Writes ``table.md``, ``table.csv`` (one row per arm), ``runs.csv`` (one row per run) and
``accuracy.png``, ``accuracy_time.png`` (held-out accuracy vs training seconds), ``response_len.png``,
``length_accuracy.png`` (rollout length, and tries in a search world, next to accuracy)
(and ``heatmap.png`` when alpha and grpo_mix both vary).
Runs that are missing, failed or unreadable are listed in ``table.md`` with the reason.

A config group (a top-level mapping with a ``name``: ``teacher``, ``estimator``, ...) whose ``name``
varies is one arm key: its other keys (``teacher.path``, ``estimator.k``) come with the name and
are arm keys only where they vary among runs with the same name. ``--baseline`` names one arm, or
one arm per combination of the other arm keys (``estimator=token`` with two teachers: each
teacher's arms are measured against that teacher's token arm).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from gopd.tools.compare.arms import ARM_ORDER, POOLED, arm_keys, find_baselines, group_arms, parse_baseline
from gopd.tools.compare.plots import (accuracy_plot, accuracy_time_plot, heatmap_plot, interpolate_seeds,
                                      length_accuracy_plot, response_len_plot, time_panels)
from gopd.tools.compare.runs import (Arm, Comparison, InputError, Run, escape, find_run_dirs, missing_jobs,
                                     read_run)
from gopd.tools.compare.tables import (STEP_SECONDS, arm_stats, build, delta, eval_times, fmt, markdown, per_run,
                                       pm, problems, runs_rows, table_rows, train_s, train_seconds_before,
                                       write_csv)

__all__ = ["ARM_ORDER", "OUTPUTS", "POOLED", "STEP_SECONDS", "Arm", "Comparison", "InputError", "Run",
           "accuracy_plot", "accuracy_time_plot", "arm_keys", "arm_stats", "build", "console_table", "delta",
           "eval_times", "find_baselines", "find_run_dirs", "group_arms", "heatmap_plot", "interpolate_seeds",
           "main", "markdown", "missing_jobs", "output_dir", "parse_baseline", "parser", "per_run", "read_run",
           "response_len_plot", "length_accuracy_plot", "runs_rows", "table_rows", "time_panels", "train_s", "train_seconds_before",
           "write", "write_csv"]

OUTPUTS = ["table.md", "table.csv", "runs.csv", "accuracy.png", "accuracy_time.png", "response_len.png",
           "length_accuracy.png"]


def write(c: Comparison, rows: list[dict], out: Path, title: str, command: str, smooth: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for name in [*OUTPUTS, "heatmap.png"]:
        (out / name).unlink(missing_ok=True)  # a file from an earlier comparison must not pass for this one's
    (out / "table.md").write_text(markdown(c, rows, title, command))
    write_csv(out / "table.csv", rows)
    run_rows = runs_rows(c)
    write_csv(out / "runs.csv", run_rows, columns=list(dict.fromkeys(k for r in run_rows for k in r)))
    accuracy_plot(c.arms, out / "accuracy.png")
    accuracy_time_plot(c, out / "accuracy_time.png")
    response_len_plot(c.arms, out / "response_len.png", smooth)
    length_accuracy_plot(c.arms, out / "length_accuracy.png", smooth)
    written = [out / n for n in OUTPUTS]
    if {"alpha", "grpo_mix"} <= set(c.keys):
        heatmap_plot(c, out / "heatmap.png")
        written.append(out / "heatmap.png")
    return written


def console_table(c: Comparison, rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(c.arms)} arms, {len(c.runs)} runs")
    for col in ("arm", "seeds", "acc final", "Δ vs baseline", "gap closed", "train (s)", "wall (s)"):
        table.add_column(col, justify="left" if col == "arm" else "right", overflow="fold")
    for row in rows:
        change = "baseline" if row["baseline"] else fmt(row["delta_vs_baseline"])
        table.add_row(row["arm"], str(row["n_seeds"]), pm(row["eval/accuracy_final"], row["eval/accuracy_final_std"]),
                      change, pm(row["eval/gap_closed"], row["eval/gap_closed_std"], 2), fmt(row["train_s"], 0),
                      fmt(row["wall_s"], 0))
    Console().print(table)


# ----------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m gopd.tools.compare", description=__doc__.split("\n\n")[0],
                                 epilog="Exit codes: 0 written (runs not in the numbers are listed in table.md), "
                                        "2 bad input (no run directories, unknown baseline key).")
    ap.add_argument("paths", nargs="+", type=Path,
                    help="run directories, sweep directories (multirun/<experiment>/<time>) or any folder "
                         "above them; searched recursively for run directories (those with .hydra/)")
    ap.add_argument("--baseline", metavar="KEY=VALUE[,KEY=VALUE...]",
                    help="the arm the change column is measured against, e.g. alpha=1,grpo_mix=0 or "
                         "pressure=full (a config group name means its .name key); must match exactly one arm, "
                         "or one per combination of the other arm keys (each arm is then measured against "
                         "the one sharing its other keys, e.g. estimator=token with two teachers)")
    ap.add_argument("--name", help="output folder results/<name>/ (default: the runs' common `experiment`, "
                                   "else 'compare')")
    ap.add_argument("--force", action="store_true",
                    help="replace the table and plots in results/<name>/ if it holds some; without it a "
                         "comparison never overwrites one and goes to the first free results/<name>_2, _3, ...")
    ap.add_argument("--ignore", action="append", default=[], metavar="KEY",
                    help="also pool runs over this config key (or group, e.g. checkpoint); repeatable. "
                         "Always pooled: seed, experiment, logger.*, paths.*")
    ap.add_argument("--smooth", type=int, default=10, metavar="N",
                    help="rolling mean over N steps for the per-step train/response_len curves "
                         "(default 10; 1 = raw). Held-out curves are never smoothed")
    return ap


def output_dir(root: Path, name: str, force: bool) -> Path:
    """``root/name``, unless it already holds a comparison and ``force`` is off: then the first free
    ``root/name_<i>`` (i = 2, 3, ...), so committed results are never replaced by accident."""
    out = root / name
    if force or not (out / "table.md").exists():
        return out
    i = 2
    while (root / f"{name}_{i}").exists():
        i += 1
    return root / f"{name}_{i}"


def default_name(runs: list[Run]) -> str:
    names = {r.config.get("experiment") for r in runs if r.config}
    return names.pop() if len(names) == 1 and None not in names else "compare"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.smooth < 1:
            raise InputError("--smooth must be >= 1")
        c = build(args.paths, args.baseline, tuple(args.ignore))
    except InputError as e:
        print(f"error: {escape(str(e))}", file=sys.stderr)
        return 2
    name = args.name or default_name(c.runs)
    out = output_dir(Path("results"), name, args.force)
    if out != Path("results") / name:
        print(f"results/{name}/ already holds a comparison (--force replaces it): writing {out}/ instead")
    command = "python -m gopd.tools.compare " + shlex.join(sys.argv[1:] if argv is None else argv)
    rows = table_rows(c)
    written = write(c, rows, out, f"Comparison: {name}", command, args.smooth)
    console_table(c, rows)
    left_out = problems(c)
    if left_out:
        print(f"{len(left_out)} run(s) not in the numbers (failed, missing or unreadable): "
              f"listed in {out / 'table.md'}")
    print(f"wrote {', '.join(str(p) for p in written)}")
    print(f"comparison in {out}/")
    return 0
