"""Shared fixtures: the miniature toy world, built once per session in a private cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def toy_world_mini(tmp_path_factory):
    """Artefact dir of the miniature toy world. ``GOPD_CACHE`` points at a session directory, so
    ``toy://`` paths in configs (``model.toy_variant=mini``) resolve to the same build."""
    from gopd.toy.build import ensure_toy_world

    os.environ["GOPD_CACHE"] = str(tmp_path_factory.mktemp("gopd_cache"))
    return ensure_toy_world("mini", progress=False)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of many tiny forwards: with both cores busy, two threads
    made a tiny model's forward pass ~100x slower (spin-waiting), one thread does not."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
