"""Index of a sweep directory: one row per arm (job number, SLURM job id, status, key results).

    .venv/bin/python sweeps/index.py multirun/alpha_x_mix/2026-11-23_20-17-23     # prints, writes index.csv
    .venv/bin/python sweeps/index.py multirun/alpha_x_mix/*/ --json                # one JSON object per arm

Reads only the files the arms write (``.hydra/``, ``summary.json``), so it works while the sweep
runs and after the Hydra driver is gone. ``status`` comes from ``summary.json``
(``completed``/``failed``; ``running`` when the arm has started but not finished). Where ``sacct``
answers, ``slurm_state`` is SLURM's view (FAILED for an arm that raised, through the profiles'
launcher ``hydra_plugins.gopd_launcher``; Hydra 1.3's own would say COMPLETED).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import yaml

COLUMNS = ["num", "slurm_job_id", "status", "slurm_state", "arm", "steps", "eval/accuracy_initial",
           "eval/accuracy_final", "wall_s", "error", "run_dir"]


def arms(sweep_dir: Path) -> list[dict]:
    rows = []
    for run in sorted(p.parent.parent for p in sweep_dir.glob("*/.hydra/hydra.yaml")):
        hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())["hydra"]
        summary_path = run / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"status": "running"}
        rows.append({
            "num": hydra["job"].get("num"),
            "slurm_job_id": str(hydra["job"].get("id") or ""),
            "status": summary.get("status"),
            "slurm_state": "",
            "arm": hydra["job"].get("override_dirname", ""),
            "steps": summary.get("steps"),
            "eval/accuracy_initial": summary.get("eval/accuracy_initial"),
            "eval/accuracy_final": summary.get("eval/accuracy_final"),
            "wall_s": round(summary["wall_s"], 1) if isinstance(summary.get("wall_s"), (int, float)) else None,
            "error": summary.get("error", ""),
            "run_dir": str(run),
        })
    rows.sort(key=lambda r: (r["num"] is None, r["num"]))
    _add_slurm_states(rows)
    return rows


def _add_slurm_states(rows: list[dict]) -> None:
    ids = [r["slurm_job_id"] for r in rows if r["slurm_job_id"][:1].isdigit()]
    if not ids:
        return
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return
    states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
    for r in rows:
        r["slurm_state"] = states.get(r["slurm_job_id"], "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep_dir", type=Path,
                    help="a sweep directory (hydra.sweep.dir), e.g. multirun/alpha_x_mix/<time>")
    ap.add_argument("--json", action="store_true", help="print one JSON object per arm instead of a table")
    ap.add_argument("--no-write", action="store_true", help="do not write <sweep_dir>/index.csv")
    args = ap.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: no directory {args.sweep_dir}", file=sys.stderr)
        return 2
    rows = arms(args.sweep_dir)
    if not args.no_write:
        with open(args.sweep_dir / "index.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        for r in rows:
            acc = r["eval/accuracy_final"]
            print(f"{r['num']!s:>3}  {r['slurm_job_id']:<10} {r['status'] or '?':<9} "
                  f"{r['slurm_state'] or '-':<10} "
                  f"acc={acc if acc is not None else '-'!s:<6} {r['arm']}")
        done = sum(r["status"] == "completed" for r in rows)
        failed = sum(r["status"] == "failed" for r in rows)
        print(f"{len(rows)} arms: {done} completed, {failed} failed, {len(rows) - done - failed} running")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
