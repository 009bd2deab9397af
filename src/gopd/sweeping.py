"""A sweep's arms, expanded and checked before anything is launched.

``ValidateArms`` is a Hydra callback (``hydra.callbacks`` in ``conf/train.yaml``): in
``python src/train.py -m ...`` it composes every arm the sweeper will launch and runs the same
config checks as a single run (``gopd.validate.check_config``) before the launcher sees a job, so
a bad arm costs no queue wait on a cluster: one line naming the arm and the problem, exit 2,
nothing submitted. Checks that read files (data columns, checkpoints) still run in each job.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_CONFIG = 2


def expand(params: dict | None, overrides: list[str]) -> list[list[str]]:
    """Every arm's overrides: the sweep file's ``hydra.sweeper.params`` first, the command line's
    overrides after them (as Hydra's basic sweeper orders them), the grid expanded."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    grid = [f"{k}={v}" for k, v in (params or {}).items()]
    (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(grid + list(overrides)), None)
    return batch


def label(arm: list[str]) -> str:
    """An arm as a user reads it: its overrides without the sweep file and the cluster profile."""
    return " ".join(a for a in arm if not a.startswith(("+sweep=", "+cluster=")))


def arm_errors(arms: list[list[str]], compose: Callable[[list[str]], object]) -> list[tuple[int, str, str]]:
    """(index, arm, first line of its error) for every arm whose composed config fails the checks."""
    from gopd.validate import ConfigError, check_config, first_line

    bad = []
    for i, arm in enumerate(arms):
        try:
            check_config(compose(arm))
        except ConfigError as e:
            bad.append((i, label(arm), first_line(e)))
        except Exception as e:  # e.g. an override Hydra cannot apply to this arm
            bad.append((i, label(arm), f"{type(e).__name__}: {first_line(e)}"))
    return bad


def report(bad: list[tuple[int, str, str]], n_arms: int) -> None:
    """One line for the first bad arm (and how many there are), to stderr."""
    i, arm, message = bad[0]
    more = f" ({len(bad)} of {n_arms} arms fail the checks; sweeps/arms.py lists them)" if len(bad) > 1 else ""
    print(f"error: arm {i} ({arm}): {message}{more}; nothing was launched", file=sys.stderr)


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a core dependency
    Callback = object


class ValidateArms(Callback):
    """Hydra callback: check every arm of a multirun before the launcher submits any."""

    def on_multirun_start(self, config, **kwargs) -> None:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.types import RunMode

        hydra = GlobalHydra.instance().hydra
        name = config.hydra.job.config_name

        def compose(arm):
            return hydra.compose_config(name, arm, run_mode=RunMode.RUN, validate_sweep_overrides=False)

        arms = expand(config.hydra.sweeper.get("params"), list(config.hydra.overrides.task))
        bad = arm_errors(arms, compose)
        if bad:
            report(bad, len(arms))
            sys.exit(EXIT_CONFIG)
