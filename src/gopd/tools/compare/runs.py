"""Run directories: what a run wrote (config, summary, metrics), the dataclasses a comparison is
made of, one-line values, and the jobs of a sweep that left no run directory."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Folders inside a run directory that hold no runs: not walked (checkpoints and W&B are large).
NOT_RUNS = {".hydra", "checkpoints", "final", "wandb", "traces", ".submitit"}


class InputError(Exception):
    """Bad command-line input: reported as one line, exit code 2."""


@dataclass
class Run:
    path: Path
    config: dict                   # flattened: "pressure.name" -> value
    summary: dict
    metrics: object = None         # pandas.DataFrame indexed by step, or None
    problem: str | None = None     # why the run is not in the numbers; None = completed and readable

    @property
    def seed(self):
        return self.config.get("seed")


@dataclass(eq=False)  # arms are compared by identity (an arm can be its own base)
class Arm:
    key: tuple                     # the arm keys' values, in arm-key order
    label: str
    runs: list[Run] = field(default_factory=list)
    parts: dict = field(default_factory=dict)  # what the label shows: short key -> value as shown
    base: Arm | None = field(default=None, repr=False)  # what its change is measured against (a baseline: itself)

    @property
    def ok(self) -> list[Run]:
        return [r for r in self.runs if r.problem is None]


@dataclass
class Comparison:
    runs: list[Run]
    keys: list[str]                # the arm keys
    arms: list[Arm]
    baselines: list[Arm]           # one arm, one per slice, or none without --baseline
    baseline_spec: str | None      # as given on the command line
    slice_keys: list[str]          # the arm keys a baseline per slice is chosen by ([]: one baseline)
    missing: list[dict]            # jobs of a sweep without any run directory
    notes: list[str]
    domains: list[str] = field(default_factory=list)  # <d> of the runs' eval/accuracy/<d> columns


# ----------------------------------------------------------------------------- values


def normalize(v):
    """A hashable value that compares as the config means it: ``2`` and ``2.0`` are one arm."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (list, tuple)):
        return tuple(json.dumps(x, sort_keys=True) if isinstance(x, dict) else normalize(x) for x in v)
    return str(v)


def fmt_value(v) -> str:
    """A config value on one line: control characters (a hint template's newline) are escaped."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else format(v, "g")
    if isinstance(v, tuple):
        return "[" + ",".join(fmt_value(x) for x in v) + "]"
    return escape(str(v))


ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """Control characters as escapes (a newline as the two characters ``\\n``): for any text that
    must stay on one line (a table row, a label, an error line)."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: ESCAPES.get(m[0], f"\\x{ord(m[0]):02x}"), text)


def shorten(text: str, width: int | None = 40) -> str:
    """Long values keep their start and end, so a label stays readable: ``{problem}\\nHint: …{hint}``."""
    if width is None or len(text) <= width:
        return text
    tail = width // 3
    return text[: width - tail - 1] + "…" + text[-tail:]


def flatten(cfg: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = normalize(v) if not isinstance(v, dict) else "{}"
    return out


def short(key: str) -> str:
    """``pressure.name`` -> ``pressure``: the way the key is set on the command line (a config group)."""
    return key[: -len(".name")] if key.endswith(".name") else key


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {escape(text[0])}" if text else type(e).__name__


def shown(path: Path) -> str:
    """A run dir as the user would type it: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- discovery and reading


def find_run_dirs(roots: list[Path]) -> list[Path]:
    """Every directory with a ``.hydra/`` under the roots (a run dir, a sweep dir, or any folder above)."""
    found: dict[Path, None] = {}
    for root in roots:
        if not root.is_dir():
            raise InputError(f"no such directory: {root}")
        for dirpath, dirnames, _ in os.walk(root):
            if os.path.isdir(os.path.join(dirpath, ".hydra")):
                found[Path(dirpath).resolve()] = None
                dirnames.clear()  # runs do not nest: nothing below a run dir is another run
                continue
            dirnames[:] = sorted(d for d in dirnames if d not in NOT_RUNS)
    if not found:
        raise InputError(f"no run directories (with .hydra/config.yaml) under {', '.join(map(str, roots))}")
    return list(found)


def read_run(path: Path) -> Run:
    try:
        config = flatten(yaml.safe_load((path / ".hydra" / "config.yaml").read_text()) or {})
    except (OSError, yaml.YAMLError, AttributeError) as e:
        return Run(path, {}, {}, problem=f"unreadable .hydra/config.yaml ({one_line(e)})")
    summary, problem = read_summary(path)
    metrics = None
    if problem is None:
        metrics, problem = read_metrics(path)
    return Run(path, config, summary, metrics, problem)


def read_summary(path: Path) -> tuple[dict, str | None]:
    file = path / "summary.json"
    if not file.is_file():
        return {}, "no summary.json: still running, or killed before it could write one"
    try:
        summary = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        return {}, f"unreadable summary.json ({one_line(e)})"
    if not isinstance(summary, dict):
        return {}, "unreadable summary.json (not a JSON object)"
    status = summary.get("status")
    if status == "completed":
        return summary, None
    if status == "preempted":
        return summary, f"preempted at step {summary.get('steps')} (not resumed yet)"
    error = summary.get("error")
    return summary, f"{status}: {error}" if error else f"status {status!r}"


RENAMED = {"loss": "train/loss", "grad_norm": "train/grad_norm"}  # metrics.csv columns before 2026-12-04


def read_metrics(path: Path):
    import pandas as pd

    if not (path / "metrics.csv").is_file():
        return None, "no metrics.csv"
    try:
        df = pd.read_csv(path / "metrics.csv")
        df = df.rename(columns={k: v for k, v in RENAMED.items() if v not in df.columns})  # old runs beside new ones
        df = df.apply(pd.to_numeric, errors="coerce")  # empty cells (no eval at this step) -> NaN
        return df.dropna(subset=["step"]).set_index("step").sort_index(), None
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as e:
        return None, f"unreadable metrics.csv ({one_line(e)})"


# ----------------------------------------------------------------------------- sweeps: jobs that never started


def missing_jobs(run_dirs: list[Path], roots: list[Path]) -> tuple[list[dict], list[str]]:
    """Jobs a sweep's ``multirun.yaml`` launched that left no run directory (e.g. a SLURM job
    that died before Python started). Only sweeps given whole (at or under a root) are checked,
    so naming a few run dirs of a sweep does not report its other arms as missing."""
    roots = [r.resolve() for r in roots]
    sweeps = sorted({p.parent for p in run_dirs if (p.parent / "multirun.yaml").is_file()
                     and any(p.parent == r or r in p.parent.parents for r in roots)})
    missing, notes = [], []
    for sweep in sweeps:
        try:
            expected = expected_jobs(sweep)
        except Exception as e:  # noqa: BLE001 - any sweeper we cannot expand: say so, do not guess
            notes.append(f"could not check {sweep} for jobs that never started ({one_line(e)})")
            continue
        present = {job_num(p) for p in run_dirs if p.parent == sweep}
        for n, overrides in enumerate(expected):
            if n not in present:
                arm = ",".join(o for o in overrides if not o.startswith(("+sweep=", "+cluster=", "hydra.")))
                seed = next((o.split("=", 1)[1] for o in overrides if o.startswith("seed=")), "")
                missing.append({"run": f"{shown(sweep)} job {n}", "arm": arm, "seed": seed,
                                "reason": "no run directory: the job never started (or its directory was removed)"})
    return missing, notes


def expected_jobs(sweep: Path) -> list[list[str]]:
    """The overrides of each job, in job-number order, as Hydra's basic sweeper expanded them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra = yaml.safe_load((sweep / "multirun.yaml").read_text())["hydra"]
    if not str(hydra["sweeper"].get("_target_", "")).endswith("BasicSweeper"):
        raise ValueError(f"sweeper {hydra['sweeper'].get('_target_')} is not Hydra's basic sweeper")
    params = [f"{k}={v}" for k, v in (hydra["sweeper"].get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(hydra["overrides"]["task"]))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def job_num(run_dir: Path) -> int | None:
    try:
        return int(yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["num"])
    except Exception:  # noqa: BLE001 - fall back to the sweep subdir's "<num>_<arm>" name
        head = run_dir.name.split("_", 1)[0]
        return int(head) if head.isdigit() else None
