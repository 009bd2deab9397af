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
