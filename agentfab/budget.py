"""A run's limits (`Budget`) and the ledger that enforces them on every model call.

The ledger only counts; it makes no calls and knows nothing of agents or messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from agentfab.errors import BudgetExceeded
from agentfab.llm import ChatRequest
from agentfab.messages import Usage
from agentfab.yaml_loader import UserModel


class Budget(UserModel):
    """Limits on one run; a call is admitted only if its worst case fits."""

    max_tokens: int | None = Field(default=None, ge=1)
    """Prompt plus completion tokens of the whole run."""
    max_calls: int | None = Field(default=None, ge=1)
    """Model calls (judges and synthesisers included)."""
    max_seconds: float | None = Field(default=None, gt=0)
    """Wall-clock seconds for the whole run."""


@dataclass
class Ledger:
    """Spent and reserved tokens and calls of one run; enforces the budget."""

    budget: Budget
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reserved_tokens: int = 0
    stopped: BudgetExceeded | None = None
    """Set once a call was refused: no call starts after that, calls in flight finish."""

    def admit(self, worst_case_tokens: int) -> None:
        b = self.budget
        committed = self.prompt_tokens + self.completion_tokens
        committed += self.reserved_tokens + worst_case_tokens
        if self.stopped is None and b.max_calls is not None and self.calls >= b.max_calls:
            self.stopped = BudgetExceeded(f"call budget of {b.max_calls} spent")
        elif self.stopped is None and b.max_tokens is not None and committed > b.max_tokens:
            self.stopped = BudgetExceeded(f"token budget of {b.max_tokens} would be exceeded")
        if self.stopped is not None:
            raise self.stopped
        self.calls += 1
        self.reserved_tokens += worst_case_tokens

    def settle(self, worst_case_tokens: int, usage: Usage) -> None:
        self.reserved_tokens -= worst_case_tokens
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.calls += usage.calls - 1  # admitted as one; the requests re-sent add theirs

    def usage(self) -> Usage:
        """Every call admitted, cancelled ones included (their tokens are unknown), and
        every request a client re-sent for one (after a timeout, to another replica)."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            calls=self.calls,
        )


def worst_case_tokens(request: ChatRequest) -> int:
    """What a call may cost at most: a generous guess of its prompt (about 3 characters a
    token, plus a chat template) and every completion at its length limit."""
    prompt = sum(len(m["content"]) for m in request.messages) // 3 + 64
    return prompt + request.max_tokens * request.n
