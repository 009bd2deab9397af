"""Path schemes in a config -> plain paths, once, where the config is read (``gopd.run.resolve_paths``).

- ``toy://NAME``: a checkpoint or the data of the toy world ``model.toy_variant`` (``gopd.toy.config``);
- ``cache://NAME``: a model gopd converted into its cache by an explicit command (``BUILT``);
- ``gopd://REL``: a file or directory shipped inside the package (the word-problem task).

The core (data, teachers, rollouts, checks) sees only plain paths and hub names.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

CACHE, PACKAGE = "cache://", "gopd://"

# cache:// names and the command that builds each (``python -m <module>``)
BUILT = {"smollm2-135m-instruct": "gopd.smollm2"}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_root() -> Path:
    """``$GOPD_CACHE`` > ``~/.cache/gopd``."""
    env = os.environ.get("GOPD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gopd"


def models_dir() -> Path:
    return cache_root() / "models"


def _walk(node, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))
    else:
        yield path, node


def dotted(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


def uris(cfg, scheme: str) -> list[tuple[tuple, str]]:
    """Every ``scheme`` value of the config (interpolations left as written) with its key path."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=False)
    return [(p, v) for p, v in _walk(tree) if isinstance(v, str) and v.startswith(scheme)]


def replace_uris(cfg, scheme: str, to_path: Callable[[str, str], Path]):
    """A copy of ``cfg`` with every ``scheme`` value replaced by ``to_path(key, name)`` (``cfg`` itself
    when there is none); ``to_path`` raises ``ValueError`` with one line naming the key."""
    found = uris(cfg, scheme)
    if not found:
        return cfg
    out = copy.deepcopy(cfg)
    for path, uri in found:
        node = out
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = str(to_path(dotted(path), uri[len(scheme):].strip("/")))
    return out


def built_model(key: str, name: str) -> Path:
    if name not in BUILT:
        raise ValueError(f"{key}: cache://{name} is not a model gopd builds (cache:// names: {', '.join(sorted(BUILT))})")
    target = models_dir() / name
    if not (target / "config.json").is_file():
        raise ValueError(f"{key}: cache://{name} is not built yet: python -m {BUILT[name]} (converts it into {target})")
    return target


def shipped(key: str, rel: str) -> Path:
    target = Path(__file__).resolve().parent / rel
    if not target.exists():
        raise ValueError(f"{key}: gopd://{rel} is not shipped with the package (no {target})")
    return target


def resolve_builtin_paths(cfg):
    """``cache://`` and ``gopd://`` values -> plain paths (``toy://`` is ``gopd.toy.config``'s)."""
    return replace_uris(replace_uris(cfg, CACHE, built_model), PACKAGE, shipped)
