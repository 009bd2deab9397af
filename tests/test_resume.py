"""Preemption-safe runs: real processes, real signals, identical resume, numeric guards."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import MINI, ROOT, overridden, train_cmd

from gopd import checkpoint

RUN = overridden(MINI, "trainer.max_steps=8", "checkpoint.every_n_steps=2", "eval.every_n_steps=4",
                 "logger.wandb.mode=offline", "save_final=true", "alpha=2", "pressure=full", "grpo_mix=0.5",
                 "optim.warmup_steps=3")


def start(run_dir: Path, *extra) -> subprocess.Popen:
    env = {**os.environ, "WANDB_DIR": str(run_dir)}
    cmd = train_cmd(*RUN, f"hydra.run.dir={run_dir}", *extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen, timeout=300) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "final" / "model.safetensors")


DETERMINISTIC = ("train/reward", "train/response_len", "train/loss", "train/grad_norm", "opd/pos_mass", "opd/neg_mass",
                 "opd/teacher_kl", "opd/ref_kl", "grpo/zero_std_frac", "eval/accuracy", "eval/response_len")


@pytest.fixture(scope="module")
def uninterrupted(toy_world_mini, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    code, err = finish(start(run_dir))
    assert code == 0, err[-3000:]
    return run_dir


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_then_restart_resumes_identically(uninterrupted, tmp_path, sig):
    proc = start(tmp_path)
    deadline = time.time() + 240
    while checkpoint.latest(tmp_path) is None:  # first checkpoint, then the signal mid-run
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(sig)
    code, err = finish(proc)
    assert code == -sig, err[-3000:]  # the process ends as the signal would end it, after saving
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "preempted" and 0 < summary["steps"] < 8

    code, err = finish(start(tmp_path))  # the same command, the same run directory
    assert code == 0, err[-3000:]
    assert "resuming from" in err
    resumed, reference = rows(tmp_path), rows(uninterrupted)
    assert [r["step"] for r in resumed] == [r["step"] for r in reference] == [str(i) for i in range(9)]
    for a, b in zip(resumed, reference):
        for key in DETERMINISTIC:
            assert a[key] == b[key], (a["step"], key)
    ours, theirs = (json.loads((d / "summary.json").read_text()) for d in (tmp_path, uninterrupted))
    for key in ("status", "steps", "eval/accuracy_initial", "eval/accuracy_final", "teacher/accuracy"):
        assert ours[key] == theirs[key], key
    a, b = weights(tmp_path), weights(uninterrupted)
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) >= 1


def test_rerunning_a_completed_run_changes_nothing(uninterrupted):
    before = (uninterrupted / "metrics.csv").read_text()
    code, err = finish(start(uninterrupted))
    assert code == 0 and "already completed" in err
    assert (uninterrupted / "metrics.csv").read_text() == before


def test_kill_during_checkpoint_write_leaves_previous_loadable(toy_world_mini, tmp_path, monkeypatch):
    from gopd.pool import load_model

    model = load_model(str(toy_world_mini / "student"), trainable=True)
    checkpoint.save(tmp_path, 2, model, [], {"progress": {"batches": 2}})
    with torch.no_grad():
        model.get_output_embeddings().weight.add_(1.0)

    def dies_mid_write(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing state.pt")

    monkeypatch.setattr(checkpoint.torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, 4, model, [], {"progress": {"batches": 4}})
    monkeypatch.undo()
    last = checkpoint.latest(tmp_path)
    assert last.name == "step-000002"
    fresh = load_model(str(toy_world_mini / "student"), trainable=True)
    state = checkpoint.load(last, fresh, [])
    assert state["progress"]["batches"] == 2
    original = load_model(str(toy_world_mini / "student"))
    assert torch.equal(fresh.get_output_embeddings().weight, original.get_output_embeddings().weight)


def test_checkpoint_state_loads_without_pickled_code(toy_world_mini, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "checkpoints" / "step-000001").mkdir(parents=True)
    torch.save({"x": Evil()}, tmp_path / "checkpoints" / "step-000001" / "state.pt")
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "checkpoints" / "step-000001" / "state.pt", weights_only=True)


# ------------------------------------------------------------------------------- numeric guards


def _nan_teacher(monkeypatch, bad_steps):
    from gopd import scoring

    original = scoring.Scorer.score
    calls = {"n": 0}

    def score(self, rows, completion_ids, completion_mask, pad_id):
        out = original(self, rows, completion_ids, completion_mask, pad_id)
        step = calls["n"]
        calls["n"] += 1
        return out.fill_(float("nan")) if step in bad_steps else out

    monkeypatch.setattr(scoring.Scorer, "score", score)


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=[o for o in RUN if not o.startswith("logger.wandb")] +
                       ["logger.wandb.mode=disabled", "save_final=false", "alpha=1", "grpo_mix=0"] + overrides)


def test_nan_teacher_steps_are_skipped_and_counted(toy_world_mini, tmp_path, monkeypatch):
    from gopd.run import run

    _nan_teacher(monkeypatch, bad_steps={1, 3})  # alpha=1: one teacher call per step
    summary = run(_compose(["trainer.max_steps=5"]), tmp_path, "nan")
    assert summary["status"] == "completed" and summary["train/skipped_steps"] == 2
    r = rows(tmp_path)
    assert [float(x["train/skipped_steps"]) for x in r[:5]] == [0, 1, 1, 2, 2]
    assert r[1]["train/grad_norm"] == "" and r[2]["train/grad_norm"] != ""


def test_consecutive_nan_steps_stop_with_checkpoint_and_one_line_error(toy_world_mini, tmp_path, monkeypatch, capsys):
    from gopd.run import run

    _nan_teacher(monkeypatch, bad_steps=set(range(1, 100)))
    with pytest.raises(SystemExit) as exit_info:
        run(_compose(["trainer.max_steps=8", "optim.max_consecutive_skips=3"]), tmp_path, "nan")
    assert exit_info.value.code == 3
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "3 consecutive steps skipped: non-finite teacher logp" in err[0]
    assert checkpoint.latest(tmp_path) is not None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "non-finite teacher logp" in summary["error"]


def test_restarting_a_completed_run_with_another_config_is_refused(uninterrupted):
    before = {p: (uninterrupted / p).read_text() for p in ("metrics.csv", "summary.json", "run_config.json")}
    cmd = train_cmd(*overridden(RUN, "alpha=3", "logger.wandb.mode=disabled"), f"hydra.run.dir={uninterrupted}")
    code, err = finish(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    assert code == 2 and "was started with another config (alpha: 2 -> 3)" in err, err[-2000:]
    assert all((uninterrupted / p).read_text() == text for p, text in before.items())
