"""The seam between agentfab and models: one async chat call.

Every backend (an OpenAI-compatible server, the embedded transformers model)
implements `LLMClient`. Requests and responses are plain dataclasses: they
are built on the hot path of every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agentfab.messages import Usage


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion request, OpenAI-style."""

    messages: list[dict[str, str]]
    """`[{"role": "user", "content": "..."}]`."""
    model: str
    """The name the backend serves the model under."""
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 256
    n: int = 1
    """Samples wanted from this one prompt."""
    seed: int | None = None
    logprobs: bool = False
    """Return the log-probability of each generated token."""
    top_logprobs: int = 0
    choices: list[str] | None = None
    """Structured choice: constrain the answer to one of these strings, where supported."""
    stop: list[str] | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Completion:
    """One sample of a response."""

    text: str
    finish_reason: str = "stop"
    logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True, slots=True)
class ChatResponse:
    completions: list[Completion]
    """`n` samples, in order."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    server: str = ""
    """Who answered: a server's URL, `embedded`, or `cache` (the call cache)."""

    @property
    def usage(self) -> Usage:
        """What this response cost, as one call."""
        return Usage(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, calls=1
        )


@runtime_checkable
class LLMClient(Protocol):
    """A model backend. Implementations bound their own concurrency and retries."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Answer one request; raise `BackendError` naming the endpoint on failure."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...


@runtime_checkable
class ReportsServerCounters(Protocol):
    """A client whose servers publish counters (vLLM's `/metrics`)."""

    async def server_counters(self) -> dict[str, dict[str, float]]:
        """Endpoint -> counter name -> value, now (see agentfab.server_metrics)."""
        ...
