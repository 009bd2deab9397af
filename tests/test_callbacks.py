"""The run's callbacks and loggers (gopd.callbacks, conf/callbacks/, conf/logger/): built from the
config, bookkeeping kept across a resume, ``trainer.log_every_n_steps`` as Lightning defines it."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from conftest import MINI, compose_train, overridden, train_cmd

from gopd.callbacks import STEP_METRICS, Bookkeeping, Checkpointing, Evaluation, StepRecord
from gopd.checkpoint import merge_state
from gopd.run import build_callbacks, build_loggers
from gopd.validate import ConfigError, check_config

compose_cfg = compose_train


def train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = train_cmd(*overridden(MINI, *overrides), f"hydra.run.dir={run_dir}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- built from config
def test_default_callbacks_in_the_order_they_act(tmp_path):
    cfg = compose_cfg()
    kinds = [type(cb).__name__ for cb in build_callbacks(cfg)]
    assert kinds == ["Bookkeeping", "Evaluation", "Checkpointing", "StepProgress"]
    cfg = compose_cfg("logger.progress=false", "callbacks.evaluation=null", "eval.every_n_steps=7",
                      "optim.max_consecutive_skips=4", "checkpoint.every_n_steps=9", "callbacks.progress=null")
    built = build_callbacks(cfg, started_at=0.0)
    assert [type(cb) for cb in built] == [Bookkeeping, Checkpointing]
    assert build_callbacks(compose_cfg("logger.progress=false"))[-1].bar is False  # the lines stay, the bar goes
    assert built[0].max_consecutive_skips == 4 and built[0].start == 0.0 and built[1].every == 9
    assert Evaluation(**{"every_n_steps": 7}).every == 7


def test_loggers_get_the_run_directory_and_a_disabled_wandb_is_left_out(tmp_path):
    cfg = compose_cfg("logger.wandb.mode=disabled")
    loggers = build_loggers(cfg.logger, run_dir=tmp_path, run_name="r", config={}, resume=None)
    assert [type(lg).__name__ for lg in loggers] == ["MetricsCSV"]
    assert loggers[0].path == tmp_path / "metrics.csv"
    resumed = build_loggers(cfg.logger, run_dir=tmp_path, run_name="r", config={},
                            resume={"metrics_rows": [{"step": 0, "loss": 1.5}], "wandb_id": None})
    assert resumed[0].snapshot() == [{"step": 0, "loss": 1.5}]


@pytest.mark.parametrize("override,message", [
    ("+callbacks.extra.every=2", "callbacks.extra must be a _target_ node"),
    ("+logger.tb=3", "logger.tb must be a _target_ node"),
    ("callbacks.checkpointing.every_n_steps=-1", "callbacks.checkpointing.every_n_steps must be an integer >= 0"),
    ("logger.csv._target_=", "logger.csv._target_ must be a non-empty string"),
])
def test_a_bad_component_is_one_line_naming_it(override, message):
    with pytest.raises(ConfigError) as e:
        check_config(compose_cfg(override))
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_user_components_run_beside_the_defaults(toy_world_mini, tmp_path):
    """A logger of one's own (Lightning's CSVLogger) added from the command line; evaluation turned off."""
    proc = train(tmp_path, "trainer.max_steps=2", "callbacks.evaluation=null",
                 "+logger.extra._target_=lightning.pytorch.loggers.CSVLogger", f"+logger.extra.save_dir={tmp_path / 'own'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    own = list((tmp_path / "own").rglob("metrics.csv"))
    assert len(own) == 1 and "train/reward" in own[0].read_text().splitlines()[0]
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == ["0", "1"] and "eval/accuracy" not in rows[0]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and "eval/accuracy_final" not in summary


# ---------------------------------------------------------------------------- log_every_n_steps
def test_log_every_n_steps_writes_every_nth_step_and_the_last(toy_world_mini, tmp_path):
    proc = train(tmp_path, "trainer.max_steps=7", "trainer.log_every_n_steps=3", "eval.every_n_steps=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metrics(tmp_path)
    logged = [int(r["step"]) for r in rows if r["train/reward"] != ""]
    evaluated = [int(r["step"]) for r in rows if r["eval/accuracy"] != ""]
    assert logged == [2, 5, 6] and evaluated == [0, 7]  # Lightning's rule: (step + 1) % n == 0, and the last
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 7 and summary["perf/tokens_per_s"] > 0  # the counters saw every step


# ------------------------------------------------------------------------------------ bookkeeping
class _Loggers:
    """A logger's one call; the trainer's other parts are not needed by Bookkeeping's counters."""

    def __init__(self):
        self.rows = []

    def log_metrics(self, metrics, step):
        self.rows.append((step, metrics))


class _Trainer:
    def __init__(self, every: int):
        self.loggers, self.log_every_n_steps, self.should_stop = [_Loggers()], every, False


class _Module:
    def log_dict(self, *args, **kwargs):
        pass


def _step(book: Bookkeeping, trainer, step: int, bad: str | None = None) -> None:
    record = StepRecord(step, {"train/reward": 0.5, "train/loss": 1.0, "train/lr": 1e-4, "x/extra": 2.0}, tokens=10,
                        all_tokens=10, seconds=0.5, non_finite=bad)
    book.on_train_batch_end(trainer, _Module(), {"record": record}, None, step)


def test_bookkeeping_counts_skips_and_stops_a_run_of_them_with_stand_in_trainer():
    book, trainer = Bookkeeping(max_consecutive_skips=2), _Trainer(every=1)
    _step(book, trainer, 0)
    _step(book, trainer, 1, bad="loss")
    assert book.too_many_skips() is None
    _step(book, trainer, 2)  # a good step resets the run of skips
    _step(book, trainer, 3, bad="gradient norm")
    _step(book, trainer, 4, bad="gradient norm")
    assert book.too_many_skips() == ("2 consecutive steps skipped: non-finite gradient norm (last at step 4); "
                                     "a checkpoint was saved")
    rows = trainer.loggers[0].rows
    assert [s for s, _ in rows] == [0, 1, 2, 3, 4]
    assert [m["train/skipped_steps"] for _, m in rows] == [0, 1, 1, 2, 3]
    first = rows[0][1]
    # metrics.csv's columns: the step metrics the step reported, in STEP_METRICS' order (no nan-only opd/*), then the rest
    assert list(first) == ["train/reward", "train/loss", "train/skipped_steps", "train/lr", "x/extra"]
    assert list(STEP_METRICS).index("train/reward") < list(STEP_METRICS).index("train/loss")
    assert book.run_summary()["train/skipped_steps"] == 3 and book.run_summary()["perf/tokens_per_s"] == 50 / 2.5


def test_bookkeeping_state_survives_a_resume_with_stand_in_trainer():
    book, trainer = Bookkeeping(max_consecutive_skips=3), _Trainer(every=1)
    _step(book, trainer, 0, bad="loss")
    book.record_evaluation(trainer, 0, {"accuracy": 0.25, "response_len": 9.0}, {"accuracy": 0.75, "response_len": 7.0})
    book.record_evaluation(trainer, 1, {"accuracy": 0.5, "response_len": 8.0})
    state = merge_state({"progress": {"batches": 1}}, book.state(), {"metrics_rows": []})
    assert state["progress"]["batches"] == 1 and state["progress"]["skipped_steps"] == 1
    again = Bookkeeping(max_consecutive_skips=3)
    again.load(state)
    assert again.run_summary() == book.run_summary()
    assert again.summary["eval/gap_closed"] == pytest.approx(0.5)  # (0.5 - 0.25) / (0.75 - 0.25)
    assert again.consecutive_skips == 1 and again.wall_s() >= state["wall_s"]
    _step(again, trainer, 1, bad="loss")
    _step(again, trainer, 2, bad="loss")
    assert again.too_many_skips() is not None  # the run of skips continues across the resume
