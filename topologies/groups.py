"""Group-of-agents: groups are the units; only a group's aggregate crosses to other groups.

Like every topology: it builds a `Team` and runs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agentfab.agent import Agent
from agentfab.aggregators.base import Aggregator
from agentfab.team import Aggregate, Node, ShapeError, Team


def groups(
    members: Mapping[str, Sequence[Agent]],
    aggregator: Aggregator,
    *,
    links: Sequence[tuple[str, str]] = (),
    final: str = "final",
    name: str = "groups",
) -> Team:
    """Each group's agents answer and are aggregated in a node named after the group.

    A link `(a, b)` gives every member of group `b` group `a`'s aggregate to
    read. Groups nobody links onward meet in a `final` aggregate when there
    are several of them.
    """
    if not members:
        raise ShapeError(name, "groups needs at least one group", setting="groups")
    nodes: list[Node] = []
    edges: list[tuple[str, str]] = []
    for group, agents in members.items():
        if not agents:
            raise ShapeError(name, f"group {group!r} has no agents", nodes=[group])
        nodes += [*agents, Aggregate(group, aggregator)]
        edges += [(a.name, group) for a in agents]
    for src, dst in links:
        for end in (src, dst):
            if end not in members:
                raise ShapeError(
                    name,
                    f"link {src}->{dst} names unknown group {end!r}",
                    edges=[(src, dst)],
                    setting="links",
                )
        edges += [(src, a.name) for a in members[dst]]
    linked_onward = {src for src, _ in links}
    outputs = [g for g in members if g not in linked_onward]
    if len(outputs) > 1:
        nodes.append(Aggregate(final, aggregator))
        edges += [(g, final) for g in outputs]
    team = Team.from_edges(nodes, edges, name=name)
    team.groups = {g: [a.name for a in agents] for g, agents in members.items()}
    return team
