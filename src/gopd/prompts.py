"""Student and teacher prompts, rendered the same way through the tokenizer's chat template.

The hint goes into the user turn only, through ``hint_template``; everything else (system turn,
generation prompt) is identical between student and teacher, so a teacher/student log-prob gap
measures the hint and nothing else (a template mismatch biased teacher log-probs by +0.287
nats/token in tinker-cookbook issue 796).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_HINT_TEMPLATE = "{problem}\nHint: {hint}"


def user_content(problem: str, hint: str | None = None, hint_template: str = DEFAULT_HINT_TEMPLATE) -> str:
    """The user turn: the problem alone, or the problem with the hint through the template."""
    if hint is None:
        return problem
    return hint_template.format(problem=problem, hint=hint)


def render_prompt(tokenizer, problem: str, hint: str | None = None, hint_template: str = DEFAULT_HINT_TEMPLATE) -> str:
    """Chat-templated prompt text ending with the assistant's generation prompt."""
    messages = [{"role": "user", "content": user_content(problem, hint, hint_template)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclass(frozen=True)
class PromptBuilder:
    """Row -> prompt token ids. ``hint_field=None`` is the student's prompt."""

    tokenizer: object
    hint_field: str | None = None
    hint_template: str = DEFAULT_HINT_TEMPLATE
    problem_field: str = "problem"

    def text(self, row: Mapping) -> str:
        hint = None if self.hint_field is None else row[self.hint_field]
        return render_prompt(self.tokenizer, row[self.problem_field], hint, self.hint_template)

    def ids(self, row: Mapping) -> list[int]:
        return self.tokenizer(self.text(row), add_special_tokens=False)["input_ids"]

    def batch_ids(self, rows: list[Mapping]) -> list[list[int]]:
        return [self.ids(r) for r in rows]
