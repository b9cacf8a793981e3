"""An agent that draws several samples (`samples`, the request's `n`) votes inside itself: its
message answers with the plurality of its samples' answers, a tie going to the sample given
first; samples without an answer do not vote; its details keep every sample.

Samples that disagree on demand need a scripted server (real OpenAI wire format): the
replies below are what each agent's samples say, in order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

from agentfab import Agent, Orchestrator, RunSettings
from agentfab.aggregators import Majority
from agentfab.openai_client import OpenAIClient
from agentfab.serving.stand_in_server import StandInServer
from agentfab.topologies import star

DEADLINE = 60


class Samples:
    """Replies by agent: the agent whose role ends the prompt gets its next sample text."""

    def __init__(self, **samples: list[str]) -> None:
        self.left = {f"You are {name}.": deque(texts) for name, texts in samples.items()}

    def __call__(self, body: Mapping[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        [role] = [role for role in self.left if prompt.endswith(role)]
        return self.left[role].popleft()


def agent(name: str, samples: int) -> Agent:
    return Agent(name=name, role=f"You are {name}.", samples=samples, max_tokens=16)


async def run(replies: Samples, agents: list[Agent]) -> tuple[Any, StandInServer]:
    server = StandInServer(replies)
    async with server as base_url, OpenAIClient(base_url, retries=0) as client:
        async with asyncio.timeout(DEADLINE):
            result = await Orchestrator({"default": client}, RunSettings(seed=0)).run(
                star(agents, Majority()), "What is the capital of France?"
            )
    return result, server


def message(result: Any, sender: str) -> Any:
    [found] = [m for m in result.messages if m.sender == sender]
    return found


async def test_an_agents_answer_is_the_plurality_of_its_samples() -> None:
    texts = ["Answer: Lyon", "Answer: Paris", "Answer: Marseille", "Answer: Paris", "Answer: Lyon",
             "Answer: Paris"]
    result, server = await run(Samples(a=texts), [agent("a", 6)])
    a = message(result, "a")
    assert (a.answer, a.text) == ("paris", "Answer: Paris")  # 3 of 6, though Lyon came first
    assert a.details["samples"] == texts
    assert a.details["sample_answers"] == ["lyon", "paris", "marseille", "paris", "lyon", "paris"]
    # the six samples are one request (n=6), its usage the agent's
    [body] = server.requests
    assert body["n"] == 6 and a.usage.calls == 1 and a.usage.completion_tokens == 12
    assert result.answer == "paris"


async def test_a_tie_between_samples_goes_to_the_answer_given_first() -> None:
    lyon_first = ["Answer: Lyon", "Answer: Paris", "Answer: Lyon", "Answer: Paris"]
    paris_first = ["Answer: Paris", "Answer: Lyon", "Answer: Paris", "Answer: Lyon"]
    result, _ = await run(Samples(a=lyon_first, b=paris_first), [agent("a", 4), agent("b", 4)])
    a, b = message(result, "a"), message(result, "b")
    assert (a.answer, b.answer) == ("lyon", "paris")  # not the alphabetical first, nor the last given
    assert a.details["samples"] == lyon_first and b.details["samples"] == paris_first


async def test_samples_without_an_answer_do_not_vote_and_the_chosen_text_is_a_voters() -> None:
    texts = ["Hmm.", "I do not know.", "Answer: Rome", "I cannot say."]
    result, _ = await run(Samples(a=texts), [agent("a", 4)])
    a = message(result, "a")
    assert (a.answer, a.text) == ("rome", "Answer: Rome")  # 1 vote beats 3 abstentions
    assert a.details["sample_answers"] == [None, None, "rome", None]


async def test_the_team_votes_on_the_agents_answers_not_on_their_samples() -> None:
    # Samples alone: paris 5 + 1, rome 2 + 2, lyon 1. Agents: a says paris, b and c say rome.
    replies = Samples(
        a=["Answer: Paris"] * 5,
        b=["Answer: Rome", "Answer: Lyon", "Answer: Rome"],
        c=["Answer: Rome", "Answer: Paris", "Answer: Rome"],
    )
    result, server = await run(replies, [agent("a", 5), agent("b", 3), agent("c", 3)])
    assert [message(result, s).answer for s in "abc"] == ["paris", "rome", "rome"]
    hub = result.messages[-1]
    assert hub.details["votes"] == {"paris": 1, "rome": 2} and result.answer == "rome"
    assert sorted(body["n"] for body in server.requests) == [3, 3, 5]
    assert all(not left for left in replies.left.values())  # every scripted sample was drawn
