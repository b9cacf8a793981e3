"""`run_many` / `arun_many`: many tasks, each yielded once with its id as it finishes; one
task's failure is its own; concurrency is bounded; mistakes are one line."""

from __future__ import annotations

import asyncio
import re

import pytest

from agentfab import Agent, BackendError, Budget, ConfigError, Task, arun_many, run_many
from agentfab.aggregators import Majority
from agentfab.llm import ChatRequest, ChatResponse, Completion
from agentfab.topologies import star

TEAM = star([Agent(name=f"w{i}", role=f"r{i}") for i in range(3)], Majority())


class Echo:
    """Answers each question `Q<n>?` with `Answer: <n>`; `slow` questions take longer, `down`
    ones fail; counts calls in flight."""

    def __init__(self, slow: frozenset[int] = frozenset(), down: frozenset[int] = frozenset()):
        self.slow, self.down = slow, down
        self.in_flight = self.most = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        text = " ".join(str(m["content"]) for m in request.messages)
        n = int(re.findall(r"Q(\d+)\?", text)[0])
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.3 if n in self.slow else 0.01)
        finally:
            self.in_flight -= 1
        if n in self.down:
            raise BackendError("http://x/v1: 503", endpoint="http://x/v1")
        return ChatResponse([Completion(f"Answer: {n}")], prompt_tokens=10, completion_tokens=3)

    async def aclose(self) -> None:
        return None


def clients(echo: Echo) -> dict[str, Echo]:
    return {"default": echo}


def test_every_task_comes_back_once_with_its_id_and_its_own_answer() -> None:
    echo = Echo()
    done = list(run_many(TEAM, [f"Q{i}?" for i in range(20)], clients=clients(echo)))
    assert sorted(d.task_id for d in done) == sorted(str(i) for i in range(20))
    assert all(d.ok and d.result is not None for d in done)
    assert {d.task_id: d.result.answer for d in done if d.result} == {
        str(i): str(i) for i in range(20)
    }
    assert all(d.worker is None for d in done)


async def test_tasks_are_yielded_as_they_finish_not_in_the_order_given() -> None:
    tasks = {"slow": "Q0?", "fast": "Q1?"}
    order = [d.task_id async for d in arun_many(TEAM, tasks, clients=clients(Echo({0})))]
    assert order == ["fast", "slow"]


async def test_one_tasks_failure_is_its_own_and_the_others_finish() -> None:
    echo = Echo(down=frozenset({3}))
    done = {
        d.task_id: d
        async for d in arun_many(TEAM, [f"Q{i}?" for i in range(6)], clients=clients(echo))
    }
    assert len(done) == 6
    assert isinstance(done["3"].error, Exception) and not done["3"].ok
    assert all(done[str(i)].ok for i in range(6) if i != 3)


async def test_a_task_out_of_budget_is_reported_with_what_it_did() -> None:
    done = [
        d
        async for d in arun_many(TEAM, ["Q1?"], clients=clients(Echo()), budget=Budget(max_calls=1))
    ]
    (only,) = done
    assert only.error is not None and "budget" in str(only.error).lower()
    assert only.result is not None and not only.result.complete


async def test_no_more_tasks_run_at_once_than_asked() -> None:
    echo = Echo(slow=frozenset(range(12)))
    done = [
        d
        async for d in arun_many(
            TEAM, [f"Q{i}?" for i in range(12)], clients=clients(echo), concurrency=2
        )
    ]
    assert len(done) == 12
    assert echo.most == 2 * 3  # two tasks, three agents each


def test_tasks_keep_their_own_ids_and_a_repeated_id_is_refused() -> None:
    named = [Task(prompt="Q1?", id="first"), "Q2?"]
    assert sorted(d.task_id for d in run_many(TEAM, named, clients=clients(Echo()))) == [
        "1",
        "first",
    ]
    with pytest.raises(ConfigError, match="task id 'same' appears twice"):
        list(run_many(TEAM, [Task(prompt="Q1?", id="same")] * 2, clients=clients(Echo())))


def test_open_clients_cannot_go_to_ray_workers() -> None:
    with pytest.raises(ConfigError, match="open clients cannot travel to ray workers"):
        list(run_many(TEAM, ["Q1?"], clients=clients(Echo()), executor={"kind": "ray"}))


def test_a_bad_setting_is_one_line() -> None:
    with pytest.raises(ConfigError, match="executor"):
        list(run_many(TEAM, ["Q1?"], clients=clients(Echo()), executor={"kind": "slurm"}))
