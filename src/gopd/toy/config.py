"""``toy://NAME`` in a config -> plain paths, once, where the config is read.

The core (data, teachers, rollouts, checks) sees only plain paths and hub names; this is the one
place that knows which toy world (``model.toy_variant``) a ``toy://`` path points into. Resolving
may build that world (a cached, non-shipped variant): an explicit step of starting a run.
"""

from __future__ import annotations

from gopd.paths import replace_uris, uris
from gopd.toy.build import ensure_toy_world

SCHEME = "toy://"


def toy_uris(cfg) -> list[tuple[tuple, str]]:
    """Every ``toy://`` value of the config (interpolations left as written) with its key path."""
    return uris(cfg, SCHEME)


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
    cfg = with_toy_defaults(cfg)
    if not toy_uris(cfg):
        return cfg
    variant = cfg.model.get("toy_variant", "full")
    root = ensure_toy_world(variant)

    def in_world(key: str, name: str):
        target = root / name if name else root
        if not target.exists():
            names = sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and p.name != "SHA256SUMS")
            raise ValueError(f"{key}: {SCHEME}{name} is not in the toy world {variant!r} "
                             f"(toy:// names: {', '.join(names)})")
        return target

    return replace_uris(cfg, SCHEME, in_world)
