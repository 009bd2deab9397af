"""The training loop end to end on the miniature toy world."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import MINI, ROOT, compose_train, train_cmd

from gopd.run import run


def compose_cfg(overrides):
    return compose_train(*MINI, *overrides)


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


COMBOS = list(itertools.product(["hinted", "rl_checkpoint", "domain_experts"], ["student", "teacher", "pre_rl"],
                                ["full", "positive", "negative", "flip_correct"]))


@pytest.mark.slow
@pytest.mark.parametrize("teacher,reference,pressure", COMBOS)
def test_every_group_combination_runs_two_steps(toy_world_mini, tmp_path, teacher, reference, pressure):
    extra = []  # reference=pre_rl: the toy world supplies its teacher's pre-RL base (gopd.toy.config)
    cfg = compose_cfg([f"teacher={teacher}", f"reference={reference}", f"pressure={pressure}", "alpha=1.5",
                       "grpo_mix=0.25", *extra])
    summary = run(cfg, tmp_path, "combo")
    assert summary["status"] == "completed" and summary["steps"] == 2
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == ["0", "1", "2"]
    assert all(r["opd/pos_mass"] != "" for r in rows[:2])
    if pressure == "positive":
        assert all(float(r["opd/neg_mass"]) == 0 for r in rows[:2])


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["full", "topk"])
@pytest.mark.parametrize("teacher,reference,pressure", [("hinted", "student", "positive"),
                                                         ("rl_checkpoint", "teacher", "full"),
                                                         ("domain_experts", "pre_rl", "flip_correct")])
def test_vocabulary_estimators_run_two_steps(toy_world_mini, tmp_path, estimator, teacher, reference, pressure):
    extra = ["reference.path=toy://teacher_base"] if reference == "pre_rl" else []
    cfg = compose_cfg([f"estimator={estimator}", f"teacher={teacher}", f"reference={reference}",
                       f"pressure={pressure}", "alpha=2", "grpo_mix=0.25", *extra])
    summary = run(cfg, tmp_path, "vocab")
    assert summary["status"] == "completed" and summary["train/skipped_steps"] == 0
    rows = read_metrics(tmp_path)
    assert all(r["opd/teacher_kl"] != "" and float(r["opd/teacher_kl"]) >= 0 for r in rows[:2])
    if pressure == "positive":
        assert all(float(r["opd/neg_mass"]) == 0 for r in rows[:2])


@pytest.mark.slow
@pytest.mark.parametrize("pressure", [["pressure=rlrt"], ["pressure=reversed"], ["pressure=rlsd"],
                                      ["pressure=positive", "pressure.normalize=kept"],
                                      ["pressure=negative", "pressure.normalize=kept"],
                                      ["pressure=rlsd", "grpo.scale=batch", "grpo.eps=1e-4", "loss.dual_clip=3"],
                                      ["pressure=rlrt", "teacher.hint_template=opsd"]],
                         ids=" ".join)
def test_grpo_reweighting_and_kept_normalisation_run_three_steps(toy_world_mini, tmp_path, pressure):
    """rlrt / rlsd (pure, grpo_mix = 0: GRPO's advantage reweighted), kept-token normalisation, and
    the peers' conventions (TRL's batch-scaled GRPO and eps, verl's dual clip)."""
    cfg = compose_cfg([*pressure, "trainer.max_steps=3", "alpha=1"])
    summary = run(cfg, tmp_path, "pressure")
    assert summary["status"] == "completed" and summary["steps"] == 3 and summary["train/skipped_steps"] == 0
    assert cfg.pressure.name == ("rlrt" if pressure == ["pressure=reversed"] else pressure[0].split("=")[1])
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"] and all(r["train/loss"] != "" for r in rows[:3])
    if "teacher.hint_template=opsd" in pressure:  # the OPSD teacher turn, as written to prompts.txt
        assert "Here is a reference solution to this problem:" in (tmp_path / "prompts.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("overrides,absent,present", [
    (["grpo_mix=1"], ["opd/pos_mass", "opd/teacher_kl", "opd/ref_kl", "opd/max_shock", "mix/sign_agreement"],
     ["grpo/zero_std_frac"]),                                                     # pure GRPO: no teacher
    (["alpha=1"], ["opd/ref_kl", "grpo/zero_std_frac", "mix/sign_agreement"],  # OPD: no reference, no GRPO
     ["opd/pos_mass", "opd/teacher_kl"]),
])
def test_metrics_that_cannot_apply_are_not_logged(toy_world_mini, tmp_path, overrides, absent, present):
    run(compose_cfg(overrides), tmp_path, "applies")
    rows = read_metrics(tmp_path)
    assert not [m for m in absent if m in rows[0]] and not [m for m in present if m not in rows[0]]
    empty = [k for k in rows[0] if all(r[k] == "" for r in rows)]
    assert not empty, empty  # no column of nan only


def test_student_equal_teacher_alpha_one_gives_zero_advantage_and_still_weights(toy_world_mini, tmp_path):
    cfg = compose_cfg(["teacher=rl_checkpoint", "teacher.path=toy://student", "alpha=1", "pressure=full",
                       "save_final=true"])
    run(cfg, tmp_path, "same")
    for r in read_metrics(tmp_path)[:2]:
        assert float(r["opd/pos_mass"]) == 0 and float(r["opd/neg_mass"]) == 0 and float(r["train/loss"]) == 0
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(toy_world_mini / "student").state_dict()
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "final").state_dict()
    assert max((before[k] - after[k]).abs().max().item() for k in before) < 1e-6


def test_pure_grpo_loads_no_teacher(toy_world_mini, tmp_path):
    cfg = compose_cfg(["grpo_mix=1", "teacher=rl_checkpoint", "teacher.path=toy://teacher"])
    summary = run(cfg, tmp_path, "grpo")
    assert summary["models_loaded"] == 1 and "teacher/accuracy" not in summary
    assert all(r.get("opd/pos_mass", "") == "" for r in read_metrics(tmp_path)[:2])  # not logged: no teacher


def test_hinted_initial_teacher_and_student_reference_share_one_copy(toy_world_mini, tmp_path):
    summary = run(compose_cfg(["teacher=hinted", "reference=student", "alpha=2"]), tmp_path, "shared")
    assert summary["models_loaded"] == 2  # the trainable student + one frozen step-0 copy


def test_domain_experts_with_shared_checkpoint_load_once(toy_world_mini, tmp_path):
    cfg = compose_cfg(["teacher=domain_experts", "teacher.experts.add=toy://teacher", "teacher.experts.mul=toy://teacher"])
    assert run(cfg, tmp_path, "experts")["models_loaded"] == 2


CONTRACT_METRICS = ["train/reward", "train/response_len", "eval/accuracy", "opd/pos_mass", "opd/neg_mass",
                  "opd/pos_frac", "opd/teacher_kl", "opd/ref_kl", "opd/max_shock", "grpo/zero_std_frac",
                  "mix/sign_agreement", "perf/tokens_per_s", "perf/rollout_s", "perf/score_s", "perf/update_s",
                  "train/loss", "train/grad_norm"]


def test_outputs_metrics_summary_and_wandb_offline(toy_world_mini, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    cfg = compose_cfg(["alpha=2", "grpo_mix=0.5", "logger.wandb.mode=offline", "eval.every_n_steps=1",
                       "traces.every_n_steps=1"])
    summary = run(cfg, tmp_path, "outputs", arm="alpha=2,grpo_mix=0.5")
    assert sorted(p.name for p in (tmp_path / "traces").glob("step-*.jsonl")) == ["step-000000.jsonl",
                                                                                  "step-000001.jsonl"]
    header = read_metrics(tmp_path)[0].keys()
    assert not [m for m in CONTRACT_METRICS if m not in header]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in ("status", "steps", "eval/accuracy_initial", "eval/accuracy_final", "teacher/accuracy",
                "perf/tokens_per_s", "wall_s"):
        assert key in on_disk, key
    assert on_disk["status"] == "completed" == summary["status"]
    manifest = json.loads((toy_world_mini / "manifest.json").read_text())
    assert on_disk["world"] == f"mini@{manifest['recipe_hash']}"  # which toy world the numbers are from
    assert on_disk["code"] is None or re.fullmatch(r"[0-9a-f]{12}(\+dirty)?", on_disk["code"])
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0
    from test_sweeps import wandb_run_record

    wb = wandb_run_record(tmp_path)  # a single run is named and tagged as a sweep's arm is
    assert (wb.job_type, wb.display_name) == ("alpha=2,grpo_mix=0.5", "alpha=2,grpo_mix=0.5,seed=0")
    assert {"alpha=2", "grpo_mix=0.5", "pressure=full", "teacher=hinted", "estimator=token", "seed=0"} <= set(wb.tags)


# ---------------------------------------------------------------------- validation, as a user sees it


def train_cli(tmp_path, *overrides):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cmd = train_cmd(*MINI, f"hydra.run.dir={tmp_path}", *overrides)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides,message",
    [
        (["alpha=0"], "alpha must be a number > 0"),
        (["alpha=-1"], "alpha must be a number > 0"),
        (["alpha=abc"], "alpha must be a number > 0"),
        (["grpo_mix=1.5"], "grpo_mix must be a number in [0, 1]"),
        (["grpo_mix=0.5", "rollout.n=1"], "rollout.n must be >= 2 when grpo_mix > 0"),
        (["pressure=reversed", "rollout.n=1"], "rollout.n must be >= 2 for pressure=rlrt"),
        (["rollout.max_new_tokens=0"], "rollout.max_new_tokens must be an integer > 0"),
        (["reference=pre_rl", "alpha=2", "model.path=/no/such/student"], "reference.path is required for reference=pre_rl"),
        (["teacher=rl_checkpoint", "teacher.path=./no/such/ckpt"], "teacher.path: no checkpoint at"),
        (["model.path=/no/such/student"], "model.path: no checkpoint at"),
        (["teacher=rl_checkpoint", "teacher.path=toy://no_such"], "teacher.path: toy://no_such is not in the toy world 'mini'"),
        (["teacher.hint_field=hint_oracle"], "teacher.hint_field: column 'hint_oracle' is not in the data"),
        (["teacher=domain_experts", "~teacher.experts.mul"], "no expert for domain 'mul'"),
    ],
)
def test_validation_errors_are_one_line_and_write_nothing(tmp_path, toy_world_mini, overrides, message):
    proc = train_cli(tmp_path, *overrides)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    written = sorted(p.name for p in tmp_path.iterdir())
    assert not {"metrics.csv", "summary.json", "wandb"} & set(written), written


@pytest.mark.slow
def test_a_run_prints_progress_lines_and_an_end_block_once(tmp_path, toy_world_mini):
    proc = train_cli(tmp_path, "trainer.max_steps=3", "logger.wandb.mode=offline", "callbacks.progress.every_n_steps=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for noise in ("litlogger", "anonymous setting", "LeafSpec", "`srun` command", "INFO: "):
        assert noise not in out, noise  # third-party noise silenced, and no second copy of Lightning's lines
    assert out.count("GPU available") == 1
    assert [line.split(" - ", 1)[1].split(" |")[0] for line in out.splitlines() if "] - step " in line] == [
        "step 1/3 (33%)", "step 2/3 (67%)", "step 3/3 (100%)"]
    assert "run completed: 3 steps in " in out and "held-out accuracy " in out and f"run directory: {tmp_path}" in out
    assert f"W&B (offline): wandb sync {tmp_path}/wandb/offline-run-*" in out
    log = (tmp_path / "train.log").read_text()
    assert "step 3/3 (100%)" in log and "run completed" in log and "\x1b[" not in log  # the whole run, no ANSI codes


def test_vocabulary_mismatch_is_a_start_up_error(tmp_path, toy_world_mini):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(toy_world_mini / "teacher")
    tok.add_tokens(["<|extra_token|>"])
    other = tmp_path / "other_teacher"
    AutoModelForCausalLM.from_pretrained(toy_world_mini / "teacher").save_pretrained(other)
    tok.save_pretrained(other)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = train_cli(run_dir, "teacher=rl_checkpoint", f"teacher.path={other}")
    assert proc.returncode == 2 and "differs from the student's" in proc.stderr, proc.stderr[-2000:]


def test_inert_alpha_is_a_warning_not_an_error(toy_world_mini, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="gopd"):
        run(compose_cfg(["reference=teacher", "alpha=2"]), tmp_path, "inert")
    assert any("inert" in r.message for r in caplog.records)


def test_wandb_online_without_key_falls_back_to_offline(toy_world_mini, tmp_path, monkeypatch, caplog):
    for var in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))  # no stored login
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "20")
    with caplog.at_level("WARNING", logger="gopd"):
        summary = run(compose_cfg(["logger.wandb.mode=online"]), tmp_path, "online")
    assert summary["status"] == "completed"
    assert sum("W&B online failed" in r.message for r in caplog.records) == 1
    assert list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))


def test_code_version_is_the_checkout_commit_and_none_outside_a_checkout(tmp_path):
    from gopd.runlog import code_version

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert code_version().split("+")[0] == head.stdout.strip()
    (tmp_path / "pyproject.toml").write_text("")  # a folder that is no gopd checkout, even inside a repository
    assert code_version(tmp_path) is None and code_version(ROOT / "src") is None


@pytest.mark.slow
@pytest.mark.parametrize("estimator,pressure", [("token", "full"), ("full", "flip_correct")])
def test_verify_workers_train_as_inline_verification_does(toy_world_mini, tmp_path, estimator, pressure):
    """Rewards from worker processes (overlapping the forwards) give the inline run's every metric."""
    common = [f"estimator={estimator}", f"pressure={pressure}", "grpo_mix=0.5", "rollout.n=4",
              "rollout.prompts_per_step=8", "trainer.max_steps=3", "model.toy_variant=full", "rollout.max_new_tokens=48"]
    runs = {}
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        summary = run(compose_cfg([*common, f"verify.workers={workers}"]), out, f"w{workers}")
        assert summary["status"] == "completed" and summary["steps"] == 3
        runs[workers] = read_metrics(out)
    keys = [k for k in runs[0][0] if k.startswith(("train/reward", "train/loss", "opd/", "grpo/"))]
    assert "train/reward" in keys and "train/loss" in keys
    assert [[r[k] for k in keys] for r in runs[0]] == [[r[k] for k in keys] for r in runs[2]]
    assert any(float(r["train/reward"]) > 0 for r in runs[0] if r["train/reward"])  # rewards did something
