"""gopd.perf: a step's stages timed back to back, a part timed inside its stage, and no memory
figures without a GPU."""

import time

import torch

from gopd.perf import StageClock


def test_stages_tile_the_step_and_a_part_stays_inside_its_stage():
    clock = StageClock(torch.device("cpu"))
    time.sleep(0.01)
    clock.lap("rollout")
    with clock.part("sync"):
        time.sleep(0.02)
    clock.lap("update")
    m = clock.metrics
    assert set(m) == {"perf/rollout_s", "perf/sync_s", "perf/update_s"}  # CPU: no perf/mem_*
    assert m["perf/rollout_s"] >= 0.01 and 0.02 <= m["perf/sync_s"] <= m["perf/update_s"]
    assert abs(clock.seconds - (m["perf/rollout_s"] + m["perf/update_s"])) < 1e-9
