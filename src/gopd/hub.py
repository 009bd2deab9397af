"""Hugging Face hub access, decided once at start-up, before anything loads.

A checkpoint or dataset named ``org/name`` that is neither a local path nor already in the
local Hugging Face cache needs the network. Left alone, ``transformers`` and ``datasets`` retry
an unreachable hub for tens of seconds per file (minutes on a cluster whose firewall drops
packets), then fail with a long traceback. Here the hub is probed once with a short timeout;
when it is unreachable, or ``HF_HUB_OFFLINE=1`` is set, the libraries are switched to
cache-only mode, cached names still load, and anything else stops the run with one line that
says it needs network access or a local path.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache

NEEDS = "needs network access or a local path"
PROBE_TIMEOUT_S = 5.0
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_name(path) -> bool:
    """``org/name`` that is not an existing local path (and not a ``toy://`` URI)."""
    from pathlib import Path

    return isinstance(path, str) and bool(_HUB_NAME.match(path)) and not Path(path).expanduser().exists()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def offline() -> bool:
    """True when the user or an earlier probe switched the hub libraries to cache-only mode."""
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("HF_DATASETS_OFFLINE")):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@lru_cache(maxsize=1)
def reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One HEAD request to the hub endpoint (proxies honoured); any HTTP answer counts."""
    import requests
    from huggingface_hub import constants

    try:
        requests.head(constants.ENDPOINT, timeout=(timeout, timeout), allow_redirects=False)
    except requests.RequestException:
        return False
    return True


def use_cache_only() -> None:
    """Switch huggingface_hub, transformers and datasets to offline (cache-only) mode, in this
    process and in the processes it starts (DDP ranks)."""
    import datasets
    from huggingface_hub import constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True


def online() -> bool:
    """Can the hub be used? If not, the libraries are left in cache-only mode."""
    if offline():
        use_cache_only()  # also set the datasets flag when only the env var was given
        return False
    if not reachable():
        use_cache_only()
        return False
    return True


def cached_model(name: str) -> bool:
    """Is ``name``'s ``config.json`` in the local hub cache (so it loads without the network)?"""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # malformed names, unreadable cache: treat as not cached
        return False
