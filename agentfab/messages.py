"""What flows along the edges of a team: tasks in, messages out."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Usage(BaseModel):
    """Tokens spent by one call (or summed over many)."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    """Tokens the model read."""
    completion_tokens: int = 0
    """Tokens the model wrote."""
    calls: int = 0
    """Model calls made."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            calls=self.calls + other.calls,
        )


class Task(BaseModel):
    """One question for a team."""

    model_config = ConfigDict(frozen=True)

    prompt: str
    """The question, as every agent sees it."""
    choices: list[str] | None = None
    """Options of a multiple-choice question; they are shown lettered A, B, C, ..."""
    id: str = "task"
    """A name for the task in traces and reports."""
    data: dict[str, Any] = Field(default_factory=dict)
    """Facts for aggregators, never shown to agents (a code problem's entry point and tests)."""


class Message(BaseModel):
    """Who said what: an agent's answer or an aggregation's decision."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Unique within a run: `node@round`."""
    sender: str
    """The node that produced it."""
    kind: str = "agent"
    """`agent` (a model call) or `aggregate` (an aggregator's decision)."""
    round: int = 1
    """Round of the run that produced it (1-based)."""
    text: str = ""
    """The full text."""
    answer: str | None = None
    """The answer extracted from the text and normalised; None when none was found."""
    confidence: float | None = None
    """How sure the sender is, in [0, 1], when known."""
    inputs: list[str] = Field(default_factory=list)
    """Ids of the messages the sender read."""
    model: str | None = None
    """The model that wrote it, for agent messages."""
    usage: Usage = Usage()
    """Tokens spent producing it (for aggregations: the judge's or synthesiser's)."""
    latency_s: float = 0.0
    """Seconds from the first request to the answer (an aggregate's: its whole decision)."""
    started: float | None = None
    """Unix time its first request was sent, or its aggregation began."""
    server: str | None = None
    """Who answered an agent's call: a server's URL (the replica, in a pool), `embedded`,
    or `cache`."""
    error: str | None = None
    """Set when the sender failed; text and answer are then empty."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Method-specific diagnostics (votes, agreement, logprobs, ...)."""
    note: str | None = None
    """How the answer was reached, when a reader must be told: a tie broken by agent order,
    a decision carried by a small share, or no answer and why. Everything that prints an
    answer (`agentfab run`, `Result.note`, eval records and reports) shows this."""

    @property
    def ok(self) -> bool:
        return self.error is None
