"""Claim (e) of the search-world study: rollouts until held-out accuracy closes a share of the
student-teacher gap, OPD vs GRPO, per seed. A run's gap is the teacher's accuracy (logged at step 0
by the OPD runs; GRPO loads no teacher and uses theirs) minus the student's at step 0; the first
evaluation at or past the share counts, in rollouts (step x rollouts per step). From the
repository root:

    .venv/bin/python results/search/gap_rollouts.py multirun/search_study/<time> [--share 0.9 0.5 0.2]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

import yaml


def eval_curve(run: Path) -> list[tuple[int, float]]:
    rows = csv.DictReader((run / "metrics.csv").open())
    return [(int(r["step"]), float(r["eval/accuracy"])) for r in rows if r.get("eval/accuracy")]


def first_reaching(curve, start: float, teacher: float, share: float) -> int | None:
    goal = start + share * (teacher - start)
    return next((step for step, acc in curve if acc >= goal), None)


def teacher_accuracy(run: Path) -> float | None:
    rows = csv.DictReader((run / "metrics.csv").open())
    return next((float(r["teacher/accuracy"]) for r in rows if r.get("teacher/accuracy")), None)


def run_row(run: Path, shares: list[float], teacher: float) -> dict:
    cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    curve = eval_curve(run)
    per_step = cfg["rollout"]["n"] * cfg["rollout"]["prompts_per_step"]
    row = {"arm": "GRPO (grpo_mix=1)" if float(cfg["grpo_mix"]) == 1 else f"OPD (alpha={cfg['alpha']})",
           "seed": cfg["seed"], "student": curve[0][1], "teacher": teacher, "best": max(a for _, a in curve),
           "final": curve[-1][1], "rollouts": curve[-1][0] * per_step}
    for share in shares:
        step = first_reaching(curve, curve[0][1], teacher, share)
        row[share] = None if step is None else step * per_step
    summary = json.loads((run / "summary.json").read_text())
    row["status"] = summary.get("status")
    return row


def table(rows: list[dict], shares: list[float]) -> str:
    head = ["arm", "seed", "student", "teacher", "best", "final"] + [f"rollouts to {s:.0%} of gap" for s in shares]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["arm"], r["seed"])):
        cells = [r["arm"], str(r["seed"]), f"{r['student']:.3f}", f"{r['teacher']:.3f}", f"{r['best']:.3f}",
                 f"{r['final']:.3f}"]
        cells += [f"{r[s]:,}" if r[s] is not None else f"not in {r['rollouts']:,}" for s in shares]
        lines.append("| " + " | ".join(cells) + " |")
    for arm in sorted({r["arm"] for r in rows}):
        best = [r["best"] for r in rows if r["arm"] == arm]
        lines.append(f"\n{arm}: best held-out accuracy {statistics.mean(best):.3f} ± "
                     f"{statistics.stdev(best) if len(best) > 1 else 0:.3f} over {len(best)} seeds")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path, help="the study's directory (its alpha/ and grpo/ sweeps)")
    ap.add_argument("--share", type=float, nargs="+", default=[0.9, 0.5, 0.2], help="shares of the gap")
    args = ap.parse_args()
    runs = [p.parent for sweep in ("alpha", "grpo") for p in sorted((args.study / sweep).glob("*/metrics.csv"))]
    teachers = {t for t in map(teacher_accuracy, runs) if t is not None}
    if len(teachers) != 1:
        raise SystemExit(f"error: expected one teacher accuracy over the OPD runs, found {sorted(teachers)}")
    teacher = teachers.pop()
    rows = [run_row(r, args.share, teacher) for r in runs]
    rows = [r for r in rows if r["arm"] != "OPD (alpha=1.25)"]
    print(table(rows, args.share))


if __name__ == "__main__":
    main()
