"""What the user is told with an answer: a tie broken by agent order, a small share, no
answer and why, the first cause of a run whose inputs all failed, and every call's prompt."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from agentfab import Agent, BackendError, Message, Orchestrator, QuorumNotReached, Task
from agentfab.aggregators import (
    AggregationContext,
    AheadByK,
    ConfidenceWeighted,
    Majority,
    SelfAggregate,
)
from agentfab.aggregators.base import vote_note
from agentfab.llm import ChatRequest, ChatResponse, Completion
from agentfab.topologies import chain, star, tree
from tests.scripted import ScriptedClient, by_role

TASK = Task(prompt="What is the capital of France?")
CTX = AggregationContext(node="hub")


def msg(i: int, answer: str | None, *, error: str | None = None, **extra: Any) -> Message:
    return Message(
        id=f"a{i}@1",
        sender=f"a{i}",
        text=f"Answer: {answer}" if answer else "",
        answer=answer,
        error=error,
        **extra,
    )


def decide(messages: list[Message], aggregator: Any = None) -> Message:
    return asyncio.run((aggregator or Majority()).aggregate(TASK, messages, CTX))


# ---- the note of a vote ------------------------------------------------------------------


def test_a_tie_of_single_votes_says_it_was_broken_by_agent_order() -> None:
    out = decide([msg(i, answer) for i, answer in enumerate("vwxyz")])
    assert out.answer == "v"
    assert out.note == "tie of 5 single votes, broken by agent order"


def test_a_tie_of_larger_groups_counts_them() -> None:
    out = decide([msg(i, a) for i, a in enumerate(["y", "x", "y", "x"])])
    assert (
        out.answer == "y"
        and out.note == "tie of 2 answers with 2 votes each, broken by agent order"
    )


def test_a_plurality_below_half_says_how_small_its_share_was() -> None:
    out = decide([msg(i, a) for i, a in enumerate(["x", "x", "y", "z", "w"])])
    assert out.answer == "x" and out.note == "carried by 2 of 5 votes (40%)"


def test_a_clear_majority_has_no_note() -> None:
    assert decide([msg(0, "x"), msg(1, "x"), msg(2, "y")]).note is None
    assert decide([msg(0, "x"), msg(1, "y"), msg(2, "x"), msg(3, "z")]).note is None  # half


def test_no_answer_is_not_agreement_and_names_the_first_cause() -> None:
    out = decide([msg(1, None, note="no answer: empty reply"), msg(0, None, error="down")])
    assert out.answer is None
    assert out.details["agreement"] is None and out.details["margin"] is None
    assert out.note == "no answer: none of the 2 inputs gave an answer (first, a0@1: down)"


def test_weighted_votes_say_a_tie_of_weights_and_a_small_weighted_share() -> None:
    weighted = ConfidenceWeighted(source="stated")
    tie = decide([msg(0, "x", confidence=0.6), msg(1, "y", confidence=0.6)], weighted)
    assert tie.answer == "x"
    assert tie.note == "tie of 2 answers of equal weight (0.6 each), broken by agent order"
    small = [msg(0, "x", confidence=0.4), msg(1, "y", confidence=0.3), msg(2, "z", confidence=0.3)]
    assert decide(small, weighted).note == "carried by 0.4 of 1 weighted votes (40%)"


def test_ahead_by_k_that_never_decided_says_so() -> None:
    out = decide([msg(0, "x"), msg(1, "y")], AheadByK(k=2))  # no sampler: it stops at once
    assert out.details["decided"] is False
    assert out.note == "tie of 2 single votes, broken by agent order"
    out = decide([msg(0, "x"), msg(1, "x"), msg(2, "y")], AheadByK(k=3))
    assert out.note == "led by 1, short of the 3 needed (no sampler)"


def test_vote_note_only_speaks_of_the_answer_chosen() -> None:
    assert vote_note({}, None) is None
    assert vote_note({"a": 1}, "b") is None
    assert vote_note({"a": 3}, "a") is None


async def test_a_synthesis_without_an_answer_says_why() -> None:
    client = ScriptedClient(lambda request: ("", 0.0))
    ctx = AggregationContext(node="writer", clients={"m": client}, answer_format="short")
    candidates = [msg(0, "paris", model="m"), msg(1, "paris", model="m")]
    out = await SelfAggregate().aggregate(TASK, candidates, ctx)
    assert out.answer is None and out.details["agreement"] is None
    assert out.note == "no answer: the synthesiser's reply: empty reply"


# ---- through the orchestrator -------------------------------------------------------------


async def test_an_agent_without_an_answer_says_why_in_its_message() -> None:
    client = ScriptedClient(lambda request: ("", 0.0))
    result = await Orchestrator({"default": client}).run(chain([Agent(name="w")]), "q")
    (message,) = result.messages
    assert message.answer is None and message.details["no_answer"] == "empty reply"
    assert result.note == "no answer: empty reply"
    assert result.shown_answer == "none (no answer: empty reply)"


async def test_the_result_carries_the_tie_note_of_its_output() -> None:
    replies = {f"r{i}": (f"Answer: {city}", 0.0) for i, city in enumerate(["rome", "oslo", "bern"])}
    team = star([Agent(name=f"w{i}", role=f"r{i}") for i in range(3)], aggregator=Majority())
    result = await Orchestrator({"default": ScriptedClient(by_role(replies))}).run(team, "q")
    assert result.answer == "rome"
    assert result.note == "tie of 3 single votes, broken by agent order"
    assert result.shown_answer == "rome (tie of 3 single votes, broken by agent order)"
    assert '"note":"tie of 3 single votes' in result.to_jsonl()


async def test_samples_voting_inside_an_agent_say_a_tie_was_broken_by_sample_order() -> None:
    texts = iter(["Answer: x", "Answer: y"])

    class TwoSamples:
        async def chat(self, request: ChatRequest) -> ChatResponse:
            return ChatResponse([Completion(next(texts)) for _ in range(request.n)])

        async def aclose(self) -> None:
            return None

    team = chain([Agent(name="w", samples=2)])
    result = await Orchestrator({"default": TwoSamples()}).run(team, "q")
    assert result.note == "tie of 2 single votes, broken by sample order"


async def test_a_run_whose_inputs_all_failed_names_the_first_cause() -> None:
    down = BackendError("http://h/v1: connection refused after 4 attempts", endpoint="h")
    team = tree([Agent(name=f"w{i}") for i in range(4)], branching=2, aggregator=Majority())
    client = ScriptedClient(lambda request: (down, 0.0))
    with pytest.raises(QuorumNotReached) as caught:
        await Orchestrator({"default": client}).run(team, "q")
    # the root cause, not "every input failed" of the node below
    assert str(caught.value).endswith(
        "produced no answer: every input failed; first cause: w0-0@1: "
        "http://h/v1: connection refused after 4 attempts"
    )


def prompts(message: Message) -> list[list[Mapping[str, str]]]:
    return list(message.details.get("prompts", []))


async def test_recorded_prompts_are_every_call_as_sent() -> None:
    client = ScriptedClient(lambda request: ("Answer: paris", 0.0))
    team = star([Agent(name="w0"), Agent(name="w1")], aggregator=SelfAggregate(model="default"))
    result = await Orchestrator({"default": client}, record_prompts=True).run(team, "q")
    w0, w1, hub = result.messages
    assert [prompts(m) for m in (w0, w1, hub)] == [[r.messages] for r in client.requests]
    assert "Candidate 1:" in hub.details["prompts"][0][0]["content"]
    plain = await Orchestrator({"default": client}).run(team, "q")
    assert not any("prompts" in m.details for m in plain.messages)  # traces stay lean
