"""gopd.prompts: the user turn with and without the hint, {problem} vs {raw_problem}, and the OPSD
repository's teacher turn reproduced character for character."""

import pytest

from gopd.prompts import user_content

PROBLEM, SOLUTION = "What is 12+34?", "12+34 = 46, so \\boxed{46}."
INSTRUCTION = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."


def test_problem_template_reaches_both_turns_through_problem():
    assert user_content(PROBLEM, problem_template="Q: {problem}" + INSTRUCTION) == "Q: " + PROBLEM + INSTRUCTION
    hinted = user_content(PROBLEM, "46", "{problem}\nHint: {hint}", "Q: {problem}")
    assert hinted == f"Q: {PROBLEM}\nHint: 46"
    assert user_content(PROBLEM, "46", "{raw_problem} / {hint}", "Q: {problem}") == f"{PROBLEM} / 46"


def test_opsd_teacher_and_student_turns_are_the_repositorys():
    # OPSD's data_collator.py (reason_first=False), written out as its f-strings build them:
    transition = ("\n\nAfter understanding the reference solution and the rationale behind each step, now articulate your "
                  "own step-by-step reasoning that derives the same final answer to the problem below:\n")
    teacher = (f"{PROBLEM}\n\n" f"Here is a reference solution to this problem:\n{SOLUTION}\n" f"{transition}\n"
               "Please reason step by step, and put your final answer within \\boxed{}.")
    student = f"Problem: {PROBLEM}\n\nPlease reason step by step, and put your final answer within \\boxed{{}}."
    student_template = "Problem: {problem}" + INSTRUCTION  # data.problem_template for OPSD's student turn
    assert user_content(PROBLEM, SOLUTION, "opsd", student_template) == teacher
    assert user_content(PROBLEM, None, "opsd", student_template) == student


@pytest.mark.parametrize("template,ok", [("opsd", True), ("{raw_problem}\n{hint}", True), ("{problem} {hint}", True),
                                         ("{hint} alone", False), ("{problem} only", False), ("{problem} {hint} {x}", False)])
def test_schema_accepts_a_name_or_a_template_with_the_hint_and_a_problem(template, ok):
    from pydantic import TypeAdapter, ValidationError
    from pydantic.functional_validators import AfterValidator
    from typing import Annotated

    from gopd.schema import _hint_template

    check = TypeAdapter(Annotated[str, AfterValidator(_hint_template)])
    if ok:
        assert check.validate_python(template) == template
    else:
        with pytest.raises(ValidationError):
            check.validate_python(template)


class CountingTokenizer:
    """A tokenizer stand-in (no model needed): a chat template of one line, ids = character codes;
    counts the texts it tokenised."""

    def __init__(self):
        self.calls = 0

    def apply_chat_template(self, messages, tokenize, add_generation_prompt, **kw):
        return f"<user>{messages[0]['content']}<assistant>"

    def __call__(self, texts, add_special_tokens):
        self.calls += len(texts)
        return {"input_ids": [[ord(c) for c in text] for text in texts]}


def test_a_builder_renders_each_prompt_once_and_hands_out_copies(monkeypatch):
    from gopd import prompts
    from gopd.prompts import PromptBuilder

    tok = CountingTokenizer()
    student, teacher = PromptBuilder(tok), PromptBuilder(tok, hint_field="hint")
    rows = [{"problem": "1+1", "hint": "2"}, {"problem": "2+2", "hint": "4"}] * 4  # 4 samples of 2 prompts
    ids = student.batch_ids(rows)
    assert ids[0] == [ord(c) for c in "<user>1+1<assistant>"] and ids[1] != ids[0] and tok.calls == 2
    assert teacher.ids(rows[0]) == [ord(c) for c in "<user>1+1\nHint: 2<assistant>"] and tok.calls == 3
    ids[0].append(0)  # a caller's list is its own
    assert student.ids(rows[0]) == ids[2] and tok.calls == 3
    assert student.ids({"problem": "1+1", "hint": "other"}) == ids[2]  # the student's prompt ignores the hint
    monkeypatch.setattr(prompts, "CACHED_PROMPTS", 2)
    student.ids({"problem": "3+3"})  # full: starts over, still correct
    assert student.ids(rows[1]) == ids[1] and len(student._rendered) <= 2
