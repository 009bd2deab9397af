"""gopd.bench.profile: exclusive region times by hand, and the profile of a real 2-step run whose
categories add up to the step."""

import re

import pytest

from gopd.bench import profile


def test_regions_charge_each_category_its_own_time(monkeypatch):
    ticks = iter([0.0, 1.0, 4.0, 5.0, 6.5, 10.0])  # A opens, B opens, B closes, C opens, C closes, A closes
    monkeypatch.setattr(profile.time, "process_time", lambda: next(ticks))
    r = profile.Regions()
    r.enter("A"), r.enter("B"), r.exit(), r.enter("C"), r.exit(), r.exit()
    assert r.take() == {"A": 10.0 - 3.0 - 1.5, "B": 3.0, "C": 1.5}
    assert r.take() == {}  # taken: the next step starts from zero


def test_a_region_re_entered_inside_itself_is_counted_once(monkeypatch):
    ticks = iter([0.0, 2.0, 3.0, 7.0])
    monkeypatch.setattr(profile.time, "process_time", lambda: next(ticks))
    r = profile.Regions()
    fn = r.wrap(lambda inner: inner() if inner else None, "forward")
    fn(lambda: fn(None))
    assert r.take() == {"forward": 7.0}


@pytest.mark.slow
def test_profile_of_a_real_run_adds_up_to_the_step(capsys):
    assert profile.main(["--steps", "2", "--warmup", "1", "teacher=rl_checkpoint", "estimator=full",
                         "rollout.prompts_per_step=4", "rollout.max_new_tokens=16"]) == 0
    out = capsys.readouterr().out
    assert ", model toy; overrides: teacher=rl_checkpoint" in out
    rows = dict(re.findall(r"^\| ([^|*]+?) \| (?:model|around) \| [\d.]+ \| [\d.]+ \| ([\d.]+)% \|$", out, re.M))
    for category in ("forward: student, sampling", "forward: student, with grad", "forward: teacher / reference, no grad",
                     "backward", "optimizer step", "vocabulary loss: LM heads + KL (chunked)", profile.GENERATE,
                     "prompts: render + tokenise", "verify answers", profile.BETWEEN):
        assert category in rows, (category, out)
    assert sum(map(float, rows.values())) == pytest.approx(100, abs=0.5)
    assert re.search(r"stages \(wall, perf/\*_s\): rollout \d+%, score \d+%, update \d+%", out)
    around = float(re.search(r"\*\*outside model compute\*\* \| \| \| [\d.]+ \| \*\*([\d.]+)%", out).group(1))
    beyond = float(re.search(r"\*\*outside forward, backward and generate\*\* \| \| \| [\d.]+ \| \*\*([\d.]+)%", out).group(1))
    assert beyond == pytest.approx(around - float(rows[profile.GENERATE]), abs=0.11)
