"""Arms: the config keys that vary between runs, runs grouped by them (seeds pooled), baselines."""

from __future__ import annotations

import yaml

from gopd.tools.compare.runs import Arm, InputError, Run, fmt_value, normalize, short, shorten

# Arm keys in this order first (the paper's axes), then any other varying key alphabetically.
ARM_ORDER = ["alpha", "grpo_mix", "pressure.name", "teacher.name", "reference.name", "estimator.name"]
# Never arm keys: seeds are what an arm pools over; the rest names or logs a run, it does not change it.
POOLED = ("seed", "experiment", "logger", "paths")


def is_pooled(key: str, ignore: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in (*POOLED, *ignore))


def group_of(key: str) -> str | None:
    """``teacher.path`` -> ``teacher``; None for a top-level key (``alpha``)."""
    return key.split(".", 1)[0] if "." in key else None


def named_groups(keys) -> set[str]:
    """The config groups (top-level mappings with a ``name``) whose ``name`` is among the keys."""
    return {k[: -len(".name")] for k in keys if k.endswith(".name") and k.count(".") == 1}


def is_sub_key(key: str, groups: set[str]) -> bool:
    """``teacher.path`` of a group in ``groups``, other than the group's ``name``."""
    return group_of(key) in groups and key != f"{group_of(key)}.name"


def by_name(runs: list[Run], key: str) -> dict:
    """The values a group's sub-key takes among the runs of each of the group's names."""
    name = f"{group_of(key)}.name"
    out: dict = {}
    for r in runs:
        out.setdefault(r.config.get(name), set()).add(r.config.get(key))
    return out


def arm_keys(runs: list[Run], ignore: tuple[str, ...]) -> list[str]:
    """Config keys (not pooled) whose values differ between runs whose config could be read.

    When a group's ``name`` varies, its other keys differ between runs just because the group
    changed (``teacher.path`` is set by rl_checkpoint, absent from hinted): such a sub-key is an
    arm key only if it varies among runs with the same name (``teacher.path`` within rl_checkpoint).
    """
    readable = [r for r in runs if r.config]
    keys = set().union(*(r.config for r in readable)) if readable else set()
    varying = [k for k in keys if not is_pooled(k, ignore) and len({r.config.get(k) for r in readable}) > 1]
    groups = named_groups(varying)
    varying = [k for k in varying
               if not is_sub_key(k, groups) or any(len(v) > 1 for v in by_name(readable, k).values())]
    return sorted(varying, key=lambda k: (ARM_ORDER.index(k) if k in ARM_ORDER else len(ARM_ORDER), k))


def sort_key(values: tuple) -> tuple:
    # None and strings sort apart from numbers, so mixed types never compare directly
    return tuple((v is None, isinstance(v, str), v if isinstance(v, (int, float)) else str(v)) for v in values)


def group_arms(runs: list[Run], keys: list[str]) -> list[Arm]:
    readable = [r for r in runs if r.config]  # a run without a config is listed with its problem; no arm
    arms: dict[tuple, Arm] = {}
    for run in readable:
        key = tuple(run.config.get(k) for k in keys)
        arms.setdefault(key, Arm(key, "")).runs.append(run)
    ordered = [arms[k] for k in sorted(arms, key=sort_key)]
    # a group's sub-key is shown only for the names it varies within: teacher.path for
    # rl_checkpoint's arms, not for hinted's (where it is absent, so null)
    groups = named_groups(keys)
    within = {k: {n for n, v in by_name(readable, k).items() if len(v) > 1} for k in keys if is_sub_key(k, groups)}
    for width in (40, None):  # long values shortened, unless that makes two arms' labels one
        for arm in ordered:
            config = arm.runs[0].config
            arm.parts = {short(k): shorten(fmt_value(v), width) for k, v in zip(keys, arm.key)
                         if k not in within or config.get(f"{group_of(k)}.name") in within[k]}
            arm.label = " ".join(f"{k}={v}" for k, v in arm.parts.items()) or "all runs"
        if len({a.label for a in ordered}) == len(ordered):
            break
    return ordered


def parse_baseline(spec: str, runs: list[Run], keys: list[str], ignore: tuple[str, ...]) -> dict:
    """``alpha=1,grpo_mix=0`` -> {config key: value}; ``pressure=full`` means ``pressure.name``."""
    known = set().union(*(r.config for r in runs))
    wanted = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        if "=" not in item:
            raise InputError(f"--baseline: expected key=value pairs, got {item!r}")
        key, raw = (s.strip() for s in item.split("=", 1))
        key = key if key in known else f"{key}.name" if f"{key}.name" in known else None
        if key is None:
            raise InputError(f"--baseline: unknown config key {item.split('=')[0]!r} "
                             f"(arm keys: {', '.join(map(short, keys)) or 'none'})")
        if is_pooled(key, ignore):
            raise InputError(f"--baseline: {key} is pooled across runs, not an arm key")
        wanted[key] = parse_value(raw)
    if not wanted:
        raise InputError("--baseline: empty; expected key=value pairs, e.g. alpha=1,grpo_mix=0")
    return wanted


def parse_value(raw: str):
    value = yaml.safe_load(raw) if raw else ""
    if isinstance(value, str):
        try:
            value = float(value)  # YAML reads 1e-5 as a string
        except ValueError:
            pass
    return normalize(value)


def find_baselines(spec: str, arms: list[Arm], keys: list[str], wanted: dict) -> list[str]:
    """Set each arm's ``base``: the arm the spec matches among the arms that share its values of
    the arm keys the spec leaves free (returned: the slice keys). A spec setting every arm key
    (``alpha=1,grpo_mix=0``) names one arm, every arm's baseline; ``estimator=token`` with teachers
    hinted and rl_checkpoint gives each teacher's arms that teacher's token arm. Any key of a group
    whose name varies sets the whole group (``teacher=rl_checkpoint`` leaves no ``teacher.*`` key
    free; ``teacher.path=...`` picks the teacher). Each slice must hold exactly one matching arm:
    an arm is never measured against another slice's."""
    matched = {id(a) for a in arms if all(a.runs[0].config.get(k) == v for k, v in wanted.items())}

    def how(found: list[Arm]) -> str:
        return "no arm" if not found else f"{len(found)} arms ({'; '.join(a.label for a in found)})"

    groups = named_groups(keys) & {group_of(w) for w in wanted}  # the groups the spec picks
    fixed = {k for k in keys if k in wanted or group_of(k) in groups}
    free = [k for k in keys if k not in fixed]
    if not matched or free == keys and len(matched) > 1:  # no arm, or the spec sets no arm key: no slices
        raise InputError(f"--baseline {spec} matches {how([a for a in arms if id(a) in matched])}")
    slices: dict[tuple, list[Arm]] = {}
    for arm in arms:
        slices.setdefault(tuple(arm.key[keys.index(k)] for k in free), []).append(arm)
    for values in sorted(slices, key=sort_key):
        found = [a for a in slices[values] if id(a) in matched]
        if len(found) != 1 and not free:  # a group's sub-key matching several of its names
            raise InputError(f"--baseline {spec} matches {how(found)}")
        if len(found) != 1:
            where = " ".join(f"{short(k)}={shorten(fmt_value(v))}" for k, v in zip(free, values))
            example = next(a for a in arms if id(a) in matched)
            whole = ",".join(f"{short(k)}={shorten(fmt_value(v))}" for k, v in zip(keys, example.key))
            raise InputError(f"--baseline {spec} matches {how(found)} in the slice {where} (it must match one arm "
                             f"per combination of {', '.join(map(short, free))}; for one baseline arm, set "
                             f"every arm key, e.g. {whole})")
        for arm in slices[values]:
            arm.base = found[0]
    return free
