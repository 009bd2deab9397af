"""Typed schema of the composed training config: every key of every config group, with its type,
its range and a one-line description (the meaning of the key's comment in ``conf/``).

``validate_config(cfg)`` checks a composed config (interpolations resolved) against it before
anything is loaded, and turns the first problem into a one-line ``ConfigError`` that names the
dotted key as it is typed on the command line, what is valid, and the value given::

    optim.lr must be a number > 0, got -1
    rollout.top_p must be a number in (0, 1], got 1.5
    optim.lrr is not a key of optim (keys: lr, weight_decay, betas, warmup_steps, grad_clip, max_consecutive_skips)

Why pydantic: Hydra's structured configs (dataclasses) check types only, never ranges, and
report OmegaConf's multi-line errors; pydantic declares type and range together (``gt``, ``ge``,
``lt``, ``le``, literals, lengths), selects a config group's option by its ``name`` key (a
discriminated union), and reports each problem as a location and a type, from which the message
here is written. Rules that relate several keys (``grpo_mix > 0`` needs ``rollout.n >= 2``, ...)
stay in ``gopd.validate.check_config``, which calls ``validate_config`` first.

Types are strict: a bool is not a number, a string never becomes a number (``rollout.n=abc``),
an integer key rejects 2.5, and a number key accepts an integer (``optim.lr=1``). Unknown keys
are errors, except in ``trainer`` (any Lightning Trainer keyword), a ``trainer.strategy`` node
(the strategy's keyword arguments), ``model.chat_template_kwargs`` (chat template variables) and
``teacher.experts`` (domain names).

No torch here: the names of teachers, references, pressures, estimators, ... are written out in
this module, and tests/test_schema.py checks them against the registries of the code using them.
"""

import types
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import annotated_types as at
from pydantic import (AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Discriminator, Field,
                      StrictBool, StrictInt, StrictStr, StringConstraints, Tag, ValidationError, model_validator)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A bad configuration value; the message is one line for the user (also ``gopd.validate.ConfigError``)."""


def first_line(e: BaseException) -> str:
    """A library error in one line (its first), or its type when it has no message."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# ------------------------------------------------------------------------------------ value types
def _plain_number(value):
    """Numbers only: a bool or a string ("1.5", "abc") is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("number_type", "not a number")
    return value


Number = Annotated[float, BeforeValidator(_plain_number), AllowInfNan(False)]  # an int or a finite float
Int = StrictInt
Bool = StrictBool
Str = StrictStr
Name = Annotated[StrictStr, StringConstraints(min_length=1)]  # a non-empty string: a path, a column, a split

DTYPES = ("float32", "bfloat16", "float16")                         # gopd.strategy.DTYPES
TOY_VARIANTS = ("full", "full_v1", "mini", "search", "search_mini")                        # gopd.toy.build.RECIPES
HINT_WEIGHTS = ("initial", "live", "ema")                           # gopd.teachers.hinted_teacher
HINT_TEMPLATE_NAMES = ("opsd",)                                       # gopd.prompts.HINT_TEMPLATES
PRESSURES = ("full", "positive", "negative", "flip_correct", "rlrt", "rlsd")  # gopd.objective.PRESSURES + REWEIGHTED
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")             # gopd.rollout.vllm.LOGPROBS_MODES
CACHES = ("dynamic", "static")                                      # gopd.rollout.hf.CACHES
SAMPLERS = ("multinomial", "inverse_cdf")                           # gopd.rollout.sampling.SAMPLERS
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu")  # Lightning's accelerator names
PRECISIONS = (64, 32, 16, "64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true", "16-mixed",
              "bf16-mixed", "transformer-engine", "transformer-engine-float16")  # Lightning's precision inputs
RUN_SETS = ("max_epochs", "logger", "callbacks", "enable_checkpointing", "enable_model_summary", "enable_progress_bar",
            "num_sanity_val_steps", "default_root_dir")  # Trainer keywords gopd.run passes itself


def F(description: str, default: Any = ..., *, valid: str | None = None, note: str | None = None,
      invalid: tuple = (), **constraints) -> Any:
    """A field with its one-line description. ``valid`` replaces the "what is valid" text written
    from the type and range, ``note`` is appended to it in parentheses, ``invalid`` lists values a
    custom rule rejects (tests/test_schema.py tries them)."""
    extra = {k: v for k, v in (("valid", valid), ("note", note), ("invalid", list(invalid))) if v}
    return Field(default, description=description, json_schema_extra=extra or None, **constraints)


def _template(*placeholders: str, formatted: bool):
    """A template string holding each placeholder; ``formatted``: filled by ``str.format`` (so
    other braces must be doubled), else by ``str.replace`` (data.problem_template: "\\boxed{}")."""
    def check(text: str) -> str:
        if any("{" + p + "}" not in text for p in placeholders):
            raise PydanticCustomError("template", "placeholder missing")
        if formatted:
            try:
                text.format(**{p: "" for p in placeholders})
            except (KeyError, IndexError, ValueError):
                raise PydanticCustomError("template", "unknown placeholder") from None
        return text
    return AfterValidator(check)


def _hint_template(text: str) -> str:
    """teacher.hint_template: a ``HINT_TEMPLATE_NAMES`` name, or a template with ``{hint}`` and the
    problem as ``{problem}`` (after data.problem_template) or ``{raw_problem}`` (the column as is)."""
    if text in HINT_TEMPLATE_NAMES:
        return text
    if "{hint}" not in text or ("{problem}" not in text and "{raw_problem}" not in text):
        raise PydanticCustomError("template", "placeholder missing")
    try:
        text.format(problem="", raw_problem="", hint="")
    except (KeyError, IndexError, ValueError):
        raise PydanticCustomError("template", "unknown placeholder") from None
    return text


def _devices(value):
    if isinstance(value, int) and value == 0:
        raise PydanticCustomError("devices", "0 devices")
    return value


class Keys(BaseModel):
    """A config node whose keys are all known: any other key is an error."""

    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------ model
class Lora(Keys):
    enabled: Bool = F("train LoRA adapters instead of all weights; the step-0 student is then the base with adapters off",
                      False)
    r: Int = F("adapter rank", ge=1)
    alpha: Number = F("LoRA scaling numerator (scale = alpha / r)", gt=0)
    dropout: Number = F("dropout on the adapter input", ge=0, lt=1)
    target_modules: Union[Name, Annotated[list[Name], at.MinLen(1)]] = F(
        "all-linear (every linear layer but the LM head) or a list of module names",
        valid="all-linear, a module name or a non-empty list of module names")


class Model(Keys):
    path: Name = F("the student: checkpoint directory or hub name; toy://NAME = a built-in toy checkpoint")
    dtype: Literal[DTYPES] = F("weights of the student and every frozen model")
    toy_variant: Literal[TOY_VARIANTS] = F("which toy world toy:// paths resolve in", "full")
    trust_remote_code: Bool = F("run code shipped with a checkpoint (off: only transformers' own model classes)", False)
    chat_template_kwargs: Optional[dict[Str, Any]] = F(
        "extra variables for the chat template, the same for student and teacher prompts", None)
    gradient_checkpointing: Bool = F("recompute activations in backward (memory for compute)", False)
    lora: Optional[Lora] = F("LoRA adapters (peft) instead of full fine-tuning", None)


# ------------------------------------------------------------------------------------------- data
class Data(Keys):
    source: Optional[Str] = F("informational: which dataset this is; the loader only reads path", None)
    path: Name = F("directory with <split>.parquet|jsonl, a single file, or a hub dataset name")
    train_split: Name = F("split sampled for rollouts")
    test_split: Optional[Name] = F("held-out split for greedy evaluation; null = hold out `holdout` problems of train_split",
                                   None)
    problem_field: Name = F("column with the question")
    answer_field: Name = F("column with the verifiable final answer")
    domain_field: Name = F("column naming the domain (routes teacher=domain_experts)")
    solution_field: Optional[Name] = F("column with a worked solution", None)
    hint_fields: list[Name] = F("hint columns for teacher.hint_field", [])
    hint_field: Optional[Name] = F("the default teacher.hint_field of teacher=hinted", None)
    problem_template: Optional[Annotated[Str, _template("problem", formatted=False)]] = F(
        "the user turn ({problem} = the problem column), the same for student and teacher", None,
        valid="a string containing {problem}", invalid=("no placeholder",))
    dedupe_field: Optional[Name] = F("keep one row per value of this column; null = keep all", None)
    answer_from_solution: Bool = F("fill answer_field with the last \\boxed{} of solution_field", False)
    answer_extract: Literal["boxed", "boxed_or_last_number", "countdown"] = F(
        "where a completion's answer is read: its last \\boxed{}, or else its last number; countdown: its last "
        "\\boxed{} expression must use the answer's numbers and reach its value", "boxed")
    holdout: Int = F("with test_split null, this many problems of train_split are held out as the test set", 0, ge=0)
    drop_invalid: Bool = F("drop rows without a usable problem or answer (counted in summary.json); false = refuse "
                           "the data, naming the first such row", False)


# ---------------------------------------------------------------------------------------- teacher
class HintedTeacher(Keys):
    name: Literal["hinted"] = F("OPSD: the student itself, with a hint in its prompt")
    weights: Literal[HINT_WEIGHTS] = F("initial = frozen step-0 student | live = current weights | ema")
    ema_decay: Number = F("per-step decay of the EMA teacher (weights=ema only)", ge=0, lt=1)
    hint_field: Name = F("data column inserted into the teacher's prompt")
    hint_template: Annotated[Str, AfterValidator(_hint_template)] = F(
        "how the hint joins the problem in the user turn: a template, or opsd (the OPSD repository's teacher turn)",
        valid="opsd, or a string with {hint} and {problem} or {raw_problem} (other braces doubled)",
        invalid=("{problem} only", "{problem} {hint} {x}", "{hint} alone"))


class CheckpointTeacher(Keys):
    name: Literal["rl_checkpoint"] = F("OPD: a separate checkpoint with the student's tokenizer")
    path: Name = F("checkpoint directory or hub name (toy://NAME = the built-in toy world)",
                   note="required for teacher=rl_checkpoint: the RL-trained checkpoint")


class DomainExperts(Keys):
    name: Literal["domain_experts"] = F("multi-teacher distillation: each prompt scored by its domain's expert")
    experts: Annotated[dict[Str, Name], at.MinLen(1)] = F(
        "domain -> checkpoint; identical paths are loaded once", valid="a mapping of each domain to a checkpoint")
    default: Optional[Name] = F("expert name (a key of experts) for unknown domains; null = unknown domain is an error",
                                None)


Teacher = Annotated[Union[HintedTeacher, CheckpointTeacher, DomainExperts], Field(discriminator="name")]


# -------------------------------------------------------------------------------------- reference
class StudentReference(Keys):
    name: Literal["student"] = F("the frozen step-0 student")
    path: Optional[Str] = F("unused by reference=student (a sweep over references may set it for pre_rl)", None)


class TeacherReference(Keys):
    name: Literal["teacher"] = F("the teacher itself: r = q, so alpha is inert")
    path: Optional[Str] = F("unused by reference=teacher (a sweep over references may set it for pre_rl)", None)


class PreRLReference(Keys):
    name: Literal["pre_rl"] = F("the teacher's pre-RL base checkpoint: G-OPD's reward correction")
    path: Optional[Name] = F("required: checkpoint directory or hub name (toy://teacher_base on the toy world)", None)


Reference = Annotated[Union[StudentReference, TeacherReference, PreRLReference], Field(discriminator="name")]


# --------------------------------------------------------------------------------- pressure, estimator
class Pressure(Keys):
    name: Literal[PRESSURES] = F("full | positive | negative | flip_correct (maps of delta) | rlrt | rlsd "
                                 "(GRPO's advantage reweighted per token)")
    clip: Optional[Annotated[Number, Field(gt=0)]] = F(
        "clamp the advantage to [-clip, clip] after the pressure mode; null = off", None, note="null = off")
    normalize: Literal["all", "kept"] = F("token mean over all completion tokens, or over those whose advantage "
                                          "survived (estimator=token)", "all")
    lam: Optional[Annotated[Number, Field(ge=0, le=1)]] = F(
        "rlrt / rlsd: weight of the reweighted part, A = G ((1 - lam) + lam w); 0 = plain GRPO", None)
    eps_w: Optional[Annotated[Number, Field(gt=0)]] = F(
        "rlrt / rlsd: the token weight is clipped to [max(0, 1 - eps_w), 1 + eps_w]", None)


class TokenEstimator(Keys):
    name: Literal["token"] = F("only each sampled token is scored")


class FullEstimator(Keys):
    name: Literal["full"] = F("the advantage of every vocabulary entry, weighted by pi_theta")


class TopKEstimator(Keys):
    name: Literal["topk"] = F("the teacher's top-k entries plus the sampled token, the rest as one tail bucket")
    k: Int = F("teacher's top entries kept per position", ge=1)


Estimator = Annotated[Union[TokenEstimator, FullEstimator, TopKEstimator], Field(discriminator="name")]


# ---------------------------------------------------------------------------------------- rollout
class HFRollout(Keys):
    name: Literal["hf"] = F("Hugging Face generate on the trainer's own student weights")
    n: Int = F("samples per prompt (a GRPO group); grpo_mix > 0 needs n >= 2", ge=1)
    prompts_per_step: Int = F("prompts per optimizer step (rollouts per step = n x prompts_per_step)", ge=1)
    max_new_tokens: Int = F("completion budget per rollout", gt=0)
    temperature: Number = F("sampling temperature (log-probs are scored at temperature 1)", gt=0)
    top_p: Number = F("nucleus sampling threshold (1 = off: keeps rollouts on-policy)", gt=0, le=1)
    cache: Literal[CACHES] = F("HF generate's KV cache (HF rollouts and evaluation): dynamic | static (preallocated)")
    sampler: Literal[SAMPLERS] = F("HF rollouts' token sampler: multinomial (generate's) | inverse_cdf (one uniform per "
                                   "token; the same distribution)")


class VLLMRollout(HFRollout):
    name: Literal["vllm"] = F("a colocated, in-process vLLM engine on the student checkpoint")
    dtype: Literal[("auto", *DTYPES)] = F("engine weight dtype (default: model.dtype)")
    logprobs_mode: Literal[LOGPROBS_MODES] = F(
        "processed_logprobs (after temperature/top-p) | raw_logprobs (temperature 1)")
    gpu_memory_utilization: Number = F("fraction of the GPU vLLM takes for weights + KV cache", gt=0, le=1)
    enable_sleep_mode: Bool = F("GPU only: release vLLM's memory while the trainer steps")
    tensor_parallel_size: Int = F("GPUs one engine shards the model over", ge=1)
    enforce_eager: Bool = F("no CUDA graphs / torch.compile: fast start, needed on CPU")
    max_model_len: Optional[Int] = F("longest prompt + completion the engine serves (null = the model's context length)",
                                     None, ge=1, valid="null or an integer > rollout.max_new_tokens")
    seed: Optional[Int] = F("the engine's sampling seed", None, ge=0)


Rollout = Annotated[Union[HFRollout, VLLMRollout], Field(discriminator="name")]


# ---------------------------------------------------------------------------------- optim, trainer
class Optim(Keys):
    lr: Number = F("peak learning rate", gt=0)
    weight_decay: Number = F("decoupled weight decay", ge=0)
    betas: tuple[Annotated[Number, Field(ge=0, lt=1)], Annotated[Number, Field(ge=0, lt=1)]] = F(
        "Adam moments", valid="two numbers in [0, 1)")
    warmup_steps: Int = F("linear warmup from 0", ge=0)
    grad_clip: Number = F("clip the global gradient norm (a non-finite norm skips the step)", gt=0)
    max_consecutive_skips: Int = F("stop (with a checkpoint) after this many non-finite steps in a row; 0 = never", ge=0)


class Strategy(BaseModel):
    """A ``_target_`` node (``trainer=fsdp``): ``gopd.strategy.fsdp``'s arguments; others pass to ModelParallelStrategy."""

    model_config = ConfigDict(extra="allow")

    target: Name = F("the strategy factory (gopd.strategy.fsdp: FSDP2 through Lightning's ModelParallelStrategy)",
                     alias="_target_")
    reshard_after_forward: Bool = F("free each unit's gathered weights after its forward (ZeRO-3); false = ZeRO-2", True)
    mixed_precision: Optional[Literal[DTYPES]] = F("dtype of the sharded params and buffers in compute; null = off",
                                                   "bfloat16")
    activation_checkpointing: Bool = F("recompute each decoder layer in backward", True)
    layer_suffix: Name = F("FSDP unit = every module whose class name ends with this", "DecoderLayer")
    cpu_offload: Bool = F("keep sharded params and gradients in host memory", False)


def _node_or_name(value) -> str:
    return "node" if isinstance(value, Mapping) else "name"


class Trainer(BaseModel):
    """Lightning Trainer arguments: the keys below are typed, any other Trainer keyword may be added."""

    model_config = ConfigDict(extra="allow")

    max_steps: Int = F("optimizer steps (one per rollout batch)", ge=1)
    accelerator: Literal[ACCELERATORS] = F("cpu | gpu | auto", "auto")
    devices: Union[Annotated[Int, Field(ge=-1), AfterValidator(_devices)],
                   Annotated[Str, StringConstraints(pattern=r"^\s*(auto|-1|\d+\s*(,\s*\d+\s*)*,?)\s*$")],
                   Annotated[list[Annotated[Int, Field(ge=0)]], at.MinLen(1)]] = F(
        "devices per node (= SLURM tasks per node)", "auto",
        valid="an integer >= 1 (-1 = all), auto, a string of device indices or a list of them")
    num_nodes: Int = F("nodes (= SLURM nodes of the job)", 1, ge=1)
    precision: Literal[PRECISIONS] = F("32-true; bf16-mixed on GPUs", "32-true")
    log_every_n_steps: Optional[Int] = F("write step metrics to the loggers every N steps and at the last (0 = never)",
                                         None, ge=0)
    strategy: Optional[Annotated[Union[Annotated[Name, Tag("name")], Annotated[Strategy, Tag("node")]],
                                 Discriminator(_node_or_name)]] = F(
        "a Lightning strategy name (auto, ddp, ...) or a _target_ node (trainer=fsdp)", "auto",
        valid="a strategy name (auto, ddp, ...) or a _target_ node")

    @model_validator(mode="after")
    def _not_set_by_run(self):
        for key in self.model_extra or {}:
            if key in RUN_SETS:
                raise PydanticCustomError("gopd_reserved", "set by gopd.run", {"key": key})
        return self


# ------------------------------------------------------------------------------ logger, callbacks
class Component(Keys):
    """A ``_target_`` node that gopd.run builds (``hydra.utils.instantiate``)."""

    target: Name = F("the class or function that builds it (module.Name)", alias="_target_")


def _is_component(value) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("_target_"), str) and bool(value["_target_"])


class Components(BaseModel):
    """A group of ``_target_`` nodes: the keys below are typed; an added one (``+logger.tb._target_=...``)
    must be a ``_target_`` node or null."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _extras_are_components(self):
        for key, value in (self.model_extra or {}).items():
            if value is not None and not _is_component(value):
                raise PydanticCustomError("gopd_component", "not a _target_ node", {"key": key})
        return self


class Wandb(Component):
    mode: Literal["offline", "online", "disabled"] = F("offline (wandb sync later) | online | disabled")
    project: Name = F("W&B project")
    entity: Optional[Name] = F("W&B entity (team); null = your default", None)
    tags: list[Str] = F("extra run tags", [])
    group: Optional[Union[Name, Int]] = F("W&B group: runs of one sweep together", None)


class Logger(Components):
    csv: Component = F("metrics.csv in the run directory")
    wandb: Optional[Wandb] = F("Weights & Biases", None)
    progress: Bool = F("rich progress bar with step, reward and eval accuracy")


class BookkeepingCallback(Component):
    max_consecutive_skips: Int = F("stop (with a checkpoint) after this many non-finite steps in a row; 0 = never", ge=0)


class EveryN(Component):
    every_n_steps: Int = F("the period in steps; 0 = only at the start / end", ge=0)


class Progress(Component):
    every_n_steps: Optional[Annotated[Int, Field(ge=1)]] = F("log a progress line every N steps; null = every 5% of "
                                                             "the run", None)
    bar: Bool = F("the live bar, on a terminal only", True)


class Callbacks(Components):
    bookkeeping: BookkeepingCallback = F("counters, the run summary, metrics to the loggers")
    evaluation: Optional[EveryN] = F("held-out greedy evaluation at the start, every N steps and at the end", None)
    checkpointing: EveryN = F("resumable checkpoints every N steps, at the end and on stop signals")
    progress: Optional[Progress] = F("progress lines in the log, and a live bar on a terminal", None)


# ------------------------------------------------------------------------------------- train.yaml
class Loss(Keys):
    eps_low: Number = F("PPO clip below: ratio floor 1 - eps_low", ge=0, lt=1)
    eps_high: Number = F("PPO clip above: ratio ceiling 1 + eps_high", ge=0)
    tis_cap: Number = F("cap of the truncated importance weight when rollouts come from another engine", gt=0)
    chunk_size: Int = F("positions per chunk through the LM heads (memory: a few chunk x vocab fp32 blocks)", ge=1)
    dual_clip: Optional[Annotated[Number, Field(gt=1)]] = F(
        "PPO dual clip c (verl's clip_ratio_c, 3): where A < 0 the surrogate is at least c A; null = off", None)


class GRPO(Keys):
    scale: Union[Literal["group", "batch", "none"], Bool] = F(
        "divide by the group's reward std (verl), the whole step's (TRL's scale_rewards=batch), or not at all "
        "(Dr. GRPO); true / false = group / none", "group", valid="group, batch, none (or true / false)")
    eps: Number = F("std floor: (R - mean) / (std + eps); verl 1e-6, TRL 1e-4", 1e-6, gt=0)


class Checkpoint(Keys):
    every_n_steps: Int = F("resumable checkpoint period (also at the end and on SIGUSR1/SIGTERM); 0 = only those", ge=0)


class Traces(Keys):
    every_n_steps: Int = F("save per-token traces to <run dir>/traces/ every N steps (0 = off)", 0, ge=0)
    rollouts: Int = F("rollouts saved per traced step", 4, ge=1)


class Verify(Keys):
    workers: Int = F("processes that verify a batch's answers while the step's forwards run; 0 = inline", 0, ge=0)


class Eval(Keys):
    every_n_steps: Int = F("held-out greedy evaluation period (also at start and end); 0 = start and end only", ge=0)
    n_problems: Int = F("held-out problems per evaluation (first n of the test split)", ge=1)
    batch_size: Int = F("prompts per greedy generate call", ge=1)
    max_new_tokens: Int = F("generation budget at evaluation (default: rollout.max_new_tokens)", gt=0)


class TrainConfig(Keys):
    """The composed config of ``src/train.py``. Field order matters: a key that others interpolate
    (model.dtype, seed, data.hint_field, rollout.max_new_tokens) comes before them, so a bad
    value is reported at the key the user set."""

    alpha: Number = F("G-OPD reward scale: 1 = OPD, > 1 = ExOPD, (0, 1) = toward the reference", gt=0,
                      note="1 = OPD, > 1 = ExOPD")
    grpo_mix: Number = F("weight of the GRPO outcome advantage: 0 = pure G-OPD, 1 = pure GRPO", ge=0, le=1,
                         note="0 = pure G-OPD, 1 = pure GRPO")
    seed: Int = F("seeds torch / numpy / python and the prompt order", ge=0, le=2**32 - 1)
    experiment: Union[Name, Int] = F("W&B group and output folder; sweeps set it to the sweep's name")
    save_final: Bool = F("save the trained student (weights + tokenizer) to <run dir>/final")
    model: Model = F("the student checkpoint")
    data: Data = F("prompts with answers (and hints / solutions / domains)")
    teacher: Teacher = F("hinted | rl_checkpoint | domain_experts")
    reference: Reference = F("student | teacher | pre_rl")
    pressure: Pressure = F("full | positive | negative | flip_correct | rlrt | rlsd")
    estimator: Estimator = F("token | full | topk")
    rollout: Rollout = F("the rollout engine: hf | vllm")
    optim: Optim = F("optimizer and learning-rate schedule")
    trainer: Trainer = F("Lightning Trainer arguments")
    logger: Logger = F("metrics.csv + W&B")
    loss: Loss = F("the PPO-style clipped policy loss")
    grpo: GRPO = F("the GRPO outcome advantage")
    checkpoint: Checkpoint = F("resumable checkpoints")
    traces: Traces = F("per-token traces", Traces())
    verify: Verify = F("answer verification (the reward)", Verify())
    eval: Eval = F("held-out greedy evaluation")
    callbacks: Callbacks = F("bookkeeping, evaluation, checkpointing, progress bar")  # last: it interpolates eval, optim, checkpoint


GROUPS = {"teacher": Teacher, "reference": Reference, "estimator": Estimator, "rollout": Rollout}  # option by `name`


# ------------------------------------------------------------------------------------ validation
class Unresolved:
    """An interpolation that does not resolve (``${rollout.max_new_tokens}`` when rollout is not a mapping)."""

    def __init__(self, error: Exception):
        self.text = first_line(error)

    def __repr__(self) -> str:
        return f"<unresolved: {self.text}>"


def plain(cfg) -> dict:
    """The config as plain containers, interpolations resolved, without Hydra's own node. An
    interpolation that fails is left as ``Unresolved``: the first error is then reported at the
    key the user set (it comes first in the schema), or else at the interpolation."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(cfg, DictConfig):
        try:
            data = OmegaConf.to_container(cfg, resolve=True)
        except OmegaConfBaseException:
            data = _resolve_each(cfg)
    else:
        data = dict(cfg)
    data.pop("hydra", None)
    return data


def _resolve_each(node):
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    keys = list(node.keys()) if isinstance(node, DictConfig) else range(len(node))
    out = {} if isinstance(node, DictConfig) else []
    for k in keys:
        child = node._get_node(k)
        if child is not None and child._is_interpolation():
            try:
                value = node[k]
                value = OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
            except OmegaConfBaseException as e:
                value = Unresolved(e)
        elif isinstance(child, (DictConfig, ListConfig)):
            value = None if child._is_none() else _resolve_each(child)
        else:
            value = child._value() if child is not None else None
        if isinstance(out, dict):
            out[k] = value
        else:
            out.append(value)
    return out


def validate_config(cfg) -> TrainConfig:
    """Check the composed config against the schema; the first problem is a one-line ``ConfigError``."""
    data = plain(cfg)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(message(e.errors()[0], data)) from None


_MISSING = object()


def message(error: dict, data: dict) -> str:
    """One pydantic error as one line: ``<dotted key> must be <what is valid>, got <value>``."""
    kind, loc = error["type"], error["loc"]
    parts, value = [], data
    for i, el in enumerate(loc):  # keep the locations that are keys of the data (not union tags or list indices)
        if isinstance(value, Mapping) and el in value:
            parts.append(el)
            value = value[el]
        elif kind == "missing" and i == len(loc) - 1:
            parts.append(el)
            value = _MISSING
    ctx = error.get("ctx") or {}
    key = ".".join(map(str, parts)) or "the config"
    if isinstance(value, Unresolved):
        return f"{key}: {value.text}"
    if kind == "gopd_component":
        key = ".".join(map(str, [*parts, ctx["key"]]))
        return f"{key} must be a _target_ node (a mapping whose _target_ names what to build) or null, got {_show(value.get(ctx['key']))}"
    if kind == "gopd_reserved":
        key = ".".join(map(str, [*parts, ctx["key"]]))
        return (f"{key} is set by gopd.run itself and cannot be given (trainer takes any other Lightning Trainer "
                f"keyword; not {', '.join(RUN_SETS)})")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = _tags(field_type(parts, data))
        got = _show(value.get("name", _MISSING) if isinstance(value, Mapping) else value)
        return f"{key}.name must be one of {', '.join(tags)}, got {got}"
    if kind == "extra_forbidden":
        owner = node_model(parts[:-1], data)
        where = ".".join(map(str, parts[:-1])) or "the config"
        if len(parts) == 2 and parts[0] in GROUPS and owner is not None:
            where = f"{where}={_tags(owner)[0]}"  # the keys of the selected option
        keys = ", ".join(f.alias or n for n, f in owner.model_fields.items()) if isinstance(owner, type) else ""
        return f"{key} is not a key of {where} (keys: {keys})"
    return f"{key} must be {valid_text(parts, data)}, got {_show(value)}"


def _show(value, limit: int = 80) -> str:
    if value is _MISSING:
        return "nothing"
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _strip(tp):
    """``Annotated[T, ...]`` -> (T, [metadata])."""
    meta = []
    while get_origin(tp) is Annotated:
        tp, *more = get_args(tp)
        meta = [*more, *meta]
    return tp, meta


def _is_union(tp) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_model(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _members(tp) -> list:
    """The alternatives of a type, unions flattened and ``Annotated`` stripped."""
    tp, _ = _strip(tp)
    return [m for a in get_args(tp) for m in _members(a)] if _is_union(tp) else [tp]


def _tags(tp) -> list[str]:
    """The ``name`` values of a group's options (one model, or a union of them)."""
    return [v for m in _members(tp) if _is_model(m) and "name" in m.model_fields
            for v in get_args(m.model_fields["name"].annotation)]


def _model_of(tp, value):
    """The model a mapping is validated against: a union of models is narrowed by its ``name``."""
    models = [m for m in _members(tp) if _is_model(m)]
    if not models or not isinstance(value, Mapping):
        return None
    for m in models:
        if "name" in m.model_fields and value.get("name") in get_args(m.model_fields["name"].annotation):
            return m
    return models[0]


def _field(model, key) -> FieldInfo | None:
    for name, f in model.model_fields.items():
        if key in (name, f.alias):
            return f
    return None


def _walk(parts, data):
    """Along a dotted key: (the type at its end, its FieldInfo or None, the value there); Nones
    when the key is not in the schema."""
    tp, info, value = TrainConfig, None, data
    for p in parts:
        model = _model_of(tp, value)
        if model is not None:
            info = _field(model, p)
            if info is None:
                return None, None, None
            tp = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        else:
            maps = [m for m in _members(tp) if get_origin(m) is dict]
            if not maps or not isinstance(value, Mapping):
                return None, None, None
            tp, info = get_args(maps[0])[1], None
        value = value.get(p) if isinstance(value, Mapping) else None
    return tp, info, value


def field_type(parts, data):
    return _walk(parts, data)[0]


def node_model(parts, data):
    tp, _, value = _walk(parts, data)
    return _model_of(tp, value) if tp is not None else None


def valid_text(parts, data) -> str:
    tp, info, _ = _walk(parts, data)
    if tp is None:
        return "a known key"
    extra = (info.json_schema_extra if info is not None else None) or {}
    text = extra.get("valid") or describe(tp)
    return f"{text} ({extra['note']})" if extra.get("note") else text


def _num(x) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return str(x)


def _range(meta) -> str:
    lo = hi = None
    for m in meta:
        items = m.metadata if isinstance(m, FieldInfo) else [m]
        for c in items:
            if isinstance(c, at.Gt):
                lo = ("(", ">", c.gt)
            elif isinstance(c, at.Ge):
                lo = ("[", ">=", c.ge)
            elif isinstance(c, at.Lt):
                hi = (")", "<", c.lt)
            elif isinstance(c, at.Le):
                hi = ("]", "<=", c.le)
    if lo and hi:
        return f"in {lo[0]}{_num(lo[2])}, {_num(hi[2])}{hi[0]}"
    if lo:
        return f"{lo[1]} {_num(lo[2])}"
    if hi:
        return f"{hi[1]} {_num(hi[2])}"
    return ""


def _min_len(meta) -> int:
    for m in meta:
        for c in (m.metadata if isinstance(m, FieldInfo) else [m]):
            if isinstance(c, (at.MinLen, StringConstraints)) and getattr(c, "min_length", None):
                return c.min_length
    return 0


def describe(tp) -> str:
    """What a type accepts, in words: ``a number > 0``, ``one of a, b``, ``an integer >= 1 or null``."""
    tp, meta = _strip(tp)
    if _is_union(tp):
        args = get_args(tp)
        texts = (describe(Annotated[(a, *meta)] if meta else a) for a in args if a is not type(None))
        text = " or ".join(dict.fromkeys(texts))  # a union of option models: "a mapping" once
        return f"{text} or null" if type(None) in args else text
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(dict.fromkeys(str(a) for a in get_args(tp)))
    if tp is float:
        base = "a number"
    elif tp is bool:
        base = "true or false"
    elif tp is int:
        base = "an integer"
    elif tp is str:
        base = "a non-empty string" if _min_len(meta) else "a string"
    elif get_origin(tp) in (list, tuple):
        base = "a non-empty list" if _min_len(meta) else "a list"
    elif get_origin(tp) is dict or _is_model(tp):
        base = "a mapping"
    elif tp is Any:
        base = "any value"
    else:
        base = str(tp)
    return f"{base} {_range(meta)}".strip()


def fields(model) -> dict[str, FieldInfo]:
    """A model's fields by the key written in the config (the alias where there is one)."""
    return {f.alias or n: f for n, f in model.model_fields.items()}


