"""What a run returns: the answer and the full trace behind it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from agentfab.cache import CacheStats
from agentfab.messages import Message, Task, Usage
from agentfab.server_metrics import ServerStats
from agentfab.trace import trace_text


class Result(BaseModel):
    """The team's answer, every message that led to it, and what it cost."""

    model_config = ConfigDict(frozen=True)

    team: str
    task: Task
    answer: str | None
    """The output node's extracted, normalised answer."""
    text: str
    """The output node's full text."""
    messages: list[Message]
    """Every agent message and aggregation, by round and then graph order."""
    usage: Usage
    """Tokens and calls of the whole run, judges and synthesisers included."""
    wall_s: float
    rounds: int
    complete: bool = True
    """False for the partial result carried by BudgetExceeded or QuorumNotReached."""
    servers: list[ServerStats] = []
    """What each vLLM server counted during the run: prefix-cache hits, tokens, queueing."""
    cache: CacheStats | None = None
    """Calls the call cache answered (`hits`) and calls sent then stored (`misses`); None
    without a cache (`RunSettings.cache`). `usage` counts what the answers cost when made."""

    @property
    def output(self) -> Message | None:
        return self.messages[-1] if self.complete and self.messages else None

    @property
    def note(self) -> str | None:
        """How the answer was reached, when a reader must be told (the output message's
        `note`): a tie broken by agent order, a small share, no answer and why."""
        output = self.output
        return output.note if output is not None else None

    @property
    def shown_answer(self) -> str:
        """The answer as it is printed, with its note when it has one:
        `paris (tie of 5 single votes, broken by agent order)`."""
        shown = "none" if self.answer is None else self.answer
        return f"{shown} ({self.note})" if self.note else shown

    def to_jsonl(self) -> str:
        """The run's trace (`agentfab.trace`): one JSON line per message, then the result."""
        return trace_text(self)
