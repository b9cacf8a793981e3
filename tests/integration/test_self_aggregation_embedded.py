"""Self-aggregation and mixture-of-agents end to end on the real embedded model.

The model is weak; only mechanics are checked: a new text is written, its
tokens are counted in the run, it read the right inputs.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentfab import Agent, Orchestrator, Result, RunSettings, Task
from agentfab.aggregators.self_aggregation import SelfAggregate
from agentfab.topologies import star
from agentfab.topologies.mixture import mixture_of_agents

pytestmark = pytest.mark.slow

TASK = Task(prompt="What is the capital of Italy?")


def workers(prefix: str, n: int) -> list[Agent]:
    return [Agent(name=f"{prefix}{i}", max_tokens=16) for i in range(n)]


def check_synthesis(result: Result, sender: str, inputs: list[str]) -> None:
    message = next(m for m in result.messages if m.sender == sender)
    assert message.ok and message.text.strip()
    assert message.kind == "aggregate" and message.model == "default"
    assert message.inputs == inputs
    assert message.usage.calls == 1 and message.usage.completion_tokens > 0
    assert message.details["candidates"] == len(inputs)


async def test_self_aggregation_writes_a_new_answer_in_a_star(embedded: Any) -> None:
    team = star(workers("w", 3), SelfAggregate(max_tokens=24))
    result = await Orchestrator({"default": embedded}, RunSettings(seed=0)).run(team, TASK)
    check_synthesis(result, "hub", ["w0@1", "w1@1", "w2@1"])
    hub = result.messages[-1]
    assert result.text == hub.text and result.answer == hub.answer
    assert result.usage.calls == 4  # three workers and the synthesiser
    agents = sum(m.usage.total_tokens for m in result.messages if m.kind == "agent")
    assert result.usage.total_tokens == agents + hub.usage.total_tokens


async def test_a_small_mixture_of_agents_runs_layer_by_layer(embedded: Any) -> None:
    team = mixture_of_agents(workers("p", 2), SelfAggregate(max_tokens=24), layers=[2])
    result = await Orchestrator({"default": embedded}, RunSettings(seed=0)).run(team, TASK)
    for node in ("L1-0", "L1-1"):
        check_synthesis(result, node, ["p0@1", "p1@1"])
    check_synthesis(result, "final", ["L1-0@1", "L1-1@1"])
    assert result.messages[-1].sender == "final"
    assert result.usage.calls == 2 + 2 + 1
