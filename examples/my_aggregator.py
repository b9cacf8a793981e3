"""An aggregator of your own: the answer its most confident agents give wins.

From Python, pass an instance where a built-in goes (`star(workers, MostConfident())`); from
YAML, name it (examples/my_aggregator.yaml):

    aggregator: {kind: python, ref: "my_aggregator:MostConfident", settings: {floor: 0.5}}

`BaseAggregator` declares that it needs nothing and calls no model; this one overrides
`needs`, so the agents it reads are asked to state their confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentfab import ConfigError, Message, Task
from agentfab.aggregators import AggregationContext, BaseAggregator, Needs, canonical, plurality


@dataclass(frozen=True)
class MostConfident(BaseAggregator):
    """A plurality vote among the agents at least `floor` sure of their answer (all of
    them when none is)."""

    floor: float = 0.5
    name: str = "most_confident"

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= 1.0:
            raise ConfigError(f"most_confident: floor must be in [0, 1], got {self.floor}")

    @property
    def needs(self) -> Needs:
        return Needs(stated_confidence=True)

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message:
        voters = [m for m in canonical(messages) if m.ok and m.answer is not None]
        sure = [m for m in voters if (m.confidence or 0.0) >= self.floor] or voters
        winner = plurality([m.answer for m in sure if m.answer is not None])
        return ctx.decision(
            inputs=messages,
            text=next((m.text for m in sure if m.answer == winner), ""),
            answer=winner,
            details={"voters": len(voters), "sure": [m.id for m in sure]},
        )
