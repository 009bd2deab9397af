"""The command lines: ``gopd-train`` is ``python src/train.py``; every console script resolves."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def composed(*cmd: str) -> str:
    out = subprocess.run([*cmd, "teacher=hinted", "alpha=2", "--cfg", "job"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_entry_point_and_script_compose_the_same_job():
    job = composed(sys.executable, "-m", "gopd.main")
    assert job == composed(sys.executable, str(ROOT / "src" / "train.py"))
    assert "alpha: 2" in job


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_targets_exist(name):
    module, _, attr = SCRIPTS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_arm_label_drops_what_never_makes_an_arm():
    from gopd.runlog import arm_label

    overrides = ["pressure=rlrt", "alpha=2", "seed=1", "+sweep=pressure", "+cluster=local", "logger.progress=false",
                 "logger.wandb.mode=offline", "save_final=false", "checkpoint.every_n_steps=0", "experiment=x",
                 "teacher.hint_field=hint_soft", "hydra.sweep.dir=/tmp/x", "seeds=3"]
    assert arm_label(overrides) == "alpha=2,pressure=rlrt,seeds=3,teacher.hint_field=hint_soft"
    assert arm_label([]) == ""


def test_dirname_keeps_an_arm_in_one_directory():
    from gopd.main import MAX_DIRNAME, dirname

    assert dirname("alpha=2,grpo_mix=0.5") == "alpha=2,grpo_mix=0.5"
    assert dirname("reference.path=/no/such/ckpt") == "reference.path=_no_such_ckpt"
    long_a, long_b = "x=" + "a" * 300, "x=" + "a" * 299 + "b"
    assert len(dirname(long_a).encode()) <= MAX_DIRNAME and dirname(long_a).startswith("x=aaa")
    assert dirname(long_a) != dirname(long_b)  # the hash tells apart names that share their head
    assert len(dirname("x=" + "é" * 200).encode()) <= MAX_DIRNAME  # cut on a character, not inside one


def test_config_changes_name_every_difference_but_bookkeeping():
    from gopd.runlog import config_changes

    old = {"alpha": 2, "seed": 0, "loss": {"eps_low": 0.2}, "logger": {"wandb": {"mode": "offline"}}, "tags": [1]}
    new = {"alpha": 2, "seed": 1, "loss": {"eps_low": 0.2, "dual_clip": 3}, "logger": {"wandb": {"mode": "disabled"}},
           "tags": [1, 2]}
    assert config_changes(old, new) == ["loss.dual_clip: (unset) -> 3", "seed: 0 -> 1", "tags: [1] -> [1, 2]"]
    assert config_changes(old, old) == []
    extended = {**old, "trainer": {"max_steps": 8}}
    assert config_changes({**old, "trainer": {"max_steps": 4}}, extended) == []  # a resume may extend the run
