"""The synchronous entry point: `agentfab.run(team, task)`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from agentfab.llm import LLMClient
from agentfab.messages import Task
from agentfab.orchestrator import Orchestrator, RunSettings
from agentfab.result import Result
from agentfab.team import Team


def run(
    team: Team,
    task: Task | str,
    *,
    clients: Mapping[str, LLMClient] | None = None,
    **settings: Any,
) -> Result:
    """Run `team` on `task` and wait for the result.

    Without `clients`, every model the team names is the embedded default
    model, loaded in this process. Keyword arguments are `RunSettings` fields.
    """
    return asyncio.run(_run(team, task, clients, RunSettings(**settings)))


async def _run(
    team: Team, task: Task | str, clients: Mapping[str, LLMClient] | None, settings: RunSettings
) -> Result:
    owned: list[LLMClient] = []
    if clients is None:
        from agentfab.serving.embedded import EmbeddedClient

        embedded = EmbeddedClient(seed=settings.seed if settings.seed is not None else 0)
        owned.append(embedded)
        clients = {agent.model: embedded for agent in team.agents()}
    try:
        return await Orchestrator(clients, settings).run(team, task)
    finally:
        for client in owned:
            await client.aclose()
