"""Student and teacher prompts, rendered the same way through the tokenizer's chat template.

The hint goes into the user turn only, through ``hint_template``; everything else (system turn,
generation prompt) is identical between student and teacher, so a teacher/student log-prob gap
measures the hint and nothing else (a chat-template mismatch between the two has been
measured to bias teacher log-probs by +0.287 nats/token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_HINT_TEMPLATE = "{problem}\nHint: {hint}"
PROBLEM = "{problem}"
# Named hint templates (``teacher.hint_template=<name>``). ``opsd``: the OPSD repository's released
# teacher turn (siyan-zhao/OPSD, data_collator.py, reason_first=False): the bare problem, the
# reference solution, its transition sentence and instruction; pair it with
# data.problem_template="Problem: {problem}\n\nPlease reason step by step, and put your final
# answer within \\boxed{}." for OPSD's student turn.
_OPSD_TRANSITION = ("\n\nAfter understanding the reference solution and the rationale behind each step, now articulate "
                    "your own step-by-step reasoning that derives the same final answer to the problem below:\n")
HINT_TEMPLATES = {
    "opsd": ("{raw_problem}\n\nHere is a reference solution to this problem:\n{hint}\n" + _OPSD_TRANSITION + "\n"
             "Please reason step by step, and put your final answer within \\boxed{{}}."),
}


def user_content(problem: str, hint: str | None = None, hint_template: str = DEFAULT_HINT_TEMPLATE,
                 problem_template: str = PROBLEM) -> str:
    """The user turn: the problem (through ``problem_template``, e.g. an instruction to box the
    answer), alone or with the hint through ``hint_template`` (a template or a ``HINT_TEMPLATES``
    name), where ``{problem}`` is the templated problem and ``{raw_problem}`` the column as is."""
    templated = problem_template.replace(PROBLEM, problem)  # not str.format: instructions hold "\\boxed{}"
    if hint is None:
        return templated
    return HINT_TEMPLATES.get(hint_template, hint_template).format(problem=templated, raw_problem=problem, hint=hint)


def render_prompt(tokenizer, problem: str, hint: str | None = None, hint_template: str = DEFAULT_HINT_TEMPLATE,
                  problem_template: str = PROBLEM, **template_kwargs) -> str:
    """Chat-templated prompt text ending with the assistant's generation prompt.

    ``template_kwargs`` go to the chat template (e.g. Qwen3's ``enable_thinking``), the same for
    the student and every teacher.
    """
    messages = [{"role": "user", "content": user_content(problem, hint, hint_template, problem_template)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **template_kwargs)


def prompt_style(cfg) -> dict:
    """What every prompt of a run shares, from the config: ``data.problem_template`` and
    ``model.chat_template_kwargs`` (keyword arguments of ``PromptBuilder``)."""
    kwargs = cfg.model.get("chat_template_kwargs") or {}
    return {"problem_template": cfg.data.get("problem_template") or PROBLEM,
            "template_kwargs": {str(k): v for k, v in kwargs.items()}}


CACHED_PROMPTS = 4096  # rendered prompts a builder keeps: a step's rows (n samples of a prompt, every scorer of it)


@dataclass(frozen=True)
class PromptBuilder:
    """Row -> prompt token ids. ``hint_field=None`` is the student's prompt.

    Rendering and tokenising is pure Python; a row's ids are kept (up to ``CACHED_PROMPTS``), so
    the n samples of a prompt and the scorers sharing this builder render it once per step.
    """

    tokenizer: object
    hint_field: str | None = None
    hint_template: str = DEFAULT_HINT_TEMPLATE
    problem_field: str = "problem"
    problem_template: str = PROBLEM
    template_kwargs: Mapping = field(default_factory=dict)
    _rendered: dict = field(default_factory=dict, compare=False, repr=False)

    def text(self, row: Mapping) -> str:
        return self._render(*self._key(row))

    def _key(self, row: Mapping) -> tuple[str, str | None]:
        """What the prompt depends on: the problem, and the hint for a teacher's builder."""
        return str(row[self.problem_field]), None if self.hint_field is None else str(row[self.hint_field])

    def _render(self, problem: str, hint: str | None) -> str:
        return render_prompt(self.tokenizer, problem, hint, self.hint_template, self.problem_template,
                             **self.template_kwargs)

    def ids(self, row: Mapping) -> list[int]:
        return self.batch_ids([row])[0]

    def batch_ids(self, rows: list[Mapping]) -> list[list[int]]:
        """Each row's prompt ids; the prompts not kept yet are tokenised in one call."""
        keys = [self._key(r) for r in rows]
        todo = list(dict.fromkeys(k for k in keys if k not in self._rendered))
        if todo:
            if len(self._rendered) + len(todo) > CACHED_PROMPTS:
                self._rendered.clear()
            texts = [self._render(*k) for k in todo]
            for key, ids in zip(todo, self.tokenizer(texts, add_special_tokens=False)["input_ids"]):
                self._rendered[key] = tuple(ids)
        return [list(self._rendered[k]) for k in keys]


def log_prompts(row: Mapping, student_prompts: PromptBuilder, scorers: Mapping, run_dir=None) -> str:
    """The exact rendered prompts of ``row``, once per run (a template mismatch is a silent bias):
    to the log (console and ``train.log``) and, on rank 0, to ``<run_dir>/prompts.txt``.

    ``scorers`` maps a role (``teacher``, ``reference``) to a ``Scorer`` or None.
    """
    import logging
    from pathlib import Path

    from lightning.pytorch.utilities import rank_zero_only

    parts = [("student", student_prompts.text(row))]
    for role, scorer in scorers.items():
        for name, route in getattr(scorer, "routes", {}).items():
            parts.append((f"{role} ({name})", route.prompts.text(row)))
    log = logging.getLogger("gopd")
    for label, text in parts:
        log.info("%s prompt: %r", label, text)
    out = "".join(f"===== {label} prompt =====\n{text}\n" for label, text in parts)
    if run_dir is not None and rank_zero_only.rank == 0:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "prompts.txt").write_text(out)
    return out
