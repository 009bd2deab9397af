"""The compare tool on synthetic run directories with known numbers (no training: fast)."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gopd.tools.compare import main

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"

# Final held-out accuracy per (alpha, grpo_mix) arm and seed. Every run starts at 0.2 and the
# teacher scores 0.8, so the gap closed is (final - 0.2) / 0.6.
FINAL = {
    (1, 0): [0.3, 0.4, 0.5],          # the baseline: mean 0.4, std 0.1
    (2, 0): [0.5, 0.6, 0.7],          # mean 0.6, std 0.1: +0.2 +- sqrt(0.01/3 + 0.01/3)
    (1, 0.5): [0.4, 0.6, "failed"],   # seed 2 failed: mean 0.5, std sqrt(0.02)
    (2, 0.5): [0.9, "running", None], # seed 1 has no summary.json, seed 2 never got a directory
}


def config(alpha, mix, seed, pressure="full") -> dict:
    return {"alpha": alpha, "grpo_mix": mix, "seed": seed, "experiment": "toy_grid",
            "pressure": {"name": pressure, "clip": None}, "teacher": {"name": "hinted"},
            "reference": {"name": "student"}, "estimator": {"name": "token"},
            "trainer": {"max_steps": 4},
            # differs per seed in a real sweep (an interpolated tag): must not split the arm
            "logger": {"wandb": {"tags": [f"seed={seed}"], "mode": "offline"}}}


def metrics_rows(final: float, seed: int) -> list[dict]:
    """Training steps 0..3, then step 4: only the final eval (as metrics.csv has it: the eval at step s
    follows s training steps). Eval at steps 0 and 4 (empty cells between). A training step takes
    (1 + seed) + 0.5 + 0.25 * step seconds, so the eval at step 4 is at 7.5 + 4 * seed training seconds."""
    rows = []
    for step in range(5):
        at_eval = step in (0, 4)
        train = step < 4
        rows.append({"step": step,
                     "eval/accuracy": (0.2 if step == 0 else final) if at_eval else "",
                     "eval/response_len": (40 if step == 0 else 30 + seed) if at_eval else "",
                     "train/response_len": 40 - step,
                     "opd/pos_mass": 0.1 * (step + 1) + 0.1 * seed,   # run mean 0.3 + 0.1 seed
                     "opd/neg_mass": 0.01 * seed,                     # run mean 0.01 seed
                     "perf/rollout_s": 1.0 + seed if train else "",
                     "perf/score_s": 0.5 if train else "",
                     "perf/update_s": 0.25 * step if train else ""})
    return rows


def summary(final: float, seed: int, *, with_gap: bool = True) -> dict:
    out = {"status": "completed", "steps": 4, "eval/accuracy_initial": 0.2, "eval/accuracy_final": final,
           "teacher/accuracy": 0.8, "eval/response_len_initial": 40.0, "eval/response_len_final": 30.0 + seed,
           "perf/tokens_per_s": 1000.0, "wall_s": 10.0 * (seed + 1)}
    if with_gap:
        out["eval/gap_closed"] = (final - 0.2) / 0.6
    return out


def make_run(run_dir: Path, cfg: dict, num: int, summ: dict | None, rows: list[dict] | None) -> Path:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    if rows is not None:
        with open(run_dir / "metrics.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if summ is not None:
        (run_dir / "summary.json").write_text(json.dumps(summ))
    return run_dir


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A 2 x 2 x 3-seed sweep directory as Hydra lays it out, with one failed run, one without
    summary.json and one job that never started."""
    sweep = tmp_path / "multirun" / "toy_grid" / "2026-11-24_10-00-00"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "params": {"alpha": "1,2", "grpo_mix": "0,0.5"}},
        "overrides": {"task": ["+sweep=alpha_x_mix", "seed=0,1,2"]}}}))
    for ia, alpha in enumerate((1, 2)):
        for im, mix in enumerate((0, 0.5)):
            for seed, final in enumerate(FINAL[(alpha, mix)]):
                num = ia * 6 + im * 3 + seed  # Hydra's order: alpha, grpo_mix, then seed
                run_dir = sweep / f"{num}_alpha={alpha},grpo_mix={mix},seed={seed}"
                cfg = config(alpha, mix, seed)
                if final is None:
                    continue
                if final == "failed":
                    make_run(run_dir, cfg, num, {"status": "failed", "steps": 0, "error": "boom: non-finite loss"},
                             None)
                elif final == "running":
                    make_run(run_dir, cfg, num, None, metrics_rows(0.5, seed)[:2])
                else:  # the baseline's runs have no eval/gap_closed: recomputed from the accuracies
                    make_run(run_dir, cfg, num, summary(final, seed, with_gap=(alpha, mix) != (1, 0)),
                             metrics_rows(final, seed))
    return sweep


def compare(tmp_path, monkeypatch, *args) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main([*map(str, args)]) == 0
    return tmp_path / "results"


def arm_rows(out: Path) -> dict:
    with open(out / "table.csv") as f:
        return {(r["alpha"], r["grpo_mix"]): r for r in csv.DictReader(f)}


def test_table_means_stds_and_baseline_delta(sweep, tmp_path, monkeypatch):
    out = compare(tmp_path, monkeypatch, sweep, "--baseline", "alpha=1,grpo_mix=0", "--name", "grid") / "grid"
    rows = arm_rows(out)
    assert set(rows) == {("1", "0"), ("1", "0.5"), ("2", "0"), ("2", "0.5")}  # tags/seed did not split arms
    close = lambda got, want: math.isclose(float(got), want, rel_tol=1e-5, abs_tol=1e-9)  # noqa: E731

    base, two, mix, lone = rows["1", "0"], rows["2", "0"], rows["1", "0.5"], rows["2", "0.5"]
    assert base["baseline"] == "True" and base["n_seeds"] == "3" and base["seeds"] == "0 1 2"
    assert close(base["eval/accuracy_final"], 0.4) and close(base["eval/accuracy_final_std"], 0.1)
    assert close(base["eval/gap_closed"], (0.4 - 0.2) / 0.6)  # recomputed: the summary has no gap
    assert close(base["delta_vs_baseline"], 0.0) and base["delta_se"] == ""
    assert close(base["opd/pos_mass"], 0.4) and close(base["opd/pos_mass_std"], 0.1)  # runs: .3 .4 .5
    assert close(base["opd/neg_mass"], 0.01)
    assert close(base["eval/response_len_initial"], 40) and close(base["eval/response_len_final"], 31)
    assert close(base["wall_s"], 20) and base["steps"] == "4"
    assert close(base["train_s"], 11.5) and close(base["train_s_std"], 4.0)  # 7.5 + 4 seed for seeds 0 1 2

    assert close(two["eval/accuracy_final"], 0.6) and close(two["eval/accuracy_final_std"], 0.1)
    assert close(two["delta_vs_baseline"], 0.2) and close(two["delta_se"], math.sqrt(0.02 / 3))
    assert close(two["eval/gap_closed"], 2 / 3) and close(two["eval/gap_closed_std"], 1 / 6)

    assert mix["n_seeds"] == "2" and mix["not_completed"] == "1"  # the failed seed is not pooled
    assert close(mix["eval/accuracy_final"], 0.5) and close(mix["eval/accuracy_final_std"], math.sqrt(0.02))
    assert close(mix["delta_vs_baseline"], 0.1)
    assert lone["n_seeds"] == "1" and lone["eval/accuracy_final_std"] == "" and lone["delta_se"] == ""
    assert close(lone["delta_vs_baseline"], 0.5)

    md = (out / "table.md").read_text()
    assert "| 1 | 0 | 3 | 4 | 0.200 | 0.400 ± 0.100 | baseline | 0.33 ± 0.17 | 40.0 → 31.0 |" in md
    assert "| 2 | 0 | 3 | 4 | 0.200 | 0.600 ± 0.100 | +0.200 ± 0.082 |" in md
    assert "python -m gopd.tools.compare" in md and "--baseline alpha=1,grpo_mix=0" in md  # how to remake it


def test_failed_missing_and_never_started_runs_are_listed(sweep, tmp_path, monkeypatch, capsys):
    out = compare(tmp_path, monkeypatch, sweep, "--name", "grid") / "grid"
    md = (out / "table.md").read_text()
    listed = md.split("## Runs not in the numbers (3)", 1)[1]
    assert "alpha=1 grpo_mix=0.5 | 2 | failed: boom: non-finite loss |" in listed
    assert "alpha=2 grpo_mix=0.5 | 1 | no summary.json" in listed
    assert "job 11 | alpha=2,grpo_mix=0.5,seed=2 | 2 | no run directory" in listed  # multirun.yaml said 12 jobs
    assert "3 run(s) not in the numbers" in capsys.readouterr().out
    with open(out / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 11 and sum(r["problem"] != "" for r in runs) == 2


def test_plots_are_written_and_non_empty(sweep, tmp_path, monkeypatch):
    out = compare(tmp_path, monkeypatch, sweep, "--name", "grid") / "grid"
    for name in ("accuracy.png", "accuracy_time.png", "response_len.png", "length_accuracy.png", "heatmap.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG and len(data) > 10_000, name


def step_times():
    """Steps 0..4 trained, step 5 only evaluated. Seconds per step: 1.75, 2.75, 1.0, 2.0, 1.75."""
    import pandas as pd

    return pd.DataFrame({"perf/rollout_s": [1.0, 2.0, 0.5, 1.5, 1.0, None],
                         "perf/score_s": [0.25, 0.25, 0.25, 0.25, 0.25, None],
                         "perf/update_s": [0.5, 0.5, 0.25, 0.25, 0.5, None],
                         "eval/accuracy": [0.1, None, 0.3, None, None, 0.5]},
                        index=pd.Index([0.0, 1.0, 2.0, 3.0, 4.0, 5.0], name="step"))  # as read_metrics reads it


def test_train_seconds_before_each_eval():
    from gopd.tools.compare import Run, eval_times, train_s, train_seconds_before

    df = step_times()
    # eval at step s: the sum over steps 0..s-1; step 0's at 0
    assert train_seconds_before(df, [0, 2, 5]) == [0.0, 1.75 + 2.75, 1.75 + 2.75 + 1.0 + 2.0 + 1.75]
    assert train_seconds_before(df, [1, 4]) == [1.75, 7.5]
    run = Run(Path("r"), {}, {"steps": 5}, df)
    assert eval_times(run) == [(0.0, 0.1), (4.5, 0.3), (9.25, 0.5)]
    assert train_s(run) == 9.25
    # a step without one of its timings, or without a row: unknown from there on, known before
    gap = df.copy()
    gap.loc[3.0, "perf/score_s"] = float("nan")
    assert train_seconds_before(gap, [0, 2, 5])[:2] == [0.0, 4.5] and math.isnan(train_seconds_before(gap, [5])[0])
    assert math.isnan(train_seconds_before(df.drop(index=1.0), [2])[0])
    assert eval_times(Run(Path("r"), {}, {"steps": 5}, gap)) is None and math.isnan(train_s(Run(Path("r"), {},
                                                                                                 {"steps": 5}, gap)))
    no_perf = df.drop(columns=["perf/update_s"])
    assert train_seconds_before(no_perf, [0])[0] == 0.0 and math.isnan(train_seconds_before(no_perf, [2])[0])


def test_interpolate_seeds_onto_common_times_up_to_the_shortest():
    from gopd.tools.compare import interpolate_seeds

    a = [(0.0, 0.2), (4.0, 0.4), (8.0, 0.6)]
    b = [(0.0, 0.2), (10.0, 0.2)]            # longer: cut at 8, a's end; never extrapolated
    grid, mean, std = interpolate_seeds([a, b], n=5)
    assert grid.tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert mean.tolist() == pytest.approx([0.2, 0.25, 0.3, 0.35, 0.4])
    assert std.tolist() == pytest.approx([0.0, *(d / math.sqrt(2) for d in (0.1, 0.2, 0.3, 0.4))])  # sample std
    grid, mean, std = interpolate_seeds([a], n=3)
    assert grid.tolist() == [0.0, 4.0, 8.0] and mean.tolist() == pytest.approx([0.2, 0.4, 0.6])
    assert all(math.isnan(v) for v in std)


def test_runs_without_step_timings_are_noted_and_left_out_of_the_time_plot(tmp_path, monkeypatch):
    runs = tmp_path / "outputs" / "toy_grid"
    for seed in range(2):
        make_run(runs / f"ok_{seed}", config(1, 0, seed), 0, summary(0.5, seed), metrics_rows(0.5, seed))
    old = [{k: v for k, v in row.items() if not k.startswith("perf/")} for row in metrics_rows(0.5, 2)]
    make_run(runs / "old_2", config(1, 0, 2), 0, summary(0.5, 2), old)  # logged before perf/* existed
    out = compare(tmp_path, monkeypatch, runs) / "toy_grid"
    with open(out / "runs.csv") as f:
        train = {Path(r["run_dir"]).name: r["train_s"] for r in csv.DictReader(f)}
    assert train == {"ok_0": "7.5", "ok_1": "11.5", "old_2": ""}
    with open(out / "table.csv") as f:
        row = next(csv.DictReader(f))
    assert row["n_seeds"] == "3" and math.isclose(float(row["train_s"]), 9.5)  # over the seeds with timings
    md = (out / "table.md").read_text()
    assert "| train (s) | wall (s) |" in md and "| 10 | 20 |" in md  # wall_s: 10, 20, 30
    assert "all runs: 1 completed run(s) without eval/accuracy or without perf/rollout_s" in md and "old_2" in md
    assert (out / "accuracy_time.png").read_bytes()[:8] == PNG


def test_group_name_baseline_and_no_heatmap_without_both_axes(tmp_path, monkeypatch):
    runs = tmp_path / "outputs" / "pressure"
    finals = {"full": [0.3, 0.5], "positive": [0.6, 0.8]}
    for pressure, values in finals.items():
        for seed, final in enumerate(values):
            make_run(runs / f"{pressure}_{seed}", config(2, 0, seed, pressure), 0, summary(final, seed),
                     metrics_rows(final, seed))
    out = compare(tmp_path, monkeypatch, runs, "--baseline", "pressure=full") / "toy_grid"  # the experiment
    with open(out / "table.csv") as f:
        rows = {r["pressure"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["full", "positive"] and math.isclose(float(rows["positive"]["delta_vs_baseline"]), 0.3)
    assert (out / "accuracy.png").stat().st_size > 0 and not (out / "heatmap.png").exists()
    assert "None: all 4 runs completed" in (out / "table.md").read_text()


# Per-domain held-out accuracy (eval/accuracy/<domain>) at the first and last evaluation (steps 0 and 4),
# per (alpha, seed); None: the run logs no per-domain columns.
DOMAINS = {(1, 0): {"add": (0.3, 0.5), "mul": (0.1, 0.1)},  # alpha=1: add final 0.5, 0.7 -> 0.6 ± sqrt(0.02)
           (1, 1): {"add": (0.3, 0.7), "mul": (0.1, 0.3)},  #          mul final 0.1, 0.3 -> 0.2 ± sqrt(0.02)
           (2, 0): {"add": (0.3, 0.9), "mul": (0.1, 0.4)},  # alpha=2: one seed with domains, no std
           (2, 1): None,
           (3, 0): None, (3, 1): None}                       # alpha=3: none, blank


def test_per_domain_final_accuracy(tmp_path, monkeypatch):
    runs = tmp_path / "outputs" / "domains"
    for (alpha, seed), domains in DOMAINS.items():
        rows = metrics_rows(0.5, seed)
        for row in rows:
            for d, (start, final) in (domains or {}).items():
                row[f"eval/accuracy/{d}"] = {0: start, 4: final}.get(row["step"], "")  # only at evaluations
        make_run(runs / f"a{alpha}_{seed}", config(alpha, 0, seed), 0, summary(0.5, seed), rows)
    out = compare(tmp_path, monkeypatch, runs, "--name", "domains") / "domains"
    close = lambda got, want: math.isclose(float(got), want, rel_tol=1e-5)  # noqa: E731
    with open(out / "table.csv") as f:
        arms = {r["alpha"]: r for r in csv.DictReader(f)}
    one, two, three = arms["1"], arms["2"], arms["3"]
    assert close(one["eval/accuracy/add_final"], 0.6) and close(one["eval/accuracy/add_final_std"], math.sqrt(0.02))
    assert close(one["eval/accuracy/mul_final"], 0.2) and close(one["eval/accuracy/mul_final_std"], math.sqrt(0.02))
    assert close(two["eval/accuracy/add_final"], 0.9) and two["eval/accuracy/add_final_std"] == ""
    assert close(two["eval/accuracy/mul_final"], 0.4)
    assert all(three[f"eval/accuracy/{d}_final{s}"] == "" for d in ("add", "mul") for s in ("", "_std"))
    assert "eval/accuracy/add_initial" not in one  # the start value: runs.csv only

    with open(out / "runs.csv") as f:
        per_run = {(r["arm"], r["seed"]): r for r in csv.DictReader(f)}
    first = per_run["alpha=1", "1"]
    assert close(first["eval/accuracy/add_initial"], 0.3) and close(first["eval/accuracy/add_final"], 0.7)
    assert close(first["eval/accuracy/mul_initial"], 0.1) and close(first["eval/accuracy/mul_final"], 0.3)
    assert all(per_run["alpha=2", "1"][f"eval/accuracy/{d}_{w}"] == ""
               for d in ("add", "mul") for w in ("initial", "final"))

    md = (out / "table.md").read_text()
    assert "| acc start | acc final | acc final add | acc final mul | Δ vs baseline" in md
    assert "| 0.500 ± 0.000 | 0.600 ± 0.141 | 0.200 ± 0.141 |" in md
    assert "| 0.500 ± 0.000 | 0.900 | 0.400 |" in md and "| 0.500 ± 0.000 | – | – |" in md


def test_no_domain_columns_without_per_domain_metrics(sweep, tmp_path, monkeypatch):
    out = compare(tmp_path, monkeypatch, sweep, "--name", "grid") / "grid"
    for name in ("table.csv", "runs.csv"):
        assert "eval/accuracy/" not in (out / name).read_text().splitlines()[0]
    assert "acc final add" not in (out / "table.md").read_text()


def test_unreadable_runs_are_listed(tmp_path, monkeypatch):
    runs = tmp_path / "outputs" / "toy_grid"
    for seed in range(2):
        make_run(runs / f"ok_{seed}", config(1, 0, seed), 0, summary(0.5, seed), metrics_rows(0.5, seed))
    make_run(runs / "bad_summary", config(1, 0, 2), 0, None, metrics_rows(0.5, 2))
    (runs / "bad_summary" / "summary.json").write_text('{"status": "compl')  # cut off mid-write
    make_run(runs / "bad_config", config(1, 0, 3), 0, summary(0.5, 3), metrics_rows(0.5, 3))
    (runs / "bad_config" / ".hydra" / "config.yaml").write_text("alpha: [1\n")
    make_run(runs / "bad_metrics", config(1, 0, 4), 0, summary(0.5, 4), None)  # no metrics.csv
    md = (compare(tmp_path, monkeypatch, runs) / "toy_grid" / "table.md").read_text()
    listed = md.split("## Runs not in the numbers (3)", 1)[1]
    assert "bad_config | ? |  | unreadable .hydra/config.yaml" in listed
    assert "bad_metrics | all runs | 4 | no metrics.csv" in listed  # no key varies: one arm
    assert "bad_summary | all runs | 2 | unreadable summary.json" in listed


def test_baseline_per_slice_of_the_other_arm_keys(sweep, tmp_path, monkeypatch):
    """alpha=1 names one arm per grpo_mix: each grpo_mix's alpha=2 arm is measured against it."""
    out = compare(tmp_path, monkeypatch, sweep, "--baseline", "alpha=1", "--name", "grid") / "grid"
    rows = arm_rows(out)
    assert [k for k, r in rows.items() if r["baseline"] == "True"] == [("1", "0"), ("1", "0.5")]
    assert rows["2", "0"]["baseline_arm"] == "alpha=1 grpo_mix=0"
    assert math.isclose(float(rows["2", "0"]["delta_vs_baseline"]), 0.6 - 0.4)
    assert rows["2", "0.5"]["baseline_arm"] == "alpha=1 grpo_mix=0.5"
    assert math.isclose(float(rows["2", "0.5"]["delta_vs_baseline"]), 0.9 - 0.5)  # not 0.9 - 0.4
    assert "baseline: alpha=1 per grpo_mix (each arm against the alpha=1 arm with the same grpo_mix)" in \
        (out / "table.md").read_text()


# The estimators sweep: teacher x estimator, 2 seeds. Each teacher and estimator is a config group
# whose other keys come with its name (hinted has weights, ema_decay, hint_*; rl_checkpoint a path;
# topk a k), so they differ between arms without being arm keys.
TEACHERS = {"hinted": {"name": "hinted", "weights": "initial", "ema_decay": 0.99, "hint_field": "hint_answer",
                       "hint_template": "{problem}\nHint: {hint}"},
            "rl_checkpoint": {"name": "rl_checkpoint", "path": "toy://teacher"}}
ESTIMATORS = {"token": {"name": "token"}, "topk": {"name": "topk", "k": 32}, "full": {"name": "full"}}
EST_FINAL = {("hinted", "token"): [0.3, 0.5], ("hinted", "topk"): [0.2, 0.4], ("hinted", "full"): [0.5, 0.7],
             ("rl_checkpoint", "token"): [0.6, 0.6], ("rl_checkpoint", "topk"): [0.7, 0.9],
             ("rl_checkpoint", "full"): [0.4, 0.6]}


def est_config(teacher: dict, estimator: str, seed: int) -> dict:
    return {**config(1, 0, seed), "experiment": "estimators", "teacher": dict(teacher),
            "estimator": dict(ESTIMATORS[estimator])}


@pytest.fixture
def estimators(tmp_path) -> Path:
    runs = tmp_path / "multirun" / "estimators"
    for (teacher, estimator), finals in EST_FINAL.items():
        for seed, final in enumerate(finals):
            make_run(runs / teacher / f"{estimator}_{seed}", est_config(TEACHERS[teacher], estimator, seed), 0,
                     summary(final, seed), metrics_rows(final, seed))
    return runs


def assert_tables_whole(md: str) -> None:
    """Every table in table.md: each row on one line, with as many (unescaped) | as its header."""
    for block in md.split("\n\n"):
        rows = block.splitlines()
        if rows and rows[0].startswith("|"):
            cells = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
            assert all(r.startswith("|") and r.endswith("|") for r in rows) and len(cells) == 1, block


def test_group_keys_implied_by_the_group_name_are_not_arm_keys(estimators, tmp_path, monkeypatch):
    out = compare(tmp_path, monkeypatch, estimators, "--name", "est") / "est"
    with open(out / "table.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["teacher", "estimator", "arm"]  # no teacher.path, estimator.k, ... columns
    assert [r["arm"] for r in rows] == [f"teacher={t} estimator={e}" for t in ("hinted", "rl_checkpoint")
                                        for e in ("full", "token", "topk")]
    md = (out / "table.md").read_text()
    assert "12 runs, 6 arms by teacher, estimator;" in md and "other config" not in md and "\\n" not in md
    assert "| hinted | topk | 2 | 4 | 0.200 | 0.300 ± 0.141 |" in md
    assert_tables_whole(md)
    data = (out / "accuracy_time.png").read_bytes()
    assert data[:8] == PNG and len(data) > 10_000


def test_accuracy_time_panels_one_per_teacher_estimators_as_lines(estimators):
    from gopd.tools.compare import build, time_panels

    panels = time_panels(build([estimators]))
    assert [title for title, _ in panels] == ["teacher=hinted", "teacher=rl_checkpoint"]
    for _, lines in panels:  # an estimator has the same colour in both panels
        assert [(i, label) for i, label, _ in lines] == [(0, "estimator=full"), (1, "estimator=token"),
                                                         (2, "estimator=topk")]


def test_group_key_varying_within_one_name_is_an_arm_key_shown_on_one_line(estimators, tmp_path, monkeypatch):
    """teacher.path varies among rl_checkpoint runs, the hint template among hinted runs: both are
    arm keys, shown only for the teacher they vary within; a template's newline and | never break a row."""
    long = "{problem}\n| Hint |\nNot the answer, just a nudge: {hint}"
    for seed, final in enumerate((0.8, 1.0)):
        make_run(estimators / "other" / f"path_{seed}", est_config({**TEACHERS["rl_checkpoint"], "path": "toy://b"},
                 "token", seed), 0, summary(final, seed), metrics_rows(final, seed))
        make_run(estimators / "other" / f"template_{seed}", est_config({**TEACHERS["hinted"], "hint_template": long},
                 "token", seed), 0, summary(final, seed), metrics_rows(final, seed))
    out = compare(tmp_path, monkeypatch, estimators, "--name", "est") / "est"
    with open(out / "table.csv") as f:
        rows = {r["arm"]: r for r in csv.DictReader(f)}
    escaped = long.replace("\n", "\\n")  # the label keeps its start and end: 26 + … + 13 characters
    assert escaped[:26] + "…" + escaped[-13:] == "{problem}\\n| Hint |\\nNot t…nudge: {hint}"
    assert set(rows) == {
        "teacher=hinted estimator=full teacher.hint_template={problem}\\nHint: {hint}",
        "teacher=hinted estimator=token teacher.hint_template={problem}\\nHint: {hint}",
        "teacher=hinted estimator=topk teacher.hint_template={problem}\\nHint: {hint}",
        "teacher=hinted estimator=token teacher.hint_template={problem}\\n| Hint |\\nNot t…nudge: {hint}",
        "teacher=rl_checkpoint estimator=full teacher.path=toy://teacher",
        "teacher=rl_checkpoint estimator=token teacher.path=toy://teacher",
        "teacher=rl_checkpoint estimator=topk teacher.path=toy://teacher",
        "teacher=rl_checkpoint estimator=token teacher.path=toy://b"}
    # the CSV keeps the whole value, escaped onto one line
    assert {r["teacher.hint_template"] for r in rows.values()} == {"{problem}\\nHint: {hint}", escaped, "null"}
    md = (out / "table.md").read_text()
    assert "| rl_checkpoint | token | teacher.path=toy://b | 2 | 4 | 0.200 | 0.900 ± 0.141 |" in md
    # shortened, escaped, and its | not taken for a column
    assert "| hinted | token | teacher.hint_template={problem}\\n\\| Hint \\|\\nNot t…nudge: {hint} | 2 |" in md
    assert_tables_whole(md)
    with open(out / "runs.csv") as f:
        assert len(f.read().strip().splitlines()) == 1 + 16  # a header and one line per run

    # a teacher as the baseline sets all of the group: hinted's template is no slice key, each
    # estimator's arms are measured against rl_checkpoint (path toy://teacher) with that estimator
    out = compare(tmp_path, monkeypatch, estimators, "--baseline", "teacher=rl_checkpoint,teacher.path=toy://teacher",
                  "--name", "est", "--force") / "est"
    with open(out / "table.csv") as f:
        rows = {r["arm"]: r for r in csv.DictReader(f)}
    long_label = "teacher=hinted estimator=token teacher.hint_template={problem}\\n| Hint |\\nNot t…nudge: {hint}"
    hint_long = rows[long_label]
    assert hint_long["baseline_arm"] == "teacher=rl_checkpoint estimator=token teacher.path=toy://teacher"
    assert math.isclose(float(hint_long["delta_vs_baseline"]), 0.9 - 0.6)
    assert math.isclose(float(rows["teacher=rl_checkpoint estimator=token teacher.path=toy://b"]["delta_vs_baseline"]),
                        0.9 - 0.6)
    assert math.isclose(float(rows["teacher=hinted estimator=topk teacher.hint_template={problem}\\nHint: {hint}"]
                              ["delta_vs_baseline"]), 0.3 - 0.8)


def test_estimator_baseline_per_teacher(estimators, tmp_path, monkeypatch):
    """--baseline estimator=token with two teachers: each teacher's arms against its own token arm."""
    out = compare(tmp_path, monkeypatch, estimators, "--baseline", "estimator=token", "--name", "est") / "est"
    with open(out / "table.csv") as f:
        rows = {(r["teacher"], r["estimator"]): r for r in csv.DictReader(f)}
    close = lambda got, want: math.isclose(float(got), want, rel_tol=1e-5, abs_tol=1e-9)  # noqa: E731
    want = {  # (delta, its standard error) by hand from EST_FINAL; sd of [a, a + 0.2] is sqrt(0.02)
        ("hinted", "topk"): (0.3 - 0.4, math.sqrt(0.02 / 2 + 0.02 / 2)),
        ("hinted", "full"): (0.6 - 0.4, math.sqrt(0.02 / 2 + 0.02 / 2)),
        ("rl_checkpoint", "topk"): (0.8 - 0.6, math.sqrt(0.02 / 2 + 0)),     # not 0.8 - 0.4 (hinted's token)
        ("rl_checkpoint", "full"): (0.5 - 0.6, math.sqrt(0.02 / 2 + 0))}
    for (teacher, estimator), (d, se) in want.items():
        row = rows[teacher, estimator]
        assert row["baseline"] == "False" and row["baseline_arm"] == f"teacher={teacher} estimator=token"
        assert close(row["delta_vs_baseline"], d) and close(row["delta_se"], se), (teacher, estimator)
    for teacher in TEACHERS:
        base = rows[teacher, "token"]
        assert base["baseline"] == "True" and close(base["delta_vs_baseline"], 0) and base["delta_se"] == ""
    md = (out / "table.md").read_text()
    assert "baseline: estimator=token per teacher (each arm against the estimator=token arm with the same teacher)" \
        in md
    assert "| rl_checkpoint | topk | 2 | 4 | 0.200 | 0.800 ± 0.141 | +0.200 ± 0.100 |" in md
    assert "| hinted | topk | 2 | 4 | 0.200 | 0.300 ± 0.141 | -0.100 ± 0.141 |" in md
    assert md.count("| baseline |") == 2


def test_values_shortened_alike_keep_their_whole_text_in_the_label():
    """Two templates with the same start and end: shortened they would be one label, so neither is."""
    from gopd.tools.compare import Run, group_arms

    a, b = ("{problem}\n" + "x" * 30 + middle + "y" * 30 + "\n{hint}" for middle in ("first", "second"))
    runs = [Run(Path(f"run_{i}"), {"teacher.name": "hinted", "teacher.hint_template": t}, {})
            for i, t in enumerate((a, b))]
    labels = [arm.label for arm in group_arms(runs, ["teacher.hint_template"])]
    assert labels == ["teacher.hint_template=" + t.replace("\n", "\\n") for t in (a, b)]
    alone = group_arms(runs[:1], ["teacher.hint_template"])[0].label  # no clash: 26 + … + 13 characters
    assert alone == "teacher.hint_template={problem}\\n" + "x" * 15 + "…" + "y" * 5 + "\\n{hint}"


@pytest.mark.parametrize("baseline,remove,message", [
    # k=null is token and full: two baseline arms for each teacher
    ("estimator.k=null", None, "matches 2 arms (teacher=hinted estimator=full; teacher=hinted estimator=token) "
                               "in the slice teacher=hinted (it must match one arm per combination of teacher"),
    # rl_checkpoint's token runs are gone: its arms have no token arm to be measured against
    ("estimator=token", "rl_checkpoint/token_*", "matches no arm in the slice teacher=rl_checkpoint"),
    # a second hint template among hinted runs, with token only: no topk arm for it
    ("estimator=topk", None, "matches no arm in the slice teacher=hinted teacher.hint_template={problem}\\n\\nHint:\\n"
                             "{hint} (it must match one arm per combination of teacher, teacher.hint_template;"),
])
def test_baseline_slice_without_exactly_one_arm_is_one_line_and_exit_2(estimators, tmp_path, baseline, remove,
                                                                       message):
    import shutil

    for run in estimators.glob(remove or "-"):
        shutil.rmtree(run)
    if baseline == "estimator=topk":  # the hint template varies among hinted runs: a slice key
        template = {**TEACHERS["hinted"], "hint_template": "{problem}\n\nHint:\n{hint}"}
        make_run(estimators / "other" / "template_0", est_config(template, "token", 0), 0, summary(0.5, 0),
                 metrics_rows(0.5, 0))
    proc = cli(tmp_path, estimators, "--baseline", baseline)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --baseline {baseline} ") and message in lines[0], lines
    assert not (tmp_path / "results").exists()


def test_wandb_run_gets_the_summary_and_a_failed_state(monkeypatch):
    """What run.py hands W&B at the end of a run: summary.json's keys, and a failed state if it failed."""
    import types

    import wandb

    from gopd.run import _finish_wandb

    exits = []
    monkeypatch.setattr(wandb, "finish", lambda exit_code=None, **_: exits.append(exit_code))
    for status, code in (("failed", 1), ("completed", 0)):
        experiment = types.SimpleNamespace(summary={})
        _finish_wandb(types.SimpleNamespace(_experiment=experiment, experiment=experiment),
                      {"status": status, "steps": 3, "wall_s": 1.5, "eval/gap_closed": None})
        assert experiment.summary == {"status": status, "steps": 3, "wall_s": 1.5} and exits[-1] == code


def cli(cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gopd.tools.compare", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["empty"], "no run directories"),
    (["nowhere"], "no such directory: nowhere"),
    (["SWEEP", "--baseline", "lr=1"], "unknown config key 'lr'"),
    (["SWEEP", "--baseline", "pressure=full"], "matches 4 arms"),  # sets no arm key: every arm, no slices
    (["SWEEP", "--baseline", "alpha=7,grpo_mix=0"], "matches no arm"),
    (["SWEEP", "--baseline", "seed=0"], "seed is pooled"),
])
def test_bad_input_is_one_line_and_exit_2(sweep, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    proc = cli(tmp_path, *[str(sweep) if a == "SWEEP" else a for a in args])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert not (tmp_path / "results").exists()  # nothing written


def test_help_documents_every_flag():
    proc = cli(ROOT, "--help")
    assert proc.returncode == 0
    for flag in ("--baseline", "--name", "--force", "--ignore", "--smooth"):
        assert flag in proc.stdout


def test_table_names_the_world_and_the_code_of_its_runs(sweep, tmp_path, monkeypatch):
    """Each table says which toy world and which commit its runs came from (summary.json)."""
    for i, f in enumerate(sorted(sweep.glob("*/summary.json"))):
        s = json.loads(f.read_text())
        s["world"] = "full@a8cfa68ab716845c"
        if i % 2 == 0:
            s["code"] = "0123456789ab"
        f.write_text(json.dumps(s))
    out = compare(tmp_path, monkeypatch, sweep, "--name", "grid") / "grid"
    n = len(list(sweep.glob("*/summary.json")))
    lines = (out / "table.md").read_text().splitlines()
    world = next(line for line in lines if line.startswith("World: "))
    assert world.startswith("World: `full@a8cfa68ab716845c` (")  # the run without summary.json recorded none
    assert f"Code: `0123456789ab` ({(n + 1) // 2} runs), not recorded (" in world
    with open(out / "runs.csv") as fh:
        runs = list(csv.DictReader(fh))
    assert {r["world"] for r in runs if r["status"] == "completed"} == {"full@a8cfa68ab716845c"}


def test_an_earlier_comparison_is_never_replaced_without_force(sweep, tmp_path, monkeypatch, capsys):
    first = compare(tmp_path, monkeypatch, sweep, "--name", "grid")
    before = (first / "grid" / "table.md").read_bytes()
    (first / "grid" / "note.txt").write_text("kept")
    compare(tmp_path, monkeypatch, sweep, "--name", "grid")
    out = capsys.readouterr().out
    assert "results/grid/ already holds a comparison (--force replaces it): writing results/grid_2/" in out
    assert (first / "grid_2" / "table.md").exists() and (first / "grid" / "table.md").read_bytes() == before
    compare(tmp_path, monkeypatch, sweep, "--name", "grid")
    assert (first / "grid_3" / "table.md").exists()
    compare(tmp_path, monkeypatch, sweep, "--name", "grid", "--force")
    assert "comparison in results/grid/" in capsys.readouterr().out and not (first / "grid_4").exists()
    assert (first / "grid" / "note.txt").read_text() == "kept"  # --force replaces the comparison's own files only
    compare(tmp_path, monkeypatch, sweep, "--name", "study/grid")
    compare(tmp_path, monkeypatch, sweep, "--name", "study/grid", "--force")
    assert "already holds" not in capsys.readouterr().out  # a nested name is replaced in place, said once


def test_plots_tell_arms_apart_by_more_than_colour_and_show_where_they_started():
    from matplotlib.figure import Figure

    from gopd.tools.compare import Arm, Run
    from gopd.tools.compare.plots import arm_styles, reference_lines

    def run(teacher_acc, start):
        return Run(Path("x"), {}, {"teacher/accuracy": teacher_acc, "eval/accuracy_initial": start}, None, None)

    arms = [Arm((p, t), f"{p} {t}", [run(0.6, 0.1), run(0.8, 0.3)]) for p in ("full", "positive", "rlrt")
            for t in ("hinted", "rl_checkpoint")]
    styles = arm_styles(arms)
    assert len({(s["color"], s["linestyle"]) for s in styles}) == 6  # every arm its own look
    assert styles[0]["color"] == styles[1]["color"] and styles[0]["linestyle"] != styles[1]["linestyle"]  # teacher: dash
    assert styles[0]["linestyle"] == styles[2]["linestyle"] and styles[0]["color"] != styles[2]["color"]  # pressure: colour
    ax = Figure().add_subplot()
    reference_lines(ax, arms)
    assert [line.get_label() for line in ax.get_lines()] == ["teacher (0.700)", "student at start (0.200)"]
    assert [line.get_ydata()[0] for line in ax.get_lines()] == pytest.approx([0.7, 0.2])


def test_metrics_csv_of_older_runs_reads_under_the_new_names(tmp_path):
    from gopd.tools.compare.runs import read_metrics

    (tmp_path / "metrics.csv").write_text("step,loss,grad_norm,train/reward\n0,1.5,0.25,0.5\n")
    df, problem = read_metrics(tmp_path)
    assert problem is None and list(df.columns) == ["train/loss", "train/grad_norm", "train/reward"]
    assert df.loc[0, "train/loss"] == 1.5
