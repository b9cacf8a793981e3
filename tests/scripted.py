"""An in-process LLMClient that follows a script.

Only for conditions a real model cannot produce on demand: failures, slow
agents, answers that arrive in a chosen order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from agentfab import BackendError, ChatRequest, ChatResponse, Completion

Reply = str | Exception


@dataclass
class ScriptedClient:
    """`script(request) -> (reply, delay_s)`; an exception reply is raised."""

    script: Callable[[ChatRequest], tuple[Reply, float]]
    requests: list[ChatRequest] = field(default_factory=list)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        reply, delay = self.script(request)
        await asyncio.sleep(delay)
        if isinstance(reply, Exception):
            raise reply
        return ChatResponse([Completion(reply)] * request.n, prompt_tokens=10, completion_tokens=5)

    async def aclose(self) -> None:
        return None


def by_role(
    replies: dict[str, tuple[Reply, float]],
) -> Callable[[ChatRequest], tuple[Reply, float]]:
    """Reply by the agent's role text (the prompt ends with it)."""

    def script(request: ChatRequest) -> tuple[Reply, float]:
        content = request.messages[-1]["content"]
        for role, reply in replies.items():
            if content.endswith(role):
                return reply
        return BackendError("no script for this prompt", endpoint="scripted"), 0.0

    return script
