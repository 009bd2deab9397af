"""The config schema (gopd.schema): every key of every config group is typed, every default
validates, and every bad value -- generated from the schema itself, so a new key is covered
without a new test -- stops ``check_config`` with one line that starts with the dotted key."""

from __future__ import annotations

import copy
import functools
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin

import annotated_types as at
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from gopd import schema
from gopd.schema import TrainConfig, fields, validate_config
from gopd.validate import ConfigError, check_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
GROUPS = ("model", "data", "teacher", "reference", "pressure", "estimator", "rollout", "optim", "trainer", "logger",
          "callbacks")
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@functools.lru_cache(maxsize=None)
def _composed(overrides: tuple[str, ...]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def composed(*overrides: str):
    """The default config with ``overrides``, a private copy (compositions are cached)."""
    return copy.deepcopy(_composed(tuple(overrides)))


def annotated(info: FieldInfo):
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def sub_model(info: FieldInfo, value):
    """The model a field's (mapping) value is validated against, or None (a leaf)."""
    return schema._model_of(annotated(info), value)


def walk(model, value, prefix=""):
    """(dotted key, FieldInfo or None, type) of every field under a node: each field of the schema,
    with unions resolved by the data (a group's option by its ``name``); a mapping-typed field
    (teacher.experts) also yields its entries."""
    for key, info in fields(model).items():
        sub = value.get(key) if isinstance(value, Mapping) else None
        yield prefix + key, info, annotated(info)
        if (m := sub_model(info, sub)) is not None and isinstance(sub, Mapping):
            yield from walk(m, sub, f"{prefix}{key}.")
        else:
            maps = [a for a in schema._members(annotated(info)) if get_origin(a) is dict]
            if maps and isinstance(sub, Mapping):
                for k in sub:
                    yield f"{prefix}{key}.{k}", None, get_args(maps[0])[1]


def nodes(model, value, prefix=""):
    """(dotted prefix, model) of every mapping node under a node, the node itself first."""
    yield prefix, model
    for key, info in fields(model).items():
        sub = value.get(key) if isinstance(value, Mapping) else None
        if (m := sub_model(info, sub)) is not None and isinstance(sub, Mapping):
            yield from nodes(m, sub, f"{prefix}{key}.")


# ---------------------------------------------------------------------------- values from the schema
WRONG_TYPES = ("abc", True, 2.5, 7, [1, 2], {"k": 1}, None)  # each field gets those its type rejects


def _constraints(meta) -> list:
    out = []
    for m in meta:
        out.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return out


def _numeric_bad(base, cons) -> list:
    step = 1 if base is int else 0.5
    bad = []
    for c in cons:
        if isinstance(c, at.Gt):
            bad.append(c.gt)
        elif isinstance(c, at.Ge):
            bad.append(c.ge - step)
        elif isinstance(c, at.Lt):
            bad.append(c.lt)
        elif isinstance(c, at.Le):
            bad.append(c.le + step)
    return bad


def out_of_range(tp, extra_meta=()) -> list:
    """Values just outside each constraint of a type (every alternative of a union)."""
    base, meta = schema._strip(tp)
    meta = [*meta, *extra_meta]
    if schema._is_union(base):  # a field's own constraints apply to each alternative (Optional[int] >= 1)
        return [v for a in get_args(base) for v in out_of_range(a, meta)]
    cons = _constraints(meta)
    if get_origin(base) is Literal:
        return ["not-an-option"]
    if base in (int, float):
        return _numeric_bad(base, cons)
    min_len = [c.min_length for c in cons if getattr(c, "min_length", None)]
    if base is str:
        return [""] if min_len else []
    if get_origin(base) in (list, tuple):
        items = get_args(base)
        bad = [[]] if min_len or get_origin(base) is tuple else []
        if get_origin(base) is tuple:  # fixed length: one too many, one item out of range
            good = [0.5] * len(items)
            bad.append(good + [0.5])
            bad += [[b, *good[1:]] for b in out_of_range(items[0])]
        else:
            bad += [[b] for b in out_of_range(items[0])]
        return bad
    if get_origin(base) is dict:
        return [{}] if min_len else []
    return []


def bad_values(info: FieldInfo | None, tp) -> list[tuple[str, object]]:
    """(kind, value) pairs the field must reject: out of range, a custom rule's examples, wrong types."""
    adapter = TypeAdapter(tp)

    def rejected(v) -> bool:
        try:
            adapter.validate_python(v)
        except ValidationError:
            return True
        return False

    extra = (info.json_schema_extra if info is not None else None) or {}
    ranged = [("range", v) for v in [*out_of_range(tp), *extra.get("invalid", [])] if rejected(v)]
    typed = [("type", v) for v in WRONG_TYPES if rejected(v)]
    seen, out = set(), []
    for kind, v in ranged + typed:
        if repr(v) not in seen:
            seen.add(repr(v))
            out.append((kind, v))
    return out


def compositions():
    yield ()
    for group, option in OPTIONS:
        yield (f"{group}={option}",)


def bad_cases():
    seen = set()
    for overrides in compositions():
        data = schema.plain(_composed(overrides))
        for key, info, tp in walk(TrainConfig, data):
            for kind, value in bad_values(info, tp):
                if (key, repr(value)) not in seen:
                    seen.add((key, repr(value)))
                    yield pytest.param(overrides, key, value, id=f"{key}={value!r}|{kind}|{','.join(overrides)}")


def extra_key_cases():
    seen = set()
    for overrides in compositions():
        data = schema.plain(_composed(overrides))
        for prefix, model in nodes(TrainConfig, data):
            key = f"{prefix}bogus_key"
            if (key, model) not in seen:
                seen.add((key, model))
                kind = ("components" if issubclass(model, schema.Components)
                        else "allowed" if model.model_config.get("extra") == "allow" else "forbidden")
                yield pytest.param(overrides, key, kind, id=f"{key}|{model.__name__}|{','.join(overrides)}")


def with_value(overrides, key, value):
    cfg = composed(*overrides)
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


BAD_CASES = list(bad_cases())


def test_the_generated_cases_cover_every_kind_of_key():
    keys = {p.values[1] for p in BAD_CASES}
    for key in ("optim.lr", "rollout.top_p", "teacher.ema_decay", "teacher.experts.add", "rollout.gpu_memory_utilization",
                "estimator.k", "model.lora.target_modules", "trainer.strategy.mixed_precision", "optim.betas",
                "logger.wandb.mode", "reference.path", "pressure.clip", "traces.rollouts", "trainer.devices"):
        assert key in keys, key
    assert len(BAD_CASES) > 300


@pytest.mark.parametrize("overrides,key,value", BAD_CASES)
def test_every_bad_value_is_a_one_line_error_naming_its_key(overrides, key, value):
    cfg = with_value(overrides, key, value)
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    msg = str(e.value)
    # the key itself, or a key under it when a mapping replaced the node (model.lora={k: 1}: model.lora.r is missing)
    assert "\n" not in msg and (msg.startswith(key + " ") or msg.startswith(key + ".")), msg
    assert (" must be " in msg and ", got " in msg) or " is not a key of " in msg, msg
    assert "pydantic" not in msg and "validation error" not in msg.lower(), msg


@pytest.mark.parametrize("overrides,key,kind", list(extra_key_cases()))
def test_unknown_keys_are_errors_where_every_key_is_known(overrides, key, kind):
    cfg = with_value(overrides, key, 1)
    if kind == "allowed":  # trainer: any Lightning Trainer keyword; a strategy node: the strategy's keyword arguments
        validate_config(cfg)
        return
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    msg = str(e.value)
    if kind == "components":  # logger, callbacks: an added entry is one more _target_ node (or null)
        assert "\n" not in msg and msg.startswith(f"{key} must be a _target_ node"), msg
        validate_config(with_value(overrides, key, {"_target_": "package.module.Thing"}))
        validate_config(with_value(overrides, key, None))
        return
    assert "\n" not in msg and msg.startswith(f"{key} is not a key of "), msg
    assert "(keys: " in msg


def test_the_issue_messages_read_like_the_other_checks():
    def error(*overrides):
        with pytest.raises(ConfigError) as e:
            check_config(composed(*overrides))
        return str(e.value)

    assert error("optim.lr=-1") == "optim.lr must be a number > 0, got -1"
    assert error("rollout.top_p=1.5") == "rollout.top_p must be a number in (0, 1], got 1.5"
    assert error("rollout.n=2.5") == "rollout.n must be an integer >= 1, got 2.5"
    assert error("rollout.n=abc") == "rollout.n must be an integer >= 1, got 'abc'"
    assert error("optim.lr=true") == "optim.lr must be a number > 0, got True"
    assert error("+optim.lrr=1") == ("optim.lrr is not a key of optim (keys: lr, weight_decay, betas, warmup_steps, "
                                     "grad_clip, max_consecutive_skips)")
    assert error("+teacher.weight=ema").startswith("teacher.weight is not a key of teacher=hinted (keys: name, weights,")
    assert error("teacher=domain_experts", "teacher.experts.add=7") == \
        "teacher.experts.add must be a non-empty string, got 7"
    assert error("teacher.name=oracle") == "teacher.name must be one of hinted, rl_checkpoint, domain_experts, got 'oracle'"
    assert error("optim.betas=[0.9,1]") == "optim.betas must be two numbers in [0, 1), got [0.9, 1]"
    assert error("~optim.lr").startswith("optim.lr must be a number > 0, got nothing")
    assert error("+trainer.max_epochs=3").startswith("trainer.max_epochs is set by gopd.run itself")
    assert error("alpha=0").startswith("alpha must be a number > 0 (1 = OPD, > 1 = ExOPD), got 0")


def test_numbers_take_ints_but_not_bools_or_strings():
    for overrides in (["optim.lr=1"], ["alpha=2"], ["rollout.temperature=1"], ["loss.tis_cap=5"], ["pressure.clip=3"],
                      ["trainer.precision=bf16-mixed"], ["trainer.devices=-1"], ["trainer.devices='0,1'"],
                      ["model.lora.target_modules=[q_proj,v_proj]"], ["+trainer.gradient_clip_val=1.0"],
                      ["experiment=2026"], ["teacher=domain_experts", "teacher.default=add"]):
        check_config(composed(*overrides))


# -------------------------------------------------------------------------------- every key is typed
def _undeclared(model, value, prefix=""):
    for key, sub in value.items():
        info = fields(model).get(key)
        if info is None:
            yield prefix + key
        elif (m := sub_model(info, sub)) is not None and isinstance(sub, Mapping):
            yield from _undeclared(m, sub, f"{prefix}{key}.")


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_yaml_key_is_a_field_of_the_schema(group, option):
    data = schema.plain(_composed((f"{group}={option}",)))
    assert not list(_undeclared(TrainConfig, data))  # trainer too: its yaml keys are typed, not extras
    names = schema._tags(TrainConfig.model_fields[group].annotation)  # the options a `name` selects
    assert not names or data[group]["name"] in names


@pytest.mark.parametrize("group,option", OPTIONS)
def test_every_default_composes_and_validates(group, option, monkeypatch):
    """All options, the real-model ones included (model=qwen3_1_7b, data=deepmath, teacher=qwen3_8b):
    checked without reading a checkpoint, a tokenizer or the network."""
    def no_io(*args, **kwargs):
        raise AssertionError("check_config must not read checkpoints or data")

    for name in ("load_tokenizer", "is_local", "looks_like_local_path"):
        monkeypatch.setattr(f"gopd.validate.{name}", no_io)
    monkeypatch.setattr("gopd.toy.config.ensure_toy_world", no_io)  # nor build or locate a toy world
    monkeypatch.setattr("gopd.rollout.vllm.vllm_available", lambda: True)
    cfg = composed(f"{group}={option}")
    validate_config(cfg)
    if group == "reference" and cfg.reference.name == "pre_rl" and cfg.reference.path is None:
        cfg.reference.path = "toy://teacher_base"  # required (a rule of check_config), deliberately null in pre_rl.yaml
    if group == "pressure" and cfg.pressure.name in ("rlrt", "rlsd"):
        cfg.rollout.n = 4  # GRPO groups (a rule of check_config; the default is one rollout per prompt)
    check_config(cfg)


def test_every_field_has_a_one_line_description():
    seen = set()
    for overrides in compositions():
        for key, info, _ in walk(TrainConfig, schema.plain(_composed(overrides))):
            if info is not None and key not in seen:
                seen.add(key)
                assert info.description and "\n" not in info.description, key


def test_every_yaml_key_has_its_comment():
    files = [CONF / "train.yaml", *[CONF / g / f"{o}.yaml" for g, o in OPTIONS]]
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if line.startswith("hydra:"):
                break
            if re.match(r"^\s*[A-Za-z_]\w*:", line) and not line.startswith("defaults:"):
                assert "#" in line, f"{f.relative_to(ROOT)}:{n}: {line}"


def test_the_names_in_the_schema_are_the_code_s():
    from gopd.objective import ESTIMATORS, PRESSURES, REWEIGHTED
    from gopd.strategy import DTYPES
    from gopd.teachers import REFERENCES, TEACHERS
    from gopd.toy.build import RECIPES
    from gopd.rollout.vllm import LOGPROBS_MODES
    from gopd.rollout.hf import CACHES
    from gopd.rollout.sampling import SAMPLERS

    fields_ = TrainConfig.model_fields
    assert set(schema._tags(fields_["teacher"].annotation)) == set(TEACHERS)
    assert set(schema._tags(fields_["reference"].annotation)) == set(REFERENCES)
    assert set(schema._tags(fields_["estimator"].annotation)) == set(ESTIMATORS)
    assert set(schema.PRESSURES) == set(PRESSURES + REWEIGHTED)
    from gopd.prompts import HINT_TEMPLATES
    assert set(schema.HINT_TEMPLATE_NAMES) == set(HINT_TEMPLATES)
    assert set(schema.DTYPES) == set(DTYPES)
    assert set(schema.TOY_VARIANTS) == set(RECIPES)
    assert set(schema.LOGPROBS_MODES) == set(LOGPROBS_MODES)
    assert set(schema.CACHES) == set(CACHES)
    assert set(schema.SAMPLERS) == set(SAMPLERS)


# ------------------------------------------------------------------------------ through the real CLI
@pytest.mark.slow
@pytest.mark.parametrize("override", ["optim.lr=-1", "loss.eps_low=1.5", "teacher.ema_decay=1.5", "rollout.temperature=0",
                                      "rollout.temperature=-1", "rollout.top_p=1.5", "loss.chunk_size=0",
                                      "eval.batch_size=0", "loss.tis_cap=-1", "trainer.max_steps=0",
                                      "trainer.max_steps=-3"])
def test_a_bad_value_exits_2_with_one_line_before_anything_loads(tmp_path, override):
    from conftest import MINI, train_cmd

    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = train_cmd(*MINI, f"hydra.run.dir={tmp_path}", override)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    key, value = override.split("=")
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key} must be "), proc.stderr[-2000:]
    assert lines[0].endswith(f", got {value}")
    # what a validation failure leaves: .hydra/, the directory's lock file and an empty train.log (no model, no metrics)
    assert {p.name for p in tmp_path.iterdir()} <= {".hydra", ".lock", "train.log"}
    assert not (tmp_path / "train.log").exists() or (tmp_path / "train.log").read_text() == ""


@pytest.mark.parametrize("overrides,message", [
    (["pressure=rlsd", "rollout.n=1"], "rollout.n must be >= 2 for pressure=rlsd"),
    (["pressure=rlrt", "rollout.n=4", "estimator=full"], "pressure=rlrt needs estimator=token"),
    (["pressure=rlrt", "rollout.n=4", "pressure.lam=null"], "pressure.lam is required for pressure=rlrt"),
    (["pressure=full", "+pressure.normalize=kept"], "pressure.normalize=kept needs pressure=positive or negative"),
    (["pressure=positive", "pressure.normalize=kept", "estimator=topk"], "with estimator=token"),
])
def test_pressure_rules_across_keys(overrides, message):
    from gopd.validate import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(composed(*overrides))
