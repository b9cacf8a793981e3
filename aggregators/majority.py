"""Majority (plurality) voting over extracted answers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agentfab.aggregators.base import AggregationContext, canonical, vote_stats
from agentfab.messages import Message, Task


def plurality(answers: Sequence[str]) -> str | None:
    """The most frequent answer; ties go to the alphabetically first, so the rule is stable."""
    counts = Counter(answers)
    if not counts:
        return None
    return min(counts, key=lambda a: (-counts[a], a))


@dataclass(frozen=True)
class Majority:
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
        )
