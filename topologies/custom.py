"""A team from an explicit list of nodes and edges.

Like every topology: it builds a `Team` and runs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from agentfab.team import Node, Team


def custom(
    nodes: Sequence[Node], edges: Iterable[tuple[str, str]], *, name: str = "custom"
) -> Team:
    """Any acyclic graph with one output node; `(a, b)` means b reads a."""
    return Team.from_edges(nodes, edges, name=name)
