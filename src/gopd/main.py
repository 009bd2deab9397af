"""The trainer's command line: Hydra composes ``conf/train.yaml`` with the overrides, ``gopd.run`` runs it.

    gopd-train teacher=hinted pressure=positive alpha=2      # == python src/train.py ...
    gopd-train --help                                        # the config groups and their options
"""

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

CONF = Path(__file__).resolve().parents[2] / "conf"  # the checkout's conf/ (the package is installed editable)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def main(cfg) -> None:
    from gopd.run import run  # heavy imports (torch, lightning) only once a job really runs

    hc = HydraConfig.get()
    run_name = hc.job.override_dirname or "default"
    run(cfg, Path(hc.runtime.output_dir), run_name, multirun=hc.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    main()
