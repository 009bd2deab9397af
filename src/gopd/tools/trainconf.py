"""The trainer's config for a tool: ``conf/train.yaml`` composed with Hydra overrides, checked and resolved.

    cfg = load(["teacher=hinted", "alpha=2", "model.toy_variant=mini"]).cfg

A tool that reads its models, data and settings from here uses the trainer's values, not copies
of them: the same overrides select the same student, data, prompts and sampling as a training run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from gopd.schema import ConfigError


@dataclass(frozen=True)
class TrainConf:
    raw: object       # as composed: toy:// values as written (labels for tables and manifests)
    cfg: object       # toy:// values resolved to paths in the world model.toy_variant names
    warnings: list    # check_config's warnings (e.g. an inert alpha)


def compose(overrides: Sequence[str] = ()):
    """``conf/train.yaml`` with ``overrides``; Hydra's errors (multi-line) become a one-line ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from gopd.main import CONF
    from gopd.validate import first_line

    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="train"):
            return hydra_compose("train", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        cause = f" ({first_line(e.__cause__)})" if e.__cause__ is not None else ""  # e.g. "Key 'x' is not in struct"
        raise ConfigError(first_line(e) + cause) from None


def load(overrides: Sequence[str] = ()) -> TrainConf:
    """Composed, validated (``check_config``) and resolved (``run.resolve_paths``); a ConfigError if not."""
    from gopd.run import resolve_paths
    from gopd.validate import check_config

    raw = compose(overrides)
    warnings = check_config(raw)
    return TrainConf(raw=raw, cfg=resolve_paths(raw), warnings=list(warnings))


def load_or_exit(overrides: Sequence[str] = ()) -> TrainConf:
    """``load``, or ``error: <one line>`` on stderr and exit code 2 (as the trainer's own check)."""
    try:
        return load(overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def parser(prog: str, doc: str, overrides_help: str) -> argparse.ArgumentParser:
    """A tool's command line: positional Hydra overrides of ``conf/train.yaml``, then its own flags."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("overrides", nargs="*", default=[], help=f"Hydra overrides of conf/train.yaml: {overrides_help}")
    return ap
