"""Run outputs (README, "Run outputs"): metrics.csv, W&B, summary.json."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only


class MetricsCSV(Logger):
    """``metrics.csv`` in the run directory, one row per logged step: metrics logged at the same
    step merge into one row; a new metric name rewrites the file with the wider header."""

    def __init__(self, run_dir: str | os.PathLike, resume: dict | None = None):
        super().__init__()
        self.path = Path(run_dir) / "metrics.csv"
        self.rows: dict[int, dict] = {}
        self.columns: list[str] = ["step"]
        rows = (resume or {}).get("metrics_rows")
        if rows:  # a resumed run: exactly the rows of its checkpoint, so no step is doubled or lost
            for row in rows:
                self.rows[int(row["step"])] = dict(row)
                self.columns += [k for k in row if k not in self.columns]
            self._write()

    def snapshot(self) -> list[dict]:
        return [dict(self.rows[s]) for s in sorted(self.rows)]

    @property
    def name(self) -> str:
        return "csv"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the composed config is already in .hydra/

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        step = int(step or 0)
        row = self.rows.setdefault(step, {"step": step})
        row.update({k: _plain(v) for k, v in metrics.items()})
        new = [k for k in metrics if k not in self.columns]
        self.columns += new
        self._write()

    def _write(self) -> None:
        """Rewrite the file whole through a temporary copy: a failed write (a full disk) leaves the
        previous file, every earlier row intact."""
        tmp = self.path.with_suffix(".csv.tmp")
        try:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.columns)
                w.writeheader()
                for step in sorted(self.rows):
                    w.writerow(self.rows[step])
            os.replace(tmp, self.path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise OSError(e.errno, e.strerror, str(self.path)) from e


def _plain(v):
    v = float(v) if hasattr(v, "item") or isinstance(v, (int, float)) else v
    return "" if isinstance(v, float) and math.isnan(v) else v


# Overrides that never make an arm (W&B's job_type, and the arm in its run name): the seed, where
# the run is filed, and what only changes its bookkeeping.
INCIDENTAL = ("seed", "experiment", "save_final", "logger", "checkpoint", "traces", "hydra", "sweep", "cluster")


def arm_label(overrides) -> str:
    """The arm of a run, from its command-line overrides (``key=value``, sorted, comma-joined as
    Hydra's ``override_dirname``) without the ``INCIDENTAL`` keys and their sub-keys."""
    def key(o: str) -> str:
        return o.split("=", 1)[0].lstrip("+~")

    kept = [o for o in overrides if not any(key(o) == k or key(o).startswith(k + ".") for k in INCIDENTAL)]
    return ",".join(sorted(kept))


def wandb_logger(*, mode: str, project: str, entity: str | None = None, tags=(), group: str | None = None,
                 config: dict | None = None, run_dir: Path, run_name: str, resume: dict | None = None,
                 arm: str | None = None):
    """Lightning's W&B logger (``logger.wandb``); offline unless ``mode=online``, None if disabled.

    ``job_type`` is the arm (``arm_label``: W&B pools its seeds), the run's ``name`` the arm with
    its seed, ``group`` the experiment.

    The key comes only from the environment (``WANDB_API_KEY``) and is never written anywhere
    by this project. An online run that cannot start (no key, no network) falls back to offline
    with one warning: W&B never kills a run. A resumed run continues its W&B run (same id).
    """
    if mode == "disabled":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    arm = run_name if arm is None else (arm or "default")
    seed = (config or {}).get("seed")
    name = arm if seed is None else f"{arm},seed={seed}"
    kw = dict(project=project, entity=entity, group=group, name=name, job_type=arm, tags=list(tags),
              save_dir=str(run_dir), config=config, resume="allow", id=(resume or {}).get("wandb_id"))
    logger = _wandb(mode, kw)
    if mode == "online":
        try:
            logger.experiment  # connect now rather than at the first metric
        except Exception as e:  # noqa: BLE001 - any W&B failure means "log offline"
            import wandb

            from gopd.schema import first_line

            reason = first_line(e)
            logging.getLogger("gopd").warning("W&B online failed (%s); logging offline, `wandb sync` later", reason)
            wandb.finish(exit_code=0)
            logger = _wandb("offline", kw)
    return logger


def _wandb(mode: str, kw: dict):
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(mode=mode, **kw)
    logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; wandb warns that it has no effect
    return logger


def loggers_state(loggers) -> dict:
    """What a resumed run's loggers need: metrics.csv's rows, the W&B run id."""
    from lightning.pytorch.loggers import WandbLogger

    state = {"metrics_rows": None, "wandb_id": None}
    for lg in loggers:
        if isinstance(lg, MetricsCSV):
            state["metrics_rows"] = lg.snapshot()
        elif isinstance(lg, WandbLogger):
            state["wandb_id"] = lg.version
    return state


def wandb_run(loggers):
    """The run's W&B logger, or None."""
    from lightning.pytorch.loggers import WandbLogger

    return next((lg for lg in loggers if isinstance(lg, WandbLogger)), None)


def code_version(repo: Path = Path(__file__).resolve().parents[2]) -> str | None:
    """The checkout's commit (short), ``+dirty`` when tracked files differ from it; None outside a
    gopd checkout (an installed wheel: git would answer for whatever repository encloses it)."""
    import subprocess

    if not (repo / "pyproject.toml").is_file() or not (repo / "src" / "gopd").is_dir():
        return None
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


RUN_CONFIG = "run_config.json"  # the config a run directory was started with (Hydra's .hydra/ is rewritten on restart)
# may change between a run's restarts: bookkeeping, and the step budget (a resume may extend a run)
SAME_RUN = (*(k for k in INCIDENTAL if k != "seed"), "trainer.max_steps")


def _flat(tree, key: str = "") -> dict:
    if not isinstance(tree, dict) or not tree:
        return {key: tree}
    return {k: v for name, sub in tree.items() for k, v in _flat(sub, f"{key}.{name}" if key else str(name)).items()}


def config_changes(old: dict, new: dict) -> list[str]:
    """``key: old -> new`` for every setting that differs, the bookkeeping keys (``SAME_RUN``) aside."""
    a, b, unset = _flat(old), _flat(new), "(unset)"
    keys = sorted(k for k in a.keys() | b.keys() if not any(k == s or k.startswith(s + ".") for s in SAME_RUN))
    return [f"{k}: {a.get(k, unset)} -> {b.get(k, unset)}" for k in keys if a.get(k, unset) != b.get(k, unset)]


def started_config(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RUN_CONFIG
    return json.loads(path.read_text()) if path.is_file() else None


@rank_zero_only
def stash_config(run_dir: Path, config: dict) -> None:
    """Record the config a run directory starts with (once: a resume keeps the first)."""
    path = Path(run_dir) / RUN_CONFIG
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


@rank_zero_only  # every rank of a multi-GPU arm runs the job; one writes the run's summary
def write_summary(run_dir: Path, summary: dict) -> Path:
    """Replace ``summary.json`` atomically; a write that fails (a full disk) keeps the previous one
    and says so, without hiding the error that ended the run."""
    path = Path(run_dir) / "summary.json"
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        logging.getLogger("gopd").warning("cannot write %s (%s): it keeps its previous contents", path, e.strerror or e)
    return path
