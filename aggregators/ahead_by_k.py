"""First-to-ahead-by-k voting (after MAKER): sample until one answer leads every other by k.

It asks for samples through `ctx.sample` only; who is asked is the orchestrator's.
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
from agentfab.errors import ConfigError
from agentfab.messages import Message, Task, Usage


def lead(counts: Counter[str]) -> tuple[str | None, int]:
    """The leading answer (ties: the one counted first) and its lead over the runner-up."""
    if not counts:
        return None, 0
    ranked = sorted(counts.items(), key=lambda item: -item[1])  # stable: first counted first
    runner_up = ranked[1][1] if len(ranked) > 1 else 0
    return ranked[0][0], ranked[0][1] - runner_up


@dataclass(frozen=True)
class AheadByK(BaseAggregator):
    """Decide once an answer leads every other by `k` votes, or at `max_samples`.

    The node's inputs are the first votes; then it asks the agents it reads
    for more, never more than could still be needed: a lead grows by at most
    one a sample, so it asks for `k - lead` (at most `batch`) at a time and
    stops at the first sample that decides. Easy questions cost fewer tokens.

    Every sample asked for counts against `max_samples`, failed ones included, and a batch
    that brings nothing usable (every call failed, or the budget refused it) ends the
    sampling: the node then decides on what it has, decided or not (`details["stopped"]`).
    """

    k: int = 2
    max_samples: int = 10
    batch: int = 4
    name: str = "ahead_by_k"

    def __post_init__(self) -> None:
        if self.k < 1 or self.max_samples < 1 or self.batch < 1:
            raise ConfigError("ahead_by_k: k, max_samples and batch must be at least 1")

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message:
        votes = [m for m in canonical(messages) if m.ok and m.answer is not None]
        drawn = [m for m in canonical(messages) if m.ok]
        counts = Counter(m.answer for m in votes if m.answer is not None)
        # Every sample asked for counts against max_samples, failed ones too: agents whose
        # calls keep failing must not be asked forever.
        asked = len(messages)
        used = Usage()
        sample = ctx.sample
        leader, margin = lead(counts)
        while not (stopped := self._stop(margin, asked, sample is None)):
            assert sample is not None
            wanted = min(self.k - margin, self.batch, self.max_samples - asked)
            asked += wanted
            fresh = await sample(wanted)
            used += sum((m.usage for m in fresh), Usage())
            usable = [m for m in fresh if m.ok]
            if not usable:  # nobody left to ask, or every call failed: vote on what there is
                stopped = "samples failed" if fresh else "nobody left to ask"
                break
            for message in usable:
                drawn.append(message)
                if message.answer is not None:
                    votes.append(message)
                    counts[message.answer] += 1
                leader, margin = lead(counts)
                if margin >= self.k:
                    break
        stats = vote_stats([m.answer for m in votes if m.answer is not None])
        stats.update(
            samples=len(drawn),
            asked=asked,
            decided=margin >= self.k,
            stopped=stopped,
            lead=margin,
            k=self.k,
        )
        # The extra samples are messages of their own in the trace, usage included;
        # here they are only reported, so a run's usage counts every call once.
        stats["extra_samples_usage"] = used.model_dump()
        return ctx.decision(
            inputs=messages,
            text=next((m.text for m in votes if m.answer == leader), ""),
            answer=leader,
            details=stats,
            confidence=stats["agreement"] if votes else None,
            note=self._note(stats["votes"], leader, margin, stopped),
        )

    def _note(
        self, votes: dict[str, int], leader: str | None, margin: int, stopped: str
    ) -> str | None:
        """A vote that ended before any answer led by k says so: a tie, or a short lead."""
        if margin >= self.k or leader is None:
            return None
        if margin == 0:
            return vote_note(votes, leader)
        return f"led by {margin}, short of the {self.k} needed ({stopped})"

    def _stop(self, margin: int, asked: int, no_sampler: bool) -> str:
        """Why sampling ends here, or "" while it goes on."""
        if margin >= self.k:
            return "decided"
        if asked >= self.max_samples:
            return "max_samples"
        return "no sampler" if no_sampler else ""
