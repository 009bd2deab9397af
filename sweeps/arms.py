"""List the arms a sweep would launch, and check each, without launching anything.

    .venv/bin/python sweeps/arms.py +sweep=alpha_x_mix                 # 15 arms, one per line
    .venv/bin/python sweeps/arms.py '+sweep=[reference,seeds]' teacher=rl_checkpoint --count   # 27

Takes the same arguments as ``src/train.py -m`` (cluster overrides are accepted and ignored).
Every arm's composed config goes through the checks a run starts with (``gopd.sweeping``, as
``-m`` does before it submits): an arm that fails them is listed with its one-line error, and
the exit code is 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"


def _with_config(fn):
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return fn()


def expand(overrides: list[str]) -> list[list[str]]:
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from gopd.sweeping import expand as expand_grid

    parser = OverridesParser.create()
    fixed = [o for o in overrides if not parser.parse_override(o).is_sweep_override()]
    cfg = _with_config(lambda: compose("train", overrides=fixed, return_hydra_config=True))
    return expand_grid(cfg.hydra.sweeper.params, overrides)


def errors(arms: list[list[str]]) -> list[tuple[int, str, str]]:
    from hydra import compose

    from gopd.sweeping import arm_errors

    return _with_config(lambda: arm_errors(arms, lambda arm: compose("train", overrides=arm)))


def main(argv: list[str]) -> int:
    from gopd.sweeping import label

    count = "--count" in argv
    args = [a for a in argv if a not in ("--count", "-m", "--multirun")]
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    arms = expand(args)
    bad = {i: message for i, _, message in errors(arms)}
    if count:
        print(len(arms))
    else:
        for i, arm in enumerate(arms):
            print(f"{i:>4}  {label(arm)}" + (f"    error: {bad[i]}" if i in bad else ""))
        print(f"{len(arms)} arms" + (f", {len(bad)} failing the checks" if bad else ""), file=sys.stderr)
    return 2 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
