"""The trainer's command line: Hydra composes ``conf/train.yaml`` with the overrides, ``gopd.run`` runs it.

    gopd-train teacher=hinted pressure=positive alpha=2      # == python src/train.py ...
    gopd-train --help                                        # the config groups and their options
"""

import hashlib
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[2] / "conf"  # the checkout's conf/ (the package is installed editable)


MAX_DIRNAME = 230  # bytes: file systems refuse a path component past 255, and a run directory prefixes 20 (its time)


def dirname(overrides: str) -> str:
    """An arm's ``override_dirname`` as one directory name: a '/' in a value (a checkpoint path)
    would nest directories, so it becomes '_'; a name past ``MAX_DIRNAME`` bytes keeps its head and
    a hash of the whole (the full overrides stay in the run's ``.hydra/overrides.yaml``)."""
    name = overrides.replace("/", "_")
    if len(name.encode()) <= MAX_DIRNAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    return name.encode()[: MAX_DIRNAME - 11].decode(errors="ignore") + "-" + digest


# conf/train.yaml names run directories with it; registered on import, so in a SLURM job too (it
# unpickles the task function from this module before Hydra resolves the job's directory)
OmegaConf.register_new_resolver("gopd.dirname", dirname, replace=True)


def refuse_grid_without_multirun(argv: list[str]) -> None:
    """``+sweep=...`` without ``-m`` would run one default arm (on a login node, with a cluster
    profile): one line and exit 2, before Hydra writes a run directory."""
    inspecting = {"--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help"} & set(argv)  # prints, runs nothing
    if any(a.startswith("+sweep=") for a in argv) and not {"-m", "--multirun"} & set(argv) and not inspecting:
        print("error: +sweep=... is a grid: add -m (python src/train.py -m +sweep=...); without it one default "
              "arm would run here", file=sys.stderr)
        sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONF), config_name="train")
def _hydra_main(cfg) -> None:
    from gopd.run import run  # heavy imports (torch, lightning) only once a job really runs

    hc = HydraConfig.get()
    from gopd.runlog import arm_label

    run_name = hc.job.override_dirname or "default"
    run(cfg, Path(hc.runtime.output_dir), run_name, arm=arm_label(hc.overrides.task),
        multirun=hc.mode == RunMode.MULTIRUN, hydra_cfg=HydraConfig.instance().cfg)


def main() -> None:
    refuse_grid_without_multirun(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
