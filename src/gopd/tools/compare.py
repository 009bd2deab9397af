"""Compare ablation arms from run directories: a table and plots under ``results/<name>/``.

    python -m gopd.tools.compare multirun/alpha_x_mix/<time> --baseline alpha=1,grpo_mix=0 --name alpha_x_mix
    python -m gopd.tools.compare multirun/pressure/ multirun/pressure_seeds/ --baseline pressure=full

Reads only what a run writes (README, "Run outputs": ``.hydra/config.yaml``, ``metrics.csv``,
``summary.json``), so a comparison is reproducible from the run directories without W&B. Runs
are grouped into arms by the config keys whose values differ between runs; seeds are pooled.
Writes ``table.md``, ``table.csv`` (one row per arm), ``runs.csv`` (one row per run) and
``accuracy.png``, ``accuracy_time.png`` (held-out accuracy vs training seconds), ``response_len.png``
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
import csv
import json
import math
import os
import re
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Arm keys in this order first (the paper's axes), then any other varying key alphabetically.
ARM_ORDER = ["alpha", "grpo_mix", "pressure.name", "teacher.name", "reference.name", "estimator.name"]
# Never arm keys: seeds are what an arm pools over; the rest names or logs a run, it does not change it.
POOLED = ("seed", "experiment", "logger", "paths")
# Folders inside a run directory that hold no runs: not walked (checkpoints and W&B are large).
NOT_RUNS = {".hydra", "checkpoints", "final", "wandb", "traces", ".submitit"}
OUTPUTS = ["table.md", "table.csv", "runs.csv", "accuracy.png", "accuracy_time.png", "response_len.png"]
# A training step's seconds (metrics.csv): rollout, then scoring and loss, then optimizer update and
# rollout-engine sync. Evaluation, checkpointing and start-up are outside all three.
STEP_SECONDS = ("perf/rollout_s", "perf/score_s", "perf/update_s")


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


def num(x) -> float:
    """A summary value as a float; NaN when absent or not a number (``null`` gap, a string)."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def mean_std(values) -> tuple[float, float, int]:
    """Mean and sample standard deviation (n - 1) of the finite values; std is NaN below two."""
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else math.nan), len(vals)


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


def read_metrics(path: Path):
    import pandas as pd

    if not (path / "metrics.csv").is_file():
        return None, "no metrics.csv"
    try:
        df = pd.read_csv(path / "metrics.csv")
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


# ----------------------------------------------------------------------------- arms


def is_pooled(key: str, ignore: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in (*POOLED, *ignore))


def group_of(key: str) -> str | None:
    """``teacher.path`` -> ``teacher``; None for a top-level key (``alpha``)."""
    return key.split(".", 1)[0] if "." in key else None


def named_groups(keys) -> set[str]:
    """The config groups (top-level mappings with a ``name``) whose ``name`` is among the keys."""
    return {k[: -len(".name")] for k in keys if k.endswith(".name") and k.count(".") == 1}


def is_sub_key(key: str, groups: set[str]) -> bool:
    """``teacher.path`` of a group in ``groups``, other than the group's ``name``."""
    return group_of(key) in groups and key != f"{group_of(key)}.name"


def by_name(runs: list[Run], key: str) -> dict:
    """The values a group's sub-key takes among the runs of each of the group's names."""
    name = f"{group_of(key)}.name"
    out: dict = {}
    for r in runs:
        out.setdefault(r.config.get(name), set()).add(r.config.get(key))
    return out


def arm_keys(runs: list[Run], ignore: tuple[str, ...]) -> list[str]:
    """Config keys (not pooled) whose values differ between runs whose config could be read.

    When a group's ``name`` varies, its other keys differ between runs just because the group
    changed (``teacher.path`` is set by rl_checkpoint, absent from hinted): such a sub-key is an
    arm key only if it varies among runs with the same name (``teacher.path`` within rl_checkpoint).
    """
    readable = [r for r in runs if r.config]
    keys = set().union(*(r.config for r in readable)) if readable else set()
    varying = [k for k in keys if not is_pooled(k, ignore) and len({r.config.get(k) for r in readable}) > 1]
    groups = named_groups(varying)
    varying = [k for k in varying
               if not is_sub_key(k, groups) or any(len(v) > 1 for v in by_name(readable, k).values())]
    return sorted(varying, key=lambda k: (ARM_ORDER.index(k) if k in ARM_ORDER else len(ARM_ORDER), k))


def sort_key(values: tuple) -> tuple:
    # None and strings sort apart from numbers, so mixed types never compare directly
    return tuple((v is None, isinstance(v, str), v if isinstance(v, (int, float)) else str(v)) for v in values)


def group_arms(runs: list[Run], keys: list[str]) -> list[Arm]:
    readable = [r for r in runs if r.config]  # a run without a config is listed with its problem; no arm
    arms: dict[tuple, Arm] = {}
    for run in readable:
        key = tuple(run.config.get(k) for k in keys)
        arms.setdefault(key, Arm(key, "")).runs.append(run)
    ordered = [arms[k] for k in sorted(arms, key=sort_key)]
    # a group's sub-key is shown only for the names it varies within: teacher.path for
    # rl_checkpoint's arms, not for hinted's (where it is absent, so null)
    groups = named_groups(keys)
    within = {k: {n for n, v in by_name(readable, k).items() if len(v) > 1} for k in keys if is_sub_key(k, groups)}
    for width in (40, None):  # long values shortened, unless that makes two arms' labels one
        for arm in ordered:
            config = arm.runs[0].config
            arm.parts = {short(k): shorten(fmt_value(v), width) for k, v in zip(keys, arm.key)
                         if k not in within or config.get(f"{group_of(k)}.name") in within[k]}
            arm.label = " ".join(f"{k}={v}" for k, v in arm.parts.items()) or "all runs"
        if len({a.label for a in ordered}) == len(ordered):
            break
    return ordered


def parse_baseline(spec: str, runs: list[Run], keys: list[str], ignore: tuple[str, ...]) -> dict:
    """``alpha=1,grpo_mix=0`` -> {config key: value}; ``pressure=full`` means ``pressure.name``."""
    known = set().union(*(r.config for r in runs))
    wanted = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if "=" not in item:
            raise InputError(f"--baseline: expected key=value pairs, got {item!r}")
        key, raw = (s.strip() for s in item.split("=", 1))
        key = key if key in known else f"{key}.name" if f"{key}.name" in known else None
        if key is None:
            raise InputError(f"--baseline: unknown config key {item.split('=')[0]!r} "
                             f"(arm keys: {', '.join(map(short, keys)) or 'none'})")
        if is_pooled(key, ignore):
            raise InputError(f"--baseline: {key} is pooled across runs, not an arm key")
        wanted[key] = parse_value(raw)
    if not wanted:
        raise InputError("--baseline: empty; expected key=value pairs, e.g. alpha=1,grpo_mix=0")
    return wanted


def parse_value(raw: str):
    value = yaml.safe_load(raw) if raw else ""
    if isinstance(value, str):
        try:
            value = float(value)  # YAML reads 1e-5 as a string
        except ValueError:
            pass
    return normalize(value)


def find_baselines(spec: str, arms: list[Arm], keys: list[str], wanted: dict) -> list[str]:
    """Set each arm's ``base``: the arm the spec matches among the arms that share its values of
    the arm keys the spec leaves free (returned: the slice keys). A spec setting every arm key
    (``alpha=1,grpo_mix=0``) names one arm, every arm's baseline; ``estimator=token`` with teachers
    hinted and rl_checkpoint gives each teacher's arms that teacher's token arm. Any key of a group
    whose name varies sets the whole group (``teacher=rl_checkpoint`` leaves no ``teacher.*`` key
    free; ``teacher.path=...`` picks the teacher). Each slice must hold exactly one matching arm:
    an arm is never measured against another slice's."""
    matched = {id(a) for a in arms if all(a.runs[0].config.get(k) == v for k, v in wanted.items())}

    def how(found: list[Arm]) -> str:
        return "no arm" if not found else f"{len(found)} arms ({'; '.join(a.label for a in found)})"

    groups = named_groups(keys) & {group_of(w) for w in wanted}  # the groups the spec picks
    fixed = {k for k in keys if k in wanted or group_of(k) in groups}
    free = [k for k in keys if k not in fixed]
    if not matched or free == keys and len(matched) > 1:  # no arm, or the spec sets no arm key: no slices
        raise InputError(f"--baseline {spec} matches {how([a for a in arms if id(a) in matched])}")
    slices: dict[tuple, list[Arm]] = {}
    for arm in arms:
        slices.setdefault(tuple(arm.key[keys.index(k)] for k in free), []).append(arm)
    for values in sorted(slices, key=sort_key):
        found = [a for a in slices[values] if id(a) in matched]
        if len(found) != 1 and not free:  # a group's sub-key matching several of its names
            raise InputError(f"--baseline {spec} matches {how(found)}")
        if len(found) != 1:
            where = " ".join(f"{short(k)}={shorten(fmt_value(v))}" for k, v in zip(free, values))
            example = next(a for a in arms if id(a) in matched)
            whole = ",".join(f"{short(k)}={shorten(fmt_value(v))}" for k, v in zip(keys, example.key))
            raise InputError(f"--baseline {spec} matches {how(found)} in the slice {where} (it must match one arm "
                             f"per combination of {', '.join(map(short, free))}; for one baseline arm, set "
                             f"every arm key, e.g. {whole})")
        for arm in slices[values]:
            arm.base = found[0]
    return free


# ----------------------------------------------------------------------------- numbers


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


def shown(path: Path) -> str:
    """A run dir as the user would type it: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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


# ----------------------------------------------------------------------------- plots


def curves(arm: Arm, column: str, smooth: int = 1):
    """Mean and std over the arm's seeds of one metrics.csv column, by step (None without data)."""
    import pandas as pd

    series = [r.metrics[column].dropna() for r in arm.ok if r.metrics is not None and column in r.metrics]
    series = [s.rolling(smooth, min_periods=1).mean() if smooth > 1 else s for s in series if len(s)]
    if not series:
        return None
    table = pd.concat(series, axis=1)
    return table.mean(axis=1), table.std(axis=1)  # std is NaN at a step with one seed: no band there


def style(i: int, n: int) -> dict:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return {"color": cmap(i % cmap.N), "linestyle": ["-", "--", ":", "-."][(i // cmap.N) % 4]}


def plot_curves(ax, arms: list[Arm], column: str, title: str, smooth: int = 1, marker: str | None = None) -> None:
    drawn = 0
    for i, arm in enumerate(arms):
        got = curves(arm, column, smooth)
        if got is None:
            continue
        mean, std = got
        st = style(i, len(arms))
        ax.plot(mean.index, mean.values, label=f"{arm.label} (n={len(arm.ok)})", marker=marker, markersize=3, **st)
        ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=st["color"], alpha=0.15,
                        linewidth=0)
        drawn += 1
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, f"no {column} in any completed run", ha="center", va="center", transform=ax.transAxes)


def save(fig, path: Path, legend_ax=None) -> None:
    if legend_ax is not None and legend_ax.get_legend_handles_labels()[0]:
        legend_ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def accuracy_plot(arms: list[Arm], path: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no display backend

    fig = Figure(figsize=(9, 4.5))
    ax = fig.add_subplot()
    plot_curves(ax, arms, "eval/accuracy", "held-out accuracy (mean ± std over seeds)", marker="o")
    ax.set_ylabel("eval/accuracy")
    save(fig, path, ax)


def interpolate_seeds(seeds: list[list[tuple[float, float]]], n: int = 200):
    """Mean and sample std over seeds of accuracy vs training seconds. Each seed's evaluations fall at
    its own times, so each is interpolated linearly between its evaluations onto ``n`` common times
    from 0 to the end of the shortest seed (never extrapolated). Returns (times, mean, std); std is
    NaN with one seed."""
    import numpy as np

    grid = np.linspace(0.0, min(points[-1][0] for points in seeds), n)
    ys = np.array([np.interp(grid, *zip(*points)) for points in seeds])
    std = ys.std(axis=0, ddof=1) if len(seeds) > 1 else np.full(n, np.nan)
    return grid, ys.mean(axis=0), std


def time_panels(c: Comparison) -> list[tuple[str, list[tuple[int, str, Arm]]]]:
    """accuracy_time.png's panels as (title, [(colour index, line label, arm)]): one panel per value
    of the paper's axes (ARM_ORDER) but the last that varies, e.g. one per teacher with the
    estimators as lines; a line keeps its colour in every panel. One panel (legend outside, as in
    accuracy.png) when at most one of those axes varies, there would be more than 6, or a line's
    label is too long for a legend inside its panel (other config keys vary too)."""
    axes = [k for k in c.keys if k in ARM_ORDER][:-1]
    lines = sorted({tuple(v for k, v in zip(c.keys, a.key) if k not in axes) for a in c.arms}, key=sort_key)
    panels: dict[tuple, list[tuple[int, str, Arm]]] = {}
    for arm in c.arms:
        rest = tuple(v for k, v in zip(c.keys, arm.key) if k not in axes)
        label = " ".join(f"{h}={v}" for h, v in arm.parts.items() if h not in map(short, axes)) or arm.label
        panels.setdefault(tuple(arm.key[c.keys.index(k)] for k in axes), []).append((lines.index(rest), label, arm))
    if not 2 <= len(panels) <= 6 or any(len(label) > 40 for lines in panels.values() for _, label, _ in lines):
        return [("", [(i, arm.label, arm) for i, arm in enumerate(c.arms)])]
    return [(" ".join(f"{short(k)}={shorten(fmt_value(v))}" for k, v in zip(axes, values)), panels[values])
            for values in sorted(panels, key=sort_key)]


def accuracy_time_plot(c: Comparison, path: Path) -> None:
    from matplotlib.figure import Figure

    panels = time_panels(c)
    n_styles = max((i for _, lines in panels for i, _, _ in lines), default=0) + 1
    fig = Figure(figsize=(9 if len(panels) == 1 else 5.2 * len(panels), 5.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    drawn = 0
    for ax, (title, lines) in zip(axes, panels):
        for i, label, arm in lines:
            seeds = [p for p in map(eval_times, arm.ok) if p is not None]
            if not seeds:
                continue
            st = style(i, n_styles)
            for points in seeds:  # every seed as measured, to its own end
                ax.plot(*zip(*points), color=st["color"], linewidth=0.6, alpha=0.3, marker="o", markersize=1.5)
            grid, mean, std = interpolate_seeds(seeds)
            ax.plot(grid, mean, label=f"{label} (n={len(seeds)})", linewidth=1.8, **st)
            ax.fill_between(grid, mean - std, mean + std, color=st["color"], alpha=0.15, linewidth=0)
            drawn += 1
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training seconds before the evaluation")
        ax.grid(alpha=0.3)
        if len(panels) > 1 and ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=7, framealpha=0.8)
    axes[0].set_ylabel("eval/accuracy")
    fig.suptitle("held-out accuracy vs training time (sum of perf/rollout_s + perf/score_s + perf/update_s over "
                 "the steps before it;\nevaluation, checkpointing and start-up not counted). Thin: each seed at its "
                 "evaluations. Thick ± band: mean ± std\nover seeds, each seed interpolated linearly between its "
                 "evaluations, up to the end of the arm's shortest seed", fontsize=9)
    if not drawn:
        axes[0].text(0.5, 0.5, "no completed run with eval/accuracy and step timings", ha="center", va="center",
                     transform=axes[0].transAxes)
    save(fig, path, axes[0] if len(panels) == 1 else None)


def response_len_plot(arms: list[Arm], path: Path, smooth: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.5))
    train, held_out = fig.subplots(1, 2)
    rolled = f", rolling mean of {smooth} steps" if smooth > 1 else ""
    plot_curves(train, arms, "train/response_len", f"rollouts: train/response_len{rolled}", smooth)
    plot_curves(held_out, arms, "eval/response_len", "held-out greedy: eval/response_len", marker="o")
    train.set_ylabel("tokens")
    save(fig, path, held_out)


def heatmap_plot(c: Comparison, path: Path) -> None:
    """Mean final accuracy over alpha x grpo_mix; one panel per value of the other arm keys."""
    from matplotlib.figure import Figure

    ia, im = c.keys.index("alpha"), c.keys.index("grpo_mix")
    others = [i for i in range(len(c.keys)) if i not in (ia, im)]
    panels: dict[tuple, list[Arm]] = {}
    for arm in c.arms:
        panels.setdefault(tuple(arm.key[i] for i in others), []).append(arm)
    fig = Figure(figsize=(4.8 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (rest, arms) in zip(axes, sorted(panels.items(), key=lambda kv: sort_key(kv[0]))):
        title = " ".join(f"{short(c.keys[i])}={shorten(fmt_value(v))}" for i, v in zip(others, rest))
        heatmap_panel(ax, arms, ia, im, title)
    fig.suptitle("final held-out accuracy (mean ± std over seeds)")
    save(fig, path)


def heatmap_panel(ax, arms: list[Arm], ia: int, im: int, title: str) -> None:
    import numpy as np

    alphas = sorted({a.key[ia] for a in arms}, key=lambda v: sort_key((v,)))
    mixes = sorted({a.key[im] for a in arms}, key=lambda v: sort_key((v,)))
    grid = np.full((len(alphas), len(mixes)), np.nan)
    cells = []
    for arm in arms:
        s = arm_stats(arm)
        i, j = alphas.index(arm.key[ia]), mixes.index(arm.key[im])
        grid[i, j] = s[ACC]
        cells.append((i, j, s))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", origin="lower", aspect="auto")
    for i, j, s in cells:  # dark text on the bright (high) end of viridis, light text elsewhere
        dark = math.isfinite(s[ACC]) and image.norm(s[ACC]) > 0.6
        text = pm(s[ACC], s[ACC + "_std"]).replace(" ± ", "\n± ") + f"\nn={s['n']}"
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="black" if dark else "white")
    ax.figure.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(len(mixes)), [fmt_value(v) for v in mixes])
    ax.set_yticks(range(len(alphas)), [fmt_value(v) for v in alphas])
    ax.set_xlabel("grpo_mix")
    ax.set_ylabel("alpha")
    ax.set_title(title, fontsize=9)


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
                                   "else 'compare'); its earlier table and plots are replaced")
    ap.add_argument("--ignore", action="append", default=[], metavar="KEY",
                    help="also pool runs over this config key (or group, e.g. checkpoint); repeatable. "
                         "Always pooled: seed, experiment, logger.*, paths.*")
    ap.add_argument("--smooth", type=int, default=10, metavar="N",
                    help="rolling mean over N steps for the per-step train/response_len curves "
                         "(default 10; 1 = raw). Held-out curves are never smoothed")
    return ap


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
    out = Path("results") / name
    command = "python -m gopd.tools.compare " + shlex.join(sys.argv[1:] if argv is None else argv)
    rows = table_rows(c)
    written = write(c, rows, out, f"Comparison: {name}", command, args.smooth)
    console_table(c, rows)
    left_out = problems(c)
    if left_out:
        print(f"{len(left_out)} run(s) not in the numbers (failed, missing or unreadable): "
              f"listed in {out / 'table.md'}")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
