"""Sweeps (sweeps/*.yaml) and cluster profiles (slurm/*.yaml): composition and grid sizes without a
cluster, then real grids on the local single-node SLURM (slurm/local/cluster.sh) through Hydra's
submitit_slurm launcher on the miniature toy world, and an arm requeued at its time limit."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import MINI, ROOT, overridden
from hydra import compose, initialize_config_dir

from gopd.main import dirname

pytestmark = pytest.mark.xdist_group("slurm")  # one worker submits: the local cluster has 2 CPUs

CLUSTER_SH = ROOT / "slurm" / "local" / "cluster.sh"
START_HINT = f"start it with:  bash {CLUSTER_SH.relative_to(ROOT)} up   (installs Debian packages, needs root)"
MINI = overridden(MINI, "logger.wandb.mode=offline")  # the W&B files of a grid are part of what is checked
SIZES = {"alpha_x_mix": 15, "pressure": 10, "reference": 9}


# ------------------------------------------------------------------------------ without a cluster
def compose_hydra(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def _load_arms_module():
    spec = importlib.util.spec_from_file_location("sweep_arms", ROOT / "sweeps" / "arms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


expand = _load_arms_module().expand  # the arms `train.py -m <overrides>` launches (Hydra's basic sweeper)


def arm_cfg(arm: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=arm)


@pytest.mark.parametrize("sweep", sorted(SIZES))
def test_sweep_files_compose_and_expand_to_their_documented_size(sweep):
    from gopd.validate import check_config

    cfg = compose_hydra([f"+sweep={sweep}"])
    assert cfg.experiment == sweep
    assert f"multirun/{sweep}/" in cfg.hydra.sweep.dir
    arms = expand([f"+sweep={sweep}"])
    assert len(arms) == SIZES[sweep]
    assert len({tuple(sorted(a)) for a in arms}) == SIZES[sweep]
    for arm in arms:  # every arm composes and passes the pure config checks (pre_rl has its path)
        c = arm_cfg(arm)
        assert c.experiment == sweep
        check_config(c)
    # a seed axis, either from the seeds file or from the command line, multiplies the grid by 3
    assert len(expand([f"+sweep=[{sweep},seeds]"])) == 3 * SIZES[sweep]
    assert len(expand([f"+sweep={sweep}", "seed=0,1,2"])) == 3 * SIZES[sweep]
    assert compose_hydra([f"+sweep=[{sweep},seeds]"]).experiment == sweep


def test_command_line_axes_narrow_or_extend_a_sweep():
    arms = expand(["+sweep=alpha_x_mix", "alpha=1,2"])  # replaces the alpha axis
    assert len(arms) == 6
    assert {a for arm in arms for a in arm if a.startswith("alpha=")} == {"alpha=1", "alpha=2"}
    assert len(expand(["+sweep=alpha_x_mix", "grpo_mix=0,0.25,0.5,0.75,1"])) == 25  # extends one
    assert len(expand(["+sweep=pressure", "alpha=2"])) == 10  # a fixed value rides along
    assert all("alpha=2" in arm for arm in expand(["+sweep=pressure", "alpha=2"]))
    assert len(expand(["+sweep=reference", "teacher=hinted,rl_checkpoint"])) == 18  # adds an axis


def test_arm_grid_values_reach_the_config():
    arms = expand(["+sweep=alpha_x_mix"])
    seen = {(c.alpha, c.grpo_mix) for c in map(arm_cfg, arms)}
    assert seen == {(a, m) for a in (1, 1.25, 1.5, 2, 3) for m in (0, 0.25, 0.5)}
    c = arm_cfg(["+sweep=pressure", "pressure=rlrt", "teacher=rl_checkpoint"])
    assert (c.pressure.name, c.teacher.name, c.rollout.n, c.pressure.lam) == ("rlrt", "rl_checkpoint", 4, 0.5)
    assert list(c.logger.wandb.tags) == ["alpha=1.0", "grpo_mix=0.0", "pressure=rlrt", "teacher=rl_checkpoint",
                                         "reference=student", "seed=0"]


def cfg_hydra(*overrides) -> dict:
    """`train.py <overrides> --cfg all --resolve` as a user would run it (a subprocess, no cluster)."""
    out = subprocess.run([sys.executable, "src/train.py", *overrides, "--cfg", "all", "--resolve"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)["hydra"]


@pytest.mark.parametrize("cluster,devices,gpus", [("local", 1, None), ("h100", 8, 8)])
def test_cluster_profiles_select_the_slurm_launcher_in_one_override(cluster, devices, gpus):
    h = cfg_hydra("+sweep=alpha_x_mix", f"+cluster={cluster}", "alpha=2")
    launcher = h["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["tasks_per_node"] == devices and launcher["gpus_per_node"] == gpus
    assert launcher["partition"] and launcher["timeout_min"] > 0 and launcher["mem_gb"] > 0
    assert launcher["cpus_per_task"] >= 1 and launcher["signal_delay_s"] > 0 and launcher["max_num_timeout"] >= 1
    assert launcher["name"] == "alpha_x_mix"
    assert f"source {ROOT}/.venv/bin/activate" in launcher["setup"]
    assert h["runtime"]["choices"]["hydra/launcher"] == "submitit_slurm"
    # the arm's name (run dir, W&B name/job_type) carries the arm, not the sweep file or the cluster
    assert h["job"]["override_dirname"] == "alpha=2"
    assert compose_hydra([f"+cluster={cluster}"]).trainer.devices == devices


def test_arms_script_lists_a_grid_without_launching():
    out = subprocess.run([sys.executable, "sweeps/arms.py", "+sweep=[pressure,seeds]", "+cluster=h100", "alpha=2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 30 and "30 arms" in out.stderr
    assert lines[0].split(None, 1)[1] == "pressure=full teacher=hinted seed=0 alpha=2"


def test_submit_script_refuses_without_a_sweep():
    out = subprocess.run(["bash", "slurm/submit.sh"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "usage" in out.stderr


# ------------------------------------------------------------------------------ on the local SLURM
@pytest.fixture(scope="module")
def slurm_env():
    """SLURM_CONF of the local cluster; FAILS under CI when it is not running (skips locally)."""
    env = {"SLURM_CONF": os.environ.get("SLURM_CONF", "")}
    if not env["SLURM_CONF"]:
        out = subprocess.run(["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True, timeout=30)
        env["SLURM_CONF"] = out.stdout.strip().split("=", 1)[-1]
    problem = None
    if not shutil.which("sbatch"):
        problem = "SLURM is not installed"
    else:
        status = subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True, timeout=60,
                                env={**os.environ, **env})
        if status.returncode != 0:
            problem = "the local SLURM is not running:\n" + status.stdout
    if problem:
        msg = f"{problem}\n{START_HINT}"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return env


def run_sweep(tmp_path, slurm_env, overrides, name="sweep"):
    """`train.py -m <overrides> +cluster=local` on the mini toy world, with this process's environment
    (GOPD_CACHE of the toy_world_mini fixture), as a user would run it."""
    env = {**os.environ, **slurm_env}
    sweep_dir = tmp_path / name
    cmd = [sys.executable, "src/train.py", "-m", "+cluster=local", *overridden(MINI, *overrides),
           f"hydra.sweep.dir={sweep_dir}"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return out, sweep_dir


def run_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: int(p.name.split("_")[0]))


def wandb_run_record(run_dir: Path, wait_s: float = 30.0):
    """The run record of the arm's offline W&B run (the .wandb file is a LevelDB-style record log).
    W&B's service process writes the file and may still be flushing it when ``wandb.finish``
    has returned (seen once under two busy pytest workers): read it again until the record is there."""
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + wait_s
    while (run := _run_record(path.read_bytes())) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no run record in {path} after {wait_s:.0f} s")
        time.sleep(0.2)
    return run


def _run_record(data: bytes):
    from wandb.proto import wandb_internal_pb2

    pos, buf = 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:
            pos += 32768 - pos % 32768
            continue
        n, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if pos + 7 + n > len(data):
            return None  # a record still being written
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # a full record, or the last piece of one
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            buf = b""
            if rec.WhichOneof("record_type") == "run":
                return rec.run
    return None


def sacct_states(slurm_env, job_ids, timeout=60) -> dict:
    """SLURM's final states of the jobs (an arm's result lands a moment before its job ends)."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                             env={**os.environ, **slurm_env},
                             capture_output=True, text=True, timeout=60, check=True).stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
        if time.monotonic() > deadline or not {"PENDING", "RUNNING", "COMPLETING"} & set(states.values()):
            return states
        time.sleep(0.5)


@pytest.mark.slow
def test_alpha_x_mix_grid_runs_on_slurm(slurm_env, toy_world_mini, tmp_path):
    out, sweep_dir = run_sweep(tmp_path, slurm_env, ["+sweep=alpha_x_mix", "alpha=1,2", "grpo_mix=0,0.5"])
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Submitit 'slurm' sweep output dir" in out.stdout + out.stderr
    runs = run_dirs(sweep_dir)
    assert len(runs) == 4
    grid, job_ids = set(), []
    for run in runs:
        cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        hydra = yaml.safe_load((run / ".hydra" / "hydra.yaml").read_text())["hydra"]
        grid.add((cfg["alpha"], cfg["grpo_mix"]))
        assert cfg["experiment"] == "alpha_x_mix"
        arm = hydra["job"]["override_dirname"]
        assert run.name == f"{hydra['job']['num']}_{dirname(arm)}"  # '/' -> '_', long names cut (gopd.main)
        assert f"alpha={cfg['alpha']}" in arm and f"grpo_mix={cfg['grpo_mix']}" in arm
        assert "sweep" not in arm and "cluster" not in arm
        assert re.fullmatch(r"\d+_\d+", str(hydra["job"]["id"])), hydra["job"]["id"]  # array job id
        job_ids.append(str(hydra["job"]["id"]))
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["steps"] == 2
        with open(run / "metrics.csv") as f:
            assert [r["step"] for r in csv.DictReader(f)] == ["0", "1", "2"]
        wb = wandb_run_record(run)
        assert wb.run_group == "alpha_x_mix"  # one W&B group for the sweep ...
        # ... the arm as job type (seeds pool there: no seed, logger, sweep or cluster key), with its seed as name
        assert f"alpha={cfg['alpha']}" in wb.job_type and f"grpo_mix={cfg['grpo_mix']}" in wb.job_type
        assert not re.search(r"(^|,)(seed|logger\.|\+?sweep|\+?cluster)", wb.job_type), wb.job_type
        assert wb.display_name == f"{wb.job_type},seed={cfg['seed']}"
        assert f"alpha={cfg['alpha']}" in wb.tags and f"grpo_mix={cfg['grpo_mix']}" in wb.tags
    assert grid == {(1, 0), (1, 0.5), (2, 0), (2, 0.5)}
    assert len({j.split("_")[0] for j in job_ids}) == 1  # one SLURM job array
    assert set(sacct_states(slurm_env, job_ids).values()) == {"COMPLETED"}  # accounting answers
    # the arms saw the driver's environment (submitit's sbatch exports it): the test's toy world
    logs = "".join(p.read_text() for p in sweep_dir.glob(".submitit/*/*_log.out"))
    assert logs.count(f"GOPD_CACHE={os.environ['GOPD_CACHE']}") == 4, logs[-2000:]
    index = subprocess.run([sys.executable, "sweeps/index.py", str(sweep_dir)], cwd=ROOT,
                           env={**os.environ, **slurm_env}, capture_output=True, text=True, timeout=60)
    assert index.returncode == 0 and "4 arms: 4 completed, 0 failed" in index.stdout, index.stdout + index.stderr
    assert (sweep_dir / "index.csv").exists()


def _jobs(slurm_env) -> set[str]:
    """IDs of the jobs SLURM accounted for today; an array counts once (``238_[0-1]`` while pending
    becomes ``238_0``, ``238_1`` when an earlier test's arms start, which is not a new submission)."""
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID", "-S", "now-1days"], env={**os.environ, **slurm_env},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {job.split("_")[0] for job in out.stdout.split()}


@pytest.mark.slow
def test_a_sweep_with_an_invalid_arm_submits_nothing(slurm_env, toy_world_mini, tmp_path):
    """Every arm is checked before the launcher sees one (gopd.sweeping): no queue wait per mistake."""
    before = _jobs(slurm_env)
    out, sweep_dir = run_sweep(tmp_path, slurm_env, ["+sweep=pressure", "teacher=hinted", "rollout.n=1"])
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: arm 3 (pressure=rlrt teacher=hinted "), errors
    assert errors[0].endswith(" rollout.n=1): rollout.n must be >= 2 for pressure=rlrt (it reweights GRPO's "
                              "group-normalised advantage), got 1: e.g. rollout.n=4 rollout.prompts_per_step=8 "
                              "(2 of 5 arms fail the checks; sweeps/arms.py lists them); nothing was launched"), errors
    assert "Traceback" not in out.stderr and not sweep_dir.exists()
    assert _jobs(slurm_env) == before  # nothing reached the queue


def test_a_sweep_file_without_multirun_is_a_one_line_error(tmp_path):
    out = subprocess.run([sys.executable, "src/train.py", "+sweep=alpha_x_mix", f"hydra.run.dir={tmp_path}/run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: +sweep=... is a grid: add -m (python src/train.py -m +sweep=...); without it one default arm would "
        "run here"]
    assert not (tmp_path / "run").exists()


def test_arms_script_marks_the_arms_that_fail_the_checks():
    out = subprocess.run([sys.executable, "sweeps/arms.py", "+sweep=pressure", "teacher=hinted", "rollout.n=1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "5 arms, 2 failing the checks" in out.stderr
    lines = out.stdout.splitlines()
    assert ["error:" in line for line in lines] == [False, False, False, True, True]
    assert lines[4].endswith("error: rollout.n must be >= 2 for pressure=rlsd (it reweights GRPO's group-normalised "
                             "advantage), got 1: e.g. rollout.n=4 rollout.prompts_per_step=8")


@pytest.mark.slow
def test_an_invalid_arm_fails_alone_and_is_recorded(slurm_env, toy_world_mini, tmp_path):
    # a pre-RL path that does not exist passes the config checks (they read no files) and fails in its
    # own job: the other arms run
    out, sweep_dir = run_sweep(tmp_path, slurm_env, ["+sweep=reference", "alpha=2", "reference.path=/no/such/ckpt"])
    assert out.returncode != 0  # the driver reports the failure after every arm has finished
    assert "reference.path: no checkpoint at" in out.stderr
    runs = run_dirs(sweep_dir)
    assert len(runs) == 3
    status = {}
    for run in runs:
        cfg = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
        status[cfg["reference"]["name"]] = json.loads((run / "summary.json").read_text())
    assert status["student"]["status"] == "completed" and status["teacher"]["status"] == "completed"
    assert status["pre_rl"]["status"] == "failed" and "reference.path: no checkpoint at" in status["pre_rl"]["error"]
    index = subprocess.run([sys.executable, "sweeps/index.py", str(sweep_dir), "--json"], cwd=ROOT,
                           env={**os.environ, **slurm_env}, capture_output=True, text=True, timeout=60)
    assert index.returncode == 1  # non-zero: an arm failed
    rows = [json.loads(line) for line in index.stdout.splitlines()]
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "failed"]
    # SLURM agrees (hydra_plugins.gopd_launcher: the failed arm's process exits 1; Hydra's alone would exit 0)
    assert sorted((r["status"], r["slurm_state"]) for r in rows) == [
        ("completed", "COMPLETED"), ("completed", "COMPLETED"), ("failed", "FAILED")]


@pytest.mark.slow
@pytest.mark.parametrize("axis,n", [("alpha=2", 1), ("alpha=1,2,3,4", 4)], ids=["1 arm", "4 arms"])
def test_submit_script_returns_0_once_slurm_accepted_the_arms(slurm_env, toy_world_mini, tmp_path, axis, n):
    """A sweep of one arm is one SLURM job (no array): it counts as submitted too."""
    env = {**os.environ, **slurm_env}
    out = subprocess.run(["bash", "slurm/submit.sh", "+sweep=alpha_x_mix", "grpo_mix=0", axis, "+cluster=local", *MINI,
                          f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    job = re.search(r"submitted: job (\d+) \((\d+) arms\)", out.stdout)
    try:
        assert out.returncode == 0 and job, out.stdout + out.stderr
        assert int(job.group(2)) == n and f"sweep dir: {tmp_path / 'sweep'}" in out.stdout
        assert "sed:" not in out.stderr
    finally:
        if job:  # the arms are not what this checks: free the queue for the other tests
            subprocess.run(["scancel", job.group(1)], env=env, capture_output=True, timeout=60)
        log = re.search(r"log (multirun/submit-\S+\.log)", out.stdout)
        if log:
            (ROOT / log.group(1)).unlink(missing_ok=True)


# ------------------------------------------------------------------------------ requeue at the time limit
# More than the first segment can do before its signal (at most 50 s after the job starts, ~45 s of
# training at ~25 steps/s on an idle core: ~1100 steps), yet short enough for the second segment:
# ~2 min in all on an idle machine, ~3.5 min with both cores busy (~10 steps/s).
REQUEUE_STEPS = 1600


def _scontrol_job(slurm_env, job_id: str) -> dict:
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], env={**os.environ, **slurm_env},
                         capture_output=True, text=True, timeout=60)
    return dict(kv.split("=", 1) for kv in out.stdout.split() if "=" in kv) if out.returncode == 0 else {}


@pytest.mark.slow
def test_a_job_that_hits_its_time_limit_is_requeued_and_completes(slurm_env, toy_world_mini, tmp_path):
    """The path the profiles choose (README "Preemption and resume"): submitit's checkpoint/requeue
    through the Hydra launcher. One arm with SLURM's minimum limit (1 min) and more work than that:
    SLURM sends submitit's USR2 ahead of the limit, the run checkpoints at the next step boundary,
    submitit's handler requeues the job (`scontrol requeue`), and the requeued job resumes from the
    checkpoint in the same run directory and completes. The sweep dir holds `${now:...}`: a
    requeued job must land in the directory of its first segment.

    SLURM checks limits every 30 s, so the warning comes 10-40 s before the limit (20-50 s in),
    and the requeued job would get one too. Once the requeue is seen, the test raises the
    requeued job's limit so that its second segment finishes: exactly one requeue."""
    env = {**os.environ, **slurm_env}
    root = tmp_path / "requeue"
    overrides = [o for o in MINI if not o.startswith("trainer.max_steps=")] + [
        f"trainer.max_steps={REQUEUE_STEPS}", "checkpoint.every_n_steps=0",  # the only mid-run checkpoint: the signal's
        "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=10", "hydra.launcher.max_num_timeout=1"]
    cmd = [sys.executable, "src/train.py", "-m", "+cluster=local", *overrides,
           f"hydra.sweep.dir={root}/${{now:%H-%M-%S}}"]
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, job_id, job = time.monotonic() + 300, None, {}
        while driver.poll() is None and time.monotonic() < deadline:
            if job_id is None:
                found = list(root.glob("*/.submitit/*/*_submission.sh"))
                job_id = found[0].parent.name if found else None
            elif int((job := _scontrol_job(slurm_env, job_id)).get("Restarts", 0)) >= 1:
                break
            time.sleep(0.5)
        assert job.get("Restarts") == "1", (f"job {job_id} was not requeued ({job.get('JobState')}): finished before "
                                            f"SLURM's signal? raise REQUEUE_STEPS\n"
                                            + (tmp_path / "driver.log").read_text()[-3000:])
        raise_limit = ["scontrol", "update", f"JobId={job_id}", "TimeLimit=10"]  # only root / SLURM operators may
        if os.geteuid() != 0:  # raise a limit; cluster.sh itself needs root or sudo
            raise_limit = ["sudo", "-n", "env", f"SLURM_CONF={slurm_env['SLURM_CONF']}", *raise_limit]
        subprocess.run(raise_limit, env=env, check=True, timeout=60)
        driver.wait(timeout=420)
    finally:
        if driver.poll() is None:
            driver.kill()
            subprocess.run(["scancel", job_id or "0"], env=env, timeout=60)
    driver_log = (tmp_path / "driver.log").read_text()
    assert driver.returncode == 0, driver_log[-3000:]

    (sweep_dir,) = [p for p in root.iterdir() if p.is_dir()]  # both segments in one sweep dir, one run dir
    (run,) = run_dirs(sweep_dir)
    job_log = (sweep_dir / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
    # first segment: USR2 ahead of the limit, a checkpoint at the next step boundary, then submitit requeues
    saved = re.search(r"received SIGUSR2: checkpoint saved at step (\d+), stopping", job_log)
    assert saved, job_log[-3000:]
    step = int(saved.group(1))
    assert 0 < step < REQUEUE_STEPS
    assert "Caught signal SIGUSR2" in job_log and f"Requeued job {job_id}" in job_log, job_log[-3000:]
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == [f"step-{step:06d}",
                                                                            f"step-{REQUEUE_STEPS:06d}"]
    # second segment: resumes from that checkpoint and completes every step, each logged once
    assert f"resuming from {run / 'checkpoints' / f'step-{step:06d}'} (step {step})" in job_log, job_log[-3000:]
    assert len(re.findall(r"^submitit INFO .* - Starting with JobEnvironment", job_log, re.M)) == 2
    assert len(re.findall(r"^submitit INFO .* - Job completed successfully", job_log, re.M)) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == REQUEUE_STEPS
    with open(run / "metrics.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(REQUEUE_STEPS + 1))
    segments = sorted(run.glob("wandb/offline-run-*"))  # one W&B run (same id), resumed by the second segment
    assert len(segments) == 2 and len({p.name.rsplit("-", 1)[1] for p in segments}) == 1, segments
    # SLURM's view: the job ran twice, the first time ending in the requeue
    assert sacct_states(slurm_env, [job_id]) == {job_id: "COMPLETED"}
    history = subprocess.run(["sacct", "-n", "-X", "-P", "-D", "-o", "State", "-j", job_id], env=env,
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
    assert history == ["REQUEUED", "COMPLETED"], history
