"""More samples from the agents a node reads, for first-to-ahead-by-k voting.

The aggregator asks for `n` more answers; they are dealt round-robin over the node's agents,
continuing where the samples already drawn left off, and each agent's share is drawn in one
request. How a sample is requested and read is the caller's (`draw`); this module only decides
who is asked for how many, and numbers the samples.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from agentfab.agent import Agent
from agentfab.messages import Message
from agentfab.team import Team

Draw = Callable[[Agent, int, int], Awaitable[list[Message]]]
"""`draw(agent, n, first)`: `n` more samples of `agent`'s answer, numbered from `first`."""


async def resample(
    team: Team, node: str, round_no: int, n: int, drawn: Sequence[Message], draw: Draw
) -> list[Message]:
    """`n` more samples from the agents `node` reads, given the messages `drawn` so far."""
    agents = [a for a in (team.node(x) for x in team.inputs(node)) if isinstance(a, Agent)]
    if not agents:
        return []
    taken = Counter(m.sender for m in drawn if m.round == round_no)
    start = sum(taken[a.name] for a in agents)
    shares = Counter(agents[(start + i) % len(agents)].name for i in range(n))
    batches = await asyncio.gather(
        *(draw(a, shares[a.name], 1 + taken[a.name]) for a in agents if shares[a.name])
    )
    return [m for batch in batches for m in batch]


def sample_ids(agent: str, round_no: int, first: int, n: int) -> list[str]:
    """`worker-1@2.3`: the agent's third resample in round 2 (its first answer is `@2`)."""
    return [f"{agent}@{round_no}.{first + i}" for i in range(n)]
