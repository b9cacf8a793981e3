"""Orchestration under conditions a real model cannot produce on demand: failures and stragglers.

Runs against a misbehaving server sit inside `asyncio.timeout(DEADLINE)`, so a run that
no longer ends fails its test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from agentfab import (
    Agent,
    BackendError,
    Budget,
    BudgetExceeded,
    ConfigError,
    Message,
    Orchestrator,
    QuorumNotReached,
    RunSettings,
)
from agentfab.aggregators import AheadByK, Majority, SelfAggregate
from agentfab.aggregators.base import BaseAggregator
from agentfab.llm import ChatRequest, ChatResponse, LLMClient
from agentfab.openai_client import OpenAIClient
from agentfab.serving.stand_in_server import StandInServer
from agentfab.topologies import chain, star
from tests.scripted import ScriptedClient, by_role

DEADLINE = 20.0
"""Seconds any run against the scripted server may take before its test fails."""


def workers(*roles: str) -> list[Agent]:
    return [Agent(name=f"w{i}", role=role) for i, role in enumerate(roles)]


async def test_a_failed_agent_becomes_an_error_message_and_the_vote_goes_on() -> None:
    client = ScriptedClient(
        by_role(
            {
                "r0": ("Answer: Paris", 0.0),
                "r1": (BackendError("http://x/v1: 503", endpoint="http://x/v1"), 0.0),
                "r2": ("Answer: Paris", 0.0),
            }
        )
    )
    result = await Orchestrator({"default": client}).run(
        star(workers("r0", "r1", "r2"), Majority()), "q"
    )
    assert result.answer == "paris"
    failed = [m for m in result.messages if m.error]
    assert [m.sender for m in failed] == ["w1"] and "503" in (failed[0].error or "")
    assert result.messages[-1].details["voters"] == 2


async def test_quorum_aggregates_without_waiting_for_stragglers() -> None:
    client = ScriptedClient(
        by_role(
            {
                "fast0": ("Answer: yes", 0.0),
                "fast1": ("Answer: yes", 0.01),
                "slow": ("Answer: no", 30.0),
            }
        )
    )
    team = star(workers("fast0", "fast1", "slow"), Majority(), quorum=2)
    result = await Orchestrator({"default": client}).run(team, "q")
    assert result.answer == "yes"
    assert "w2" not in {m.sender for m in result.messages}  # cancelled, never answered
    assert result.wall_s < 30  # the hub did not wait for the straggler


async def test_too_few_answers_raise_quorum_not_reached_with_the_partial_result() -> None:
    boom = BackendError("http://x/v1: connection refused after 4 attempts", endpoint="http://x/v1")
    client = ScriptedClient(by_role({"a": (boom, 0.0), "b": (boom, 0.0), "c": ("Answer: ok", 0.0)}))
    team = star(workers("a", "b", "c"), Majority(), quorum=2)
    with pytest.raises(QuorumNotReached, match=r"[01] of 3 inputs answered, quorum is 2") as caught:
        await Orchestrator({"default": client}).run(team, "q")
    partial = caught.value.partial
    assert partial is not None and not partial.complete
    assert {m.sender for m in partial.messages} >= {"w0", "w1"}
    assert "connection refused" in str(caught.value)


async def test_all_failed_without_quorum_is_quorum_not_reached() -> None:
    boom = BackendError("down", endpoint="e")
    client = ScriptedClient(lambda request: (boom, 0.0))
    with pytest.raises(QuorumNotReached, match="output node 'hub' produced no answer: every input"):
        await Orchestrator({"default": client}).run(star(workers("a", "b"), Majority()), "q")


async def test_chain_agent_after_a_failure_fails_without_a_call() -> None:
    client = ScriptedClient(
        by_role({"first": (BackendError("down", endpoint="e"), 0.0), "second": ("Answer: x", 0.0)})
    )
    with pytest.raises(QuorumNotReached) as caught:
        await Orchestrator({"default": client}).run(chain(workers("first", "second")), "q")
    partial = caught.value.partial
    assert partial is not None
    assert [m.error for m in partial.messages] == [
        "down",
        "every input failed; first cause: w0@1: down",
    ]
    assert len(client.requests) == 1


async def test_call_budget_stops_the_run_and_keeps_what_was_done() -> None:
    client = ScriptedClient(lambda request: ("Answer: x", 0.0))
    settings = RunSettings(budget=Budget(max_calls=2))
    team = chain(workers("a", "b", "c", "d"))
    with pytest.raises(BudgetExceeded, match="call budget of 2 spent") as caught:
        await Orchestrator({"default": client}, settings).run(team, "q")
    partial = caught.value.partial
    assert partial is not None and not partial.complete
    assert [m.sender for m in partial.messages if m.ok] == ["w0", "w1"]
    assert partial.messages[2].error == "not run: call budget of 2 spent"
    assert len(client.requests) == 2


async def test_unknown_model_is_a_config_error_naming_the_agent() -> None:
    client = ScriptedClient(lambda request: ("x", 0.0))
    team = star([Agent(name="a", model="big")], Majority())
    with pytest.raises(ConfigError, match="agent 'a' uses model 'big', which has no client"):
        await Orchestrator({"default": client}).run(team, "q")


async def test_time_budget_raises_with_partial_result() -> None:
    client = ScriptedClient(by_role({"fast": ("Answer: x", 0.0), "slow": ("Answer: y", 30.0)}))
    settings = RunSettings(budget=Budget(max_seconds=0.3))
    with pytest.raises(BudgetExceeded, match="time budget") as caught:
        await Orchestrator({"default": client}, settings).run(
            star(workers("fast", "slow"), Majority()), "q"
        )
    assert caught.value.partial is not None
    assert [m.sender for m in caught.value.partial.messages] == ["w0"]


async def test_a_group_that_fails_entirely_does_not_sink_the_team() -> None:
    from agentfab.topologies import groups

    boom = BackendError("down", endpoint="e")
    client = ScriptedClient(by_role({"bad": (boom, 0.0), "good": ("Answer: yes", 0.0)}))
    members = {
        "g1": [Agent(name="a", role="bad"), Agent(name="b", role="bad")],
        "g2": [Agent(name="c", role="good")],
    }
    result = await Orchestrator({"default": client}).run(groups(members, Majority()), "q")
    assert result.answer == "yes"
    g1 = next(m for m in result.messages if m.sender == "g1")
    assert g1.error == "every input failed; first cause: a@1: down"


async def test_a_failed_output_is_an_error_not_an_empty_answer() -> None:
    client = ScriptedClient(by_role({"first": ("Answer: x", 0.0),
                                     "last": (BackendError("down", endpoint="e"), 0.0)}))
    with pytest.raises(QuorumNotReached, match="output node 'w1' produced no answer: down"):
        await Orchestrator({"default": client}).run(chain(workers("first", "last")), "q")


async def test_an_unreachable_quorum_fails_without_waiting_for_stragglers() -> None:
    boom = BackendError("down", endpoint="e")
    client = ScriptedClient(by_role({"a": (boom, 0.0), "b": (boom, 0.0), "slow": ("Answer: x", 30.0)}))
    team = star(workers("a", "b", "slow"), Majority(), quorum=2)
    with pytest.raises(QuorumNotReached, match="0 of 3 inputs answered, quorum is 2"):
        async with asyncio.timeout(5):
            await Orchestrator({"default": client}).run(team, "q")


async def test_copies_of_a_seeded_agent_draw_different_seeds() -> None:
    client = ScriptedClient(lambda request: ("Answer: x", 0.0))
    copies = [Agent(name=f"w-{i}", seed=7) for i in range(3)]
    await Orchestrator({"default": client}, RunSettings(rounds=2)).run(star(copies, Majority()), "q")
    seeds = [r.seed for r in client.requests]
    assert len(seeds) == 6 and len(set(seeds)) == 6


async def test_same_seed_same_requests() -> None:
    first = ScriptedClient(lambda request: ("Answer: x", 0.0))
    second = ScriptedClient(lambda request: ("Answer: x", 0.0))
    team = star(workers("r0", "r1", "r2"), Majority())
    for client in (first, second):
        await Orchestrator({"default": client}, RunSettings(seed=3)).run(team, "q")
    key = sorted((r.seed, r.messages[-1]["content"]) for r in first.requests)
    assert key == sorted((r.seed, r.messages[-1]["content"]) for r in second.requests)


async def test_calls_of_cancelled_stragglers_are_counted() -> None:
    client = ScriptedClient(by_role({"f0": ("Answer: y", 0.0), "f1": ("Answer: y", 0.0),
                                     "slow": ("Answer: n", 30.0)}))
    team = star(workers("f0", "f1", "slow"), Majority(), quorum=2)
    result = await Orchestrator({"default": client}).run(team, "q")
    assert len(client.requests) == 3
    assert result.usage.calls == 3  # the straggler was asked, so it counts against budgets


async def test_a_judge_model_without_a_client_is_refused_before_any_call() -> None:
    from agentfab.aggregators import BradleyTerry, SelfAggregate

    client = ScriptedClient(lambda request: ("Answer: x", 0.0))
    for aggregator in (BradleyTerry(judge="judge"), SelfAggregate(model="writer")):
        with pytest.raises(ConfigError, match="aggregate node 'hub' uses model"):
            await Orchestrator({"default": client}).run(star(workers("a"), aggregator), "q")
    assert client.requests == []


def answers(*texts: str) -> Any:
    """A scripted server's reply: these texts, one a sample, the last one from then on."""
    replies = itertools.chain(texts, itertools.repeat(texts[-1]))

    def reply(body: Mapping[str, Any]) -> str:
        return next(replies)

    return reply


async def test_ahead_by_k_ends_with_what_it_has_once_its_samples_fail() -> None:
    server = StandInServer("Answer: B", faults=[None], then=500)  # one answer, then 500s
    team = star(workers("r0"), AheadByK(k=2, max_samples=10))
    async with server as base_url, OpenAIClient(base_url, retries=0) as client:
        async with asyncio.timeout(DEADLINE):
            result = await Orchestrator({"default": client}).run(team, "q")
    decision = result.messages[-1]
    assert result.answer == "b" and not decision.details["decided"]
    assert decision.details["stopped"] == "samples failed"
    failed = [m for m in result.messages if m.error]
    assert [m.id for m in failed] == ["w0@1.2"] and "HTTP 500" in (failed[0].error or "")
    assert len(server.requests) == 2 and result.usage.calls == 2


async def test_ahead_by_k_stops_sampling_once_the_budget_refuses_a_call() -> None:
    server = StandInServer(answers("Answer: x", "Answer: y"))
    team = star(workers("r0"), AheadByK(k=3, max_samples=10))
    settings = RunSettings(budget=Budget(max_calls=2))
    async with server as base_url, OpenAIClient(base_url, retries=0) as client:
        with pytest.raises(BudgetExceeded, match="call budget of 2 spent") as caught:
            async with asyncio.timeout(DEADLINE):
                await Orchestrator({"default": client}, settings).run(team, "q")
    partial = caught.value.partial
    assert partial is not None
    decision = partial.messages[-1]
    # x | one call for 2 samples: y, y | the third call is refused: y leads by 1, undecided
    assert (decision.answer, decision.details["decided"]) == ("y", False)
    assert [m.error for m in partial.messages if m.error] == ["not run: call budget of 2 spent"]
    assert len(server.requests) == 2


class Deadlined:
    """A user's client that bounds each call with its own deadline: it raises TimeoutError."""

    def __init__(self, inner: OpenAIClient, seconds: float) -> None:
        self.inner, self.seconds = inner, seconds

    async def chat(self, request: ChatRequest) -> ChatResponse:
        async with asyncio.timeout(self.seconds):
            return await self.inner.chat(request)

    async def aclose(self) -> None:
        return None  # the inner client is closed by whoever opened it


@pytest.mark.parametrize("max_seconds", [None, 600.0])
async def test_a_clients_timeout_fails_its_agent_not_the_run(max_seconds: float | None) -> None:
    server = StandInServer("Answer: B", faults=["hang"])  # one of the three calls hangs
    team = star(workers("r0", "r1", "r2"), Majority())
    settings = RunSettings(budget=Budget(max_seconds=max_seconds))
    async with server as base_url, OpenAIClient(base_url) as inner:
        client = Deadlined(inner, 0.2)
        async with asyncio.timeout(DEADLINE):
            result = await Orchestrator({"default": client}, settings).run(team, "q")
    assert result.complete and result.answer == "b"
    failed = [m for m in result.messages if m.error]
    assert len(failed) == 1 and failed[0].error == "model 'default': the client timed out"
    assert result.messages[-1].details["voters"] == 2


async def test_a_writers_timeout_fails_its_node_not_the_run() -> None:
    agents, writer = StandInServer("Answer: B"), StandInServer(faults=["hang"])
    team = star(workers("r0"), SelfAggregate(model="writer"))
    async with agents as a, writer as w, OpenAIClient(a) as client, OpenAIClient(w) as slow:
        clients: dict[str, LLMClient] = {"default": client, "writer": Deadlined(slow, 0.2)}
        with pytest.raises(QuorumNotReached, match=r"'hub' produced no answer: .*timed out"):
            async with asyncio.timeout(DEADLINE):
                await Orchestrator(clients).run(team, "q")


async def test_a_timeout_error_that_is_not_the_deadline_is_not_a_budget_stop() -> None:
    class Stalls(BaseAggregator):
        name = "stalls"

        async def aggregate(self, task: object, messages: object, ctx: object) -> Message:
            raise TimeoutError("an aggregator's own")

    client = ScriptedClient(lambda request: ("Answer: x", 0.0))
    settings = RunSettings(budget=Budget(max_seconds=600))
    with pytest.raises(TimeoutError, match="an aggregator's own"):
        await Orchestrator({"default": client}, settings).run(star(workers("a"), Stalls()), "q")
