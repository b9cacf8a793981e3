"""Majority voting: plurality, stable ties, order independence."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from agentfab import Message, Task
from agentfab.aggregators import AggregationContext, Majority, plurality

TASK = Task(prompt="q")
CTX = AggregationContext(node="hub")


def msg(i: int, answer: str | None, error: str | None = None) -> Message:
    return Message(
        id=f"a{i}@1", sender=f"a{i}", text=f"Answer: {answer}", answer=answer, error=error
    )


def decide(messages: list[Message]) -> Message:
    return asyncio.run(Majority().aggregate(TASK, messages, CTX))


def test_plurality_wins_and_reports_its_share() -> None:
    out = decide([msg(0, "x"), msg(1, "y"), msg(2, "x"), msg(3, "z")])
    assert out.answer == "x"
    assert out.details["votes"] == {"x": 2, "y": 1, "z": 1}
    assert out.details["agreement"] == 0.5
    assert out.details["margin"] == 0.25
    assert out.details["entropy"] == 1.5
    assert out.inputs == ["a0@1", "a1@1", "a2@1", "a3@1"]
    assert out.kind == "aggregate" and out.id == "hub@1"


def test_failed_and_unanswered_messages_do_not_vote() -> None:
    out = decide([msg(0, "y"), msg(1, None), msg(2, "x", error="boom"), msg(3, "x", error="boom")])
    assert out.answer == "y"
    assert out.details["voters"] == 1


def test_ties_go_to_the_first_agent_by_id_whatever_the_arrival() -> None:
    assert plurality(["b", "a", "b", "a"]) == "b"
    assert decide([msg(1, "lyon"), msg(0, "paris")]).answer == "paris"


def test_no_votes_no_answer() -> None:
    out = decide([msg(0, None)])
    assert out.answer is None and out.confidence is None


@given(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=9), st.randoms())
def test_decision_does_not_depend_on_arrival_order(answers: list[str | None], rnd: object) -> None:
    messages = [msg(i, a) for i, a in enumerate(answers)]
    shuffled = list(messages)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = decide(messages), decide(shuffled)
    # the plurality of the answers given, a tie going to the lowest agent id's answer
    given = [a for a in answers if a is not None]
    top = max((given.count(a) for a in given), default=0)
    expected = next((a for a in given if given.count(a) == top), None)
    assert first.answer == second.answer == expected
    assert first.text == second.text
    assert first.details == second.details
