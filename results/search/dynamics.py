"""The search world's dynamics per arm, from each run's metrics.csv (the mean over the first 10
steps and over the last 50):
rollout length and its p10/p90, tries per rollout, the share of correct rollouts that needed
more than one try, and where the advantage's negative and positive mass fell (failed tries vs
the answer). Mean ± sample std over seeds. From the repository root:

    .venv/bin/python results/search/dynamics.py SWEEP_DIR... --arm pressure.name [--arm alpha ...]
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from pathlib import Path

import yaml

COLUMNS = {  # heading -> (summary key, digits)
    "rollout len": ("train/response_len", 0),
    "p10": ("train/response_len_p10", 0),
    "p90": ("train/response_len_p90", 0),
    "tries": ("search/tries", 1),
    "multi-try share of correct": ("search/multi_try_correct", 2),
    "neg mass: tries": ("search/neg_mass_tries", 2),
    "neg mass: answer": ("search/neg_mass_answer", 2),
    "pos mass: tries": ("search/pos_mass_tries", 2),
    "pos mass: answer": ("search/pos_mass_answer", 2),
}


def lookup(cfg: dict, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def arms(sweeps: list[Path], keys: list[str]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for metrics in sorted(p for s in sweeps for p in s.glob("*/metrics.csv")):
        cfg = yaml.safe_load((metrics.parent / ".hydra" / "config.yaml").read_text())
        label = ", ".join(f"{k}={lookup(cfg, k)}" for k in keys)
        out.setdefault(label, []).append(windows(metrics))
    return out


def windows(metrics: Path, first: int = 10, last: int = 50) -> dict[str, float]:
    """``<key>_initial`` / ``<key>_final``: a column's mean over the first / last training steps."""
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("train/response_len")]
    out = {}
    for key, _ in COLUMNS.values():
        for which, part in (("initial", rows[:first]), ("final", rows[-last:])):
            v = [float(r[key]) for r in part if r.get(key) not in (None, "")]
            v = [x for x in v if math.isfinite(x)]
            out[f"{key}_{which}"] = statistics.mean(v) if v else math.nan
    return out


def cell(runs: list[dict], key: str, digits: int) -> str:
    def one(which: str) -> str:
        v = [float(r[f"{key}_{which}"]) for r in runs if isinstance(r.get(f"{key}_{which}"), (int, float))]
        v = [x for x in v if math.isfinite(x)]
        if not v:
            return "–"
        sd = f" ± {statistics.stdev(v):.{digits}f}" if len(v) > 1 else ""
        return f"{statistics.mean(v):.{digits}f}{sd}"
    return f"{one('initial')} → {one('final')}"


def table(groups: dict[str, list[dict]]) -> str:
    lines = ["| arm | seeds | " + " | ".join(COLUMNS) + " |", "|---|---:|" + "---|" * len(COLUMNS)]
    for label, runs in groups.items():
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cell(runs, k, d) for k, d in COLUMNS.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweeps", type=Path, nargs="+", help="sweep directories (their run directories hold summary.json)")
    ap.add_argument("--arm", action="append", required=True, help="config key that names the arm (repeatable)")
    args = ap.parse_args()
    print("Each cell: the mean over the first 10 training steps → over the last 50, then mean ± std over seeds.\n")
    print(table(arms(args.sweeps, args.arm)))


if __name__ == "__main__":
    main()
