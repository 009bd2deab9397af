"""List the arms a sweep would launch, without launching anything (Hydra's own expansion).

    .venv/bin/python sweeps/arms.py +sweep=alpha_x_mix                 # 15 arms, one per line
    .venv/bin/python sweeps/arms.py '+sweep=[reference,seeds]' teacher=rl_checkpoint --count   # 27

Takes the same arguments as ``src/train.py -m`` (cluster overrides are accepted and ignored).
"""

from __future__ import annotations

import sys
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"


def expand(overrides: list[str]) -> list[list[str]]:
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    fixed = [o for o in overrides if not parser.parse_override(o).is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=fixed, return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    (batch,) = BasicSweeper.split_arguments(parser.parse_overrides(params + list(overrides)), None)
    return batch


def main(argv: list[str]) -> int:
    count = "--count" in argv
    args = [a for a in argv if a not in ("--count", "-m", "--multirun")]
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    arms = expand(args)
    if count:
        print(len(arms))
    else:
        for i, arm in enumerate(arms):
            print(f"{i:>4}  {' '.join(a for a in arm if not a.startswith(('+sweep=', '+cluster=')))}")
        print(f"{len(arms)} arms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
