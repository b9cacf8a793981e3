"""`agentfab.run()` without clients: the embedded model serves the agents, a writer and a
judge, and a later run reuses the model the first one loaded. Small on purpose: two
agents, a few tokens each."""

from __future__ import annotations

import importlib

import pytest

import agentfab
from agentfab import Agent, Result
from agentfab.aggregators import BradleyTerry, SelfAggregate
from agentfab.topologies import star

pytestmark = pytest.mark.slow

TASK = "What is the capital of Italy?"


def two_agents() -> list[Agent]:
    return [Agent(name=f"w{i}", max_tokens=4, temperature=1.0) for i in range(2)]


def assert_complete(result: Result) -> None:
    assert result.complete
    assert all(m.ok for m in result.messages), [m.error for m in result.messages]


def test_a_writer_and_a_judge_run_on_the_embedded_model_loaded_once() -> None:
    shared = importlib.import_module("agentfab.run")  # the module, not the function

    written = agentfab.run(star(two_agents(), SelfAggregate("writer", max_tokens=4)), TASK, seed=0)
    assert_complete(written)
    hub = written.messages[-1]
    assert hub.sender == "hub" and hub.model == "writer" and hub.usage.calls == 1
    model = shared._embedded
    assert model is not None

    judged = agentfab.run(star(two_agents(), BradleyTerry(judge="judge")), TASK, seed=1)
    assert_complete(judged)
    assert shared._embedded is model
    # Every call of both runs, the writer's and the judge's included, went to that one model.
    assert model.stats.requests == written.usage.calls + judged.usage.calls
