"""The one interface every aggregator implements, and what it is given."""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentfab.errors import ConfigError
from agentfab.llm import ChatRequest, ChatResponse, LLMClient
from agentfab.messages import Message, Task, Usage


@dataclass(frozen=True)
class AggregationContext:
    """What an aggregator may use: where it runs, and the clients of the run's models."""

    node: str
    """The aggregating node's name."""
    round: int = 1
    clients: Mapping[str, LLMClient] = field(default_factory=dict)
    """Model name -> client, for judges and synthesisers."""
    answer_format: str = "short"
    """How answers are extracted: `letter`, `number`, `short` or `text`."""
    seed: int | None = None
    call: Callable[[str, ChatRequest], Awaitable[ChatResponse]] | None = None
    """Set by the orchestrator: sends a request through the run's budget."""
    sample: Callable[[int], Awaitable[list[Message]]] | None = None
    """Set by the orchestrator: `n` more answers from the agents this node reads."""

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        """Ask `model` (a judge, a synthesiser); counted against the run's budget."""
        if self.call is not None:
            return await self.call(model, request)
        if model not in self.clients:
            known = ", ".join(sorted(self.clients)) or "none"
            raise ConfigError(f"node {self.node!r}: no client for model {model!r} (known: {known})")
        return await self.clients[model].chat(request)

    def decision(
        self,
        *,
        inputs: Sequence[Message],
        text: str,
        answer: str | None,
        details: dict[str, Any],
        confidence: float | None = None,
        usage: Usage | None = None,
    ) -> Message:
        """The aggregator's result as a message from this node."""
        return Message(
            id=f"{self.node}@{self.round}",
            sender=self.node,
            kind="aggregate",
            round=self.round,
            text=text,
            answer=answer,
            confidence=confidence,
            inputs=sorted(m.id for m in inputs),
            usage=usage or Usage(),
            details=details,
        )


@runtime_checkable
class Aggregator(Protocol):
    """Many messages in, one message out.

    Pure aggregators make no model calls; judge-based and generative ones use
    `ctx.clients` and report what they spent in the returned message's usage.
    Implementations must not depend on the order of `messages`.
    """

    @property
    def name(self) -> str:
        """A short name for traces and reports."""
        ...

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message: ...


def derive_seed(seed: int | None, *parts: object) -> int | None:
    """A seed of its own for each agent, node, round or sample, reproducible from one run
    seed: without it, every agent of a seeded team would sample as a clone."""
    if seed is None:
        return None
    return zlib.crc32("/".join(map(str, (seed, *parts))).encode())


def canonical(messages: Sequence[Message]) -> list[Message]:
    """Messages in a fixed order (by id), so no decision depends on arrival order."""
    return sorted(messages, key=lambda m: m.id)


def vote_stats(answers: Sequence[str]) -> dict[str, Any]:
    """Agreement (top share), entropy (bits) and margin (top share minus runner-up) of answers."""
    counts = Counter(answers)
    total = sum(counts.values())
    if total == 0:
        return {"votes": {}, "agreement": 0.0, "entropy": 0.0, "margin": 0.0}
    shares = sorted((c / total for c in counts.values()), reverse=True)
    entropy = -sum(p * math.log2(p) for p in shares)
    return {
        "votes": dict(sorted(counts.items())),
        "agreement": shares[0],
        "entropy": entropy + 0.0,  # turn -0.0 into 0.0
        "margin": shares[0] - (shares[1] if len(shares) > 1 else 0.0),
    }
