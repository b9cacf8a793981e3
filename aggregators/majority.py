"""Majority (plurality) voting over extracted answers.

A pure aggregator: it makes no model call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agentfab.aggregators.base import (
    AggregationContext,
    BaseAggregator,
    canonical,
    vote_note,
    vote_stats,
)
from agentfab.messages import Message, Task


def plurality(answers: Sequence[str]) -> str | None:
    """The most frequent answer; a tie goes to the one given first in `answers`.

    Callers pass answers in canonical (message id) order, so the rule is stable
    and independent of arrival. Unlike "alphabetically first" it favours no
    option letter and no word, and with all answers different it keeps the
    first agent's.
    """
    counts = Counter(answers)  # keeps first-seen order, so max() keeps the first of equals
    return max(counts, key=counts.__getitem__) if counts else None


@dataclass(frozen=True)
class Majority(BaseAggregator):
    """The answer given most often wins; messages without an answer do not vote."""

    name: str = "majority"

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message:
        voters = [m for m in canonical(messages) if m.ok and m.answer is not None]
        winner = plurality([m.answer for m in voters if m.answer is not None])
        text = next((m.text for m in voters if m.answer == winner), "")
        stats = vote_stats([m.answer for m in voters if m.answer is not None])
        stats["voters"] = len(voters)
        return ctx.decision(
            inputs=messages,
            text=text,
            answer=winner,
            details=stats,
            confidence=stats["agreement"] if voters else None,
            note=vote_note(stats["votes"], winner),
        )
