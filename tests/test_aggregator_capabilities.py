"""What an aggregator declares (`needs`, `models()`) is what a run asks of its agents and
checks before any call; a user's own aggregator declares it the same way as the built-ins."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from agentfab import Agent, ConfigError, Message, Orchestrator, Task
from agentfab.aggregators import BradleyTerry, ConfidenceWeighted, Majority, SelfAggregate
from agentfab.aggregators.base import AggregationContext, BaseAggregator, Needs
from agentfab.prompts import CONFIDENCE_INSTRUCTION
from agentfab.team import Aggregate
from agentfab.topologies import chain, custom, star
from tests.scripted import ScriptedClient


@dataclass(frozen=True)
class Picky(BaseAggregator):
    """A user's aggregator: it reads stated confidences and logprobs, and asks a judge."""

    judge: str = "judge"
    name: str = "picky"

    @property
    def needs(self) -> Needs:
        return Needs(stated_confidence=True, logprobs=True)

    def models(self) -> list[str]:
        return [self.judge]

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message:
        best = max(messages, key=lambda m: m.confidence or 0.0)
        return ctx.decision(inputs=messages, text=best.text, answer=best.answer, details={})


def agents(*names: str) -> list[Agent]:
    return [Agent(name=n, role=f"You are {n}.") for n in names]


def answering(reply: str = "Answer: B\nConfidence: 0.8") -> ScriptedClient:
    return ScriptedClient(lambda request: (reply, 0.0))


def test_the_built_ins_declare_what_they_read_and_call() -> None:
    assert Majority().needs == Needs()
    assert Majority().models() == []
    assert ConfidenceWeighted().needs == Needs(stated_confidence=True)
    assert ConfidenceWeighted(source="logprob").needs == Needs(logprobs=True)
    assert BradleyTerry().models() == []  # peer judges: the candidates' own models
    assert BradleyTerry(judge=("j2", "j1", "j2")).models() == ["j1", "j2"]
    assert SelfAggregate(model="writer").models() == ["writer"]
    assert Needs(logprobs=True) | Needs(stated_confidence=True) == Needs(True, True)


async def test_the_agents_a_user_aggregator_reads_are_asked_for_what_it_needs() -> None:
    client = answering()
    clients = {"default": client, "judge": answering()}
    result = await Orchestrator(clients).run(star(agents("a", "b"), Picky()), "q")
    assert result.answer == "b"  # a short answer, normalised
    assert [m.confidence for m in result.messages if m.kind == "agent"] == [0.8, 0.8]
    assert len(client.requests) == 2
    for request in client.requests:
        assert request.logprobs
        assert CONFIDENCE_INSTRUCTION in request.messages[-1]["content"]


async def test_only_the_agents_an_aggregator_reads_are_asked() -> None:
    # a -> b -> vote(b): only b is read by the aggregator that needs logprobs
    a, b = agents("a", "b")
    team = custom([a, b, Aggregate("vote", Picky())], [("a", "b"), ("b", "vote")])
    client = answering()
    await Orchestrator({"default": client, "judge": answering()}).run(team, "q")
    asked = {r.messages[-1]["content"].endswith("You are b."): r.logprobs for r in client.requests}
    assert asked == {True: True, False: False}


async def test_a_user_aggregators_judge_without_a_client_is_refused_before_any_call() -> None:
    client = answering()
    with pytest.raises(ConfigError, match="aggregate node 'hub' uses model 'judge'"):
        await Orchestrator({"default": client}).run(star(agents("a"), Picky()), "q")
    assert client.requests == []


def test_an_aggregator_without_its_declarations_is_refused_with_what_it_lacks() -> None:
    class Bare:
        name = "bare"

        async def aggregate(self, task: Task, messages: object, ctx: object) -> Message:
            raise AssertionError("never run")

    with pytest.raises(ConfigError, match=r"is not an aggregator .*`needs`, `models\(\)`"):
        chain(agents("a"), vote=Bare())  # type: ignore[arg-type]
