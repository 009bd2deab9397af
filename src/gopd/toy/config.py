"""``toy://NAME`` in a config -> plain paths, once, where the config is read.

The core (data, teachers, rollouts, checks) sees only plain paths and hub names; this is the one
place that knows which toy world (``model.toy_variant``) a ``toy://`` path points into. Resolving
may build that world (a cached, non-shipped variant): an explicit step of starting a run.
"""

from __future__ import annotations

from collections.abc import Iterator

from gopd.toy.build import ensure_toy_world

SCHEME = "toy://"


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


def toy_uris(cfg) -> list[tuple[tuple, str]]:
    """Every ``toy://`` value of the config (interpolations left as written) with its key path."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=False)
    return [(p, v) for p, v in _walk(tree) if isinstance(v, str) and v.startswith(SCHEME)]


# What a toy world supplies when the config leaves it out: the toy teacher's pre-RL base.
TOY_PRE_RL = SCHEME + "teacher_base"


def is_toy(cfg) -> bool:
    """Does the student come from a toy world (``model.path`` is ``toy://...``)?"""
    return str(cfg.model.get("path", "")).startswith(SCHEME)


def with_toy_defaults(cfg):
    """``reference=pre_rl`` without a path on a toy world: the toy teacher's pre-RL base."""
    import copy

    if not (is_toy(cfg) and cfg.reference.get("name") == "pre_rl" and not cfg.reference.get("path")):
        return cfg
    out = copy.deepcopy(cfg)
    out.reference.path = TOY_PRE_RL
    return out


def resolve_toy_paths(cfg):
    """A copy of ``cfg`` whose ``toy://`` values are paths in the world ``model.toy_variant`` names
    (after ``with_toy_defaults``).

    An unknown name is a one-line ``ValueError`` naming the key and the world's names."""
    import copy

    cfg = with_toy_defaults(cfg)
    uris = toy_uris(cfg)
    if not uris:
        return cfg
    variant = cfg.model.get("toy_variant", "full")
    root = ensure_toy_world(variant)
    out = copy.deepcopy(cfg)
    for path, uri in uris:
        name = uri[len(SCHEME):].strip("/")
        target = root / name if name else root
        if not target.exists():
            names = sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and p.name != "SHA256SUMS")
            raise ValueError(f"{dotted(path)}: {uri} is not in the toy world {variant!r} "
                             f"(toy:// names: {', '.join(names)})")
        node = out
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = str(target)
    return out
