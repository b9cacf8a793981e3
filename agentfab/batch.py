"""Many tasks at once: `agentfab.run_many(team, tasks)` and its async twin `arun_many`.

Each task runs as `agentfab.run` would run it, many at a time, in this process or over a
pool of Ray workers (`executor={"kind": "ray", ...}`, see `agentfab.executors`); each
`Done` is yielded as soon as its task finishes, in no set order. One task's failure (a
budget, a quorum, a model that did not answer) is its `Done.error`, not the batch's end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentfab.errors import AgentfabError, ConfigError

if TYPE_CHECKING:
    from agentfab.llm import LLMClient
    from agentfab.messages import Task
    from agentfab.orchestrator import RunSettings
    from agentfab.result import Result
    from agentfab.team import Team

__all__ = ["Done", "arun_many", "run_many"]

Clients = Mapping[str, "LLMClient"] | Callable[[], Mapping[str, "LLMClient"]]
"""Clients for the run: open ones (this process only), or a function that makes them, which
each Ray worker calls for its own."""


@dataclass(frozen=True)
class Done:
    """One task's end."""

    task_id: str
    result: Result | None
    """The run's Result; with an error, what was done before it (None when nothing was)."""
    error: AgentfabError | None = None
    worker: str | None = None
    """The Ray worker that ran it; None when it ran in this process."""
    lost: tuple[str, ...] = ()
    """Ray workers that died while running it: it was run again from the start."""

    @property
    def ok(self) -> bool:
        return self.error is None


def run_many(
    team: Team,
    tasks: Mapping[str, Task | str] | Iterable[Task | str],
    *,
    clients: Clients | None = None,
    concurrency: int = 16,
    **settings: Any,
) -> Iterator[Done]:
    """`arun_many`, for code without an event loop: iterate to get each task as it ends."""
    from agentfab.run import embedded_turn

    with embedded_turn(clients is None), asyncio.Runner() as runner:
        stream = arun_many(team, tasks, clients=clients, concurrency=concurrency, **settings)
        try:
            while True:
                try:
                    yield runner.run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            runner.run(stream.aclose())


async def arun_many(
    team: Team,
    tasks: Mapping[str, Task | str] | Iterable[Task | str],
    *,
    clients: Clients | None = None,
    concurrency: int = 16,
    **settings: Any,
) -> AsyncGenerator[Done]:
    """Run `team` on every task, `concurrency` at a time, yielding each `Done` as it ends.

    `tasks` is a mapping of task ids to tasks, or a sequence: a `Task` with an id of its own
    keeps it, others are named by their position ("0", "1", ...). Without `clients`, every
    model is the embedded default model (one per Ray worker, under Ray). Keyword arguments
    are `RunSettings` fields, `executor` among them; a mistake in them is a `ConfigError`.
    """
    from agentfab.executors import LocalExecutor
    from agentfab.orchestrator import RunSettings

    run_settings = RunSettings(**settings)
    if concurrency < 1:
        raise ConfigError(f"run_many: concurrency must be at least 1, not {concurrency}")
    named = _named(tasks)
    executor = run_settings.executor
    if isinstance(clients, Mapping) and not isinstance(executor, LocalExecutor):
        raise ConfigError(
            f"run_many: open clients cannot travel to {executor.kind} workers; pass a function "
            "that makes them (clients=make_clients), or none for the embedded model"
        )
    work = _TeamWork(team, run_settings, named, clients)
    stream = executor.map(work, list(named), concurrency=concurrency)
    async with contextlib.aclosing(stream) as finished:
        async for outcome in finished:
            yield Done(
                outcome.key,
                outcome.value.result,
                outcome.value.error,
                worker=outcome.worker,
                lost=outcome.lost,
            )


async def _next(stream: AsyncGenerator[Done]) -> Done:
    return await anext(stream)


def _named(tasks: Mapping[str, Task | str] | Iterable[Task | str]) -> dict[str, Task]:
    from agentfab.messages import Task

    def as_task(task: Task | str, name: str) -> Task:
        return Task(prompt=task, id=name) if isinstance(task, str) else task

    if isinstance(tasks, Mapping):
        return {str(name): as_task(task, str(name)) for name, task in tasks.items()}
    named: dict[str, Task] = {}
    default_id = Task.model_fields["id"].default
    for i, task in enumerate(tasks):
        name = task.id if not isinstance(task, str) and task.id != default_id else str(i)
        if name in named:
            raise ConfigError(f"run_many: task id {name!r} appears twice; give each its own")
        named[name] = as_task(task, name)
    return named


@dataclass
class _Outcome:
    result: Result | None
    error: AgentfabError | None = None


@dataclass
class _TeamWork:
    """A team on one task, as `agentfab.run` runs it; see `agentfab.executors.Work`."""

    team: Team
    settings: RunSettings
    tasks: dict[str, Task]
    given: Clients | None
    clients: Mapping[str, LLMClient] = field(default_factory=dict)

    async def open(self) -> None:
        if self.given is None:
            from agentfab.run import embedded_model

            # Here: the model `agentfab.run` keeps; in a Ray worker: that worker's own.
            self.clients = dict.fromkeys((m for _, m in self.team.model_uses()), embedded_model())
        else:
            self.clients = self.given if isinstance(self.given, Mapping) else self.given()

    async def close(self) -> None:
        if callable(self.given) and not isinstance(self.given, Mapping):
            from agentfab.pipeline import close_clients

            await close_clients(self.clients)

    async def run(self, key: str) -> _Outcome:
        from agentfab.errors import BudgetExceeded, QuorumNotReached
        from agentfab.orchestrator import Orchestrator

        try:
            result = await Orchestrator(self.clients, self.settings).run(self.team, self.tasks[key])
        except (BudgetExceeded, QuorumNotReached) as stopped:
            return _Outcome(stopped.partial, stopped)
        except ConfigError:
            raise  # the batch's, not this task's
        except AgentfabError as failed:
            return _Outcome(None, failed)
        return _Outcome(result)
