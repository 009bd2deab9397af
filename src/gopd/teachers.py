"""Builders of the teacher and reference scorers, one per config-group option.

``TEACHERS[cfg.teacher.name](cfg.teacher, ctx)`` and ``REFERENCES[cfg.reference.name](cfg.reference, ctx,
teacher)`` return a ``Scorer``; each builder reads its own config section, and the ``Context`` holds
what they share. ``reference=teacher`` returns the teacher scorer itself (``r = q``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gopd.lora import AdapterDisabled, has_lora
from gopd.pool import ModelPool, checkpoint_key
from gopd.prompts import PromptBuilder
from gopd.scoring import EMA, Route, Scorer


@dataclass
class Context:
    """What the builders share: the trainable student, its checkpoint, the pool, the prompts."""

    student: torch.nn.Module
    student_path: str
    tokenizer: object
    pool: ModelPool
    problem_field: str
    domain_field: str
    chunk_size: int
    ema: list[EMA] = field(default_factory=list)  # EMA teachers to update after each step
    prompt_style: dict = field(default_factory=dict)  # problem template + chat-template kwargs (prompts.prompt_style)
    _plain: PromptBuilder | None = field(default=None, init=False, repr=False)

    def plain_prompts(self) -> PromptBuilder:
        """The student's prompt builder, one instance: the rollout and every plain-prompt scorer
        share its rendered prompts."""
        if self._plain is None:
            self._plain = PromptBuilder(self.tokenizer, problem_field=self.problem_field, **self.prompt_style)
        return self._plain

    def frozen(self, path: str) -> torch.nn.Module:
        """The frozen model of checkpoint ``path``, loaded once. With a LoRA student, its own
        checkpoint is the student with the adapters off (``lora.AdapterDisabled``): no second copy."""
        if has_lora(self.student) and checkpoint_key(path) == checkpoint_key(self.student_path):
            return AdapterDisabled(self.student)
        return self.pool.get(path)


def hinted_teacher(t, ctx: Context) -> Scorer:
    prompts = PromptBuilder(ctx.tokenizer, hint_field=t.hint_field, hint_template=t.hint_template,
                            problem_field=ctx.problem_field, **ctx.prompt_style)
    if t.weights == "initial":
        model = ctx.frozen(ctx.student_path)
    elif t.weights == "live":
        model = ctx.student
    elif t.weights == "ema":
        ema = EMA(ctx.student, t.ema_decay)
        ctx.ema.append(ema)
        model = ema.model
    else:
        raise ValueError(f"teacher.weights must be one of initial, live, ema, got {t.weights!r}")
    return Scorer({"hinted": Route(model, prompts)}, chunk_size=ctx.chunk_size)


def checkpoint_teacher(t, ctx: Context) -> Scorer:
    return Scorer({"teacher": Route(ctx.frozen(t.path), ctx.plain_prompts())}, chunk_size=ctx.chunk_size)


def expert_teachers(t, ctx: Context) -> Scorer:
    routes = {domain: Route(ctx.frozen(path), ctx.plain_prompts()) for domain, path in t.experts.items()}
    default = t.get("default")

    def route_of(row, i):
        domain = row.get(ctx.domain_field)
        if domain in routes:
            return domain
        if default is not None:
            return default
        raise ValueError(f"teacher.experts has no expert for domain {domain!r} (row {row.get('id', i)}) "
                         f"and teacher.default is null; known domains: {', '.join(routes)}")

    return Scorer(routes, route_of, chunk_size=ctx.chunk_size)


def student_reference(r, ctx: Context, teacher: Scorer) -> Scorer:
    return Scorer({"student0": Route(ctx.frozen(ctx.student_path), ctx.plain_prompts())}, chunk_size=ctx.chunk_size)


def teacher_reference(r, ctx: Context, teacher: Scorer) -> Scorer:
    return teacher  # r = q: the estimators see `reference is teacher` and score once


def pre_rl_reference(r, ctx: Context, teacher: Scorer) -> Scorer:
    return Scorer({"pre_rl": Route(ctx.frozen(r.path), ctx.plain_prompts())}, chunk_size=ctx.chunk_size)


TEACHERS = {"hinted": hinted_teacher, "rl_checkpoint": checkpoint_teacher, "domain_experts": expert_teachers}
REFERENCES = {"student": student_reference, "teacher": teacher_reference, "pre_rl": pre_rl_reference}


def teacher_paths(t) -> dict[str, str]:
    """Config key -> checkpoint path, for every checkpoint the teacher section names."""
    if t.name == "rl_checkpoint":
        return {"teacher.path": t.path}
    if t.name == "domain_experts":
        return {f"teacher.experts.{domain}": path for domain, path in t.experts.items()}
    return {}
