"""Checks of a composed config, run before any model is loaded.

Each failure is a ``ConfigError`` with one line naming the key and what would be valid. The
pure checks come first (no I/O), then the ones that read paths, tokenizers and data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

from gopd.objective import ESTIMATORS, PRESSURES
from gopd.pool import is_local, load_tokenizer, looks_like_local_path, resolve_checkpoint
from gopd.teachers import REFERENCES, TEACHERS, teacher_paths

HINT_WEIGHTS = ("initial", "live", "ema")


class ConfigError(ValueError):
    """A bad configuration value; the message is one line for the user."""


def _number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_config(cfg) -> list[str]:
    """Pure checks of the composed config; returns warnings (e.g. an inert alpha)."""
    if not _number(cfg.alpha) or cfg.alpha <= 0:
        raise ConfigError(f"alpha must be a number > 0 (1 = OPD, > 1 = ExOPD), got {cfg.alpha!r}")
    if not _number(cfg.grpo_mix) or not 0 <= cfg.grpo_mix <= 1:
        raise ConfigError(f"grpo_mix must be a number in [0, 1] (0 = pure G-OPD, 1 = pure GRPO), got {cfg.grpo_mix!r}")
    r = cfg.rollout
    if not isinstance(r.n, int) or r.n < 1:
        raise ConfigError(f"rollout.n must be an integer >= 1, got {r.n!r}")
    if cfg.grpo_mix > 0 and r.n < 2:
        raise ConfigError(f"rollout.n must be >= 2 when grpo_mix > 0 (GRPO normalises within a group), got {r.n}")
    if not isinstance(r.max_new_tokens, int) or r.max_new_tokens <= 0:
        raise ConfigError(f"rollout.max_new_tokens must be an integer > 0, got {r.max_new_tokens!r}")
    if not isinstance(r.prompts_per_step, int) or r.prompts_per_step < 1:
        raise ConfigError(f"rollout.prompts_per_step must be an integer >= 1, got {r.prompts_per_step!r}")
    if cfg.teacher.name not in TEACHERS:
        raise ConfigError(f"teacher must be one of {', '.join(TEACHERS)}, got {cfg.teacher.name!r}")
    if cfg.reference.name not in REFERENCES:
        raise ConfigError(f"reference must be one of {', '.join(REFERENCES)}, got {cfg.reference.name!r}")
    if cfg.pressure.name not in PRESSURES:
        raise ConfigError(f"pressure must be one of {', '.join(PRESSURES)}, got {cfg.pressure.name!r}")
    if cfg.estimator.name not in ESTIMATORS:
        raise ConfigError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {cfg.estimator.name!r}")
    if cfg.estimator.name == "topk" and (not isinstance(cfg.estimator.get("k"), int) or cfg.estimator.k < 1):
        raise ConfigError(f"estimator.k must be an integer >= 1, got {cfg.estimator.get('k')!r}")
    clip = cfg.pressure.get("clip")
    if clip is not None and (not _number(clip) or clip <= 0):
        raise ConfigError(f"pressure.clip must be a number > 0 or null (off), got {clip!r}")
    t = cfg.teacher
    if t.name == "hinted" and t.weights not in HINT_WEIGHTS:
        raise ConfigError(f"teacher.weights must be one of {', '.join(HINT_WEIGHTS)}, got {t.weights!r}")
    if t.name == "rl_checkpoint" and not t.get("path"):
        raise ConfigError("teacher.path is required for teacher=rl_checkpoint (the RL-trained checkpoint)")
    if t.name == "domain_experts":
        if not t.get("experts"):
            raise ConfigError("teacher.experts must map each domain to a checkpoint, got nothing")
        if t.get("default") is not None and t.default not in t.experts:
            raise ConfigError(f"teacher.default must be null or one of {', '.join(t.experts)}, got {t.default!r}")
    if cfg.reference.name == "pre_rl" and not cfg.reference.get("path"):
        raise ConfigError("reference.path is required for reference=pre_rl (the teacher's pre-RL base checkpoint)")
    warnings = []
    if cfg.grpo_mix == 1:
        warnings.append("grpo_mix=1 is pure GRPO: the teacher, the reference and alpha are not used")
    elif cfg.reference.name == "teacher" and cfg.alpha != 1:
        warnings.append(f"alpha={cfg.alpha} is inert with reference=teacher (r = q, so delta = q - s for any alpha)")
    return warnings


def needs_teacher(cfg) -> bool:
    return cfg.grpo_mix < 1


def needs_reference(cfg) -> bool:
    """The reference matters only when alpha != 1 (it cancels at alpha = 1) and it is not the teacher."""
    return needs_teacher(cfg) and cfg.alpha != 1 and cfg.reference.name != "teacher"


@dataclass
class Resources:
    """What the checks loaded and the run reuses: resolved paths, tokenizer, data splits."""

    student_path: str
    tokenizer: object
    train: object
    test: object


def _checkpoint(key: str, path: str, toy_variant: str) -> str:
    try:
        resolved = resolve_checkpoint(path, toy_variant)
    except FileNotFoundError as e:
        raise ConfigError(f"{key}: {e}") from None
    if not is_local(resolved) and looks_like_local_path(resolved):
        raise ConfigError(f"{key}: no checkpoint at {resolved!r} (a directory with config.json, or a hub name org/name)")
    return resolved


def _same_vocab(key: str, path: str, student_tok, remote: bool) -> None:
    tok = load_tokenizer(path, trust_remote_code=remote)
    if tok.get_vocab() != student_tok.get_vocab():
        raise ConfigError(f"{key}: tokenizer of {path!r} differs from the student's (vocab {len(tok)} vs "
                          f"{len(student_tok)}); G-OPD compares log-probs of the same tokens, so they must share one")


def check_resources(cfg) -> Resources:
    """Checks that read checkpoints' tokenizers and the data (never a model's weights)."""
    from gopd.data import load_split

    variant = cfg.model.get("toy_variant", "full")
    student = _checkpoint("model.path", cfg.model.path, variant)
    remote = bool(cfg.model.get("trust_remote_code", False))
    tokenizer = load_tokenizer(student, trust_remote_code=remote)
    others = dict(teacher_paths(cfg)) if needs_teacher(cfg) else {}
    if cfg.reference.name == "pre_rl":
        others["reference.path"] = cfg.reference.path  # checked even when alpha = 1 makes it unused
    for key, path in others.items():
        _same_vocab(key, _checkpoint(key, path, variant), tokenizer, remote)

    d = cfg.data
    splits = {}
    for key in ("train_split", "test_split"):
        try:
            splits[key] = load_split(d.path, d[key], variant)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(f"data.path / data.{key}: cannot load split {d[key]!r} of {d.path!r}: {e}") from None
        if len(splits[key]) == 0:
            raise ConfigError(f"data.{key}: split {d[key]!r} of {d.path!r} is empty")
        columns = splits[key].column_names
        for field in ("problem_field", "answer_field"):
            if d[field] not in columns:
                raise ConfigError(f"data.{field}: column {d[field]!r} is not in the data (columns: {', '.join(columns)})")
        if needs_teacher(cfg) and cfg.teacher.name == "hinted" and cfg.teacher.hint_field not in columns:
            raise ConfigError(f"teacher.hint_field: column {cfg.teacher.hint_field!r} is not in the data "
                              f"(columns: {', '.join(columns)})")
        if needs_teacher(cfg) and cfg.teacher.name == "domain_experts" and cfg.teacher.get("default") is None:
            _check_domains(cfg, splits[key])
    return Resources(student, tokenizer, splits["train_split"], splits["test_split"])


def _check_domains(cfg, dataset) -> None:
    field = cfg.data.domain_field
    if field not in dataset.column_names:
        raise ConfigError(f"data.domain_field: column {field!r} is not in the data, but teacher=domain_experts routes by it")
    known = set(cfg.teacher.experts)
    for i, domain in enumerate(dataset[field]):
        if domain not in known:
            row_id = dataset[i].get("id", i)
            raise ConfigError(f"teacher.experts: no expert for domain {domain!r} (row {row_id}); "
                              f"add it or set teacher.default to one of {', '.join(sorted(known))}")
