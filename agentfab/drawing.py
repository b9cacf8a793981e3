"""Drawing a team: plain text, Mermaid, or a PNG.

Drawing only: it reads a built team and changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from agentfab.agent import Agent
from agentfab.errors import ConfigError
from agentfab.team import Team


def _label(team: Team, name: str) -> str:
    node = team.node(name)
    if isinstance(node, Agent):
        return f"{name} [agent, {node.model}]"
    return f"{name} [{node.aggregator.name}" + (f", quorum {node.quorum}]" if node.quorum else "]")


def to_text(team: Team) -> str:
    """One line per node, in run order, with what it reads."""
    lines = [f"team {team.name!r}: {team.graph.number_of_nodes()} nodes, output {team.output!r}"]
    for name in team.order():
        inputs = team.inputs(name)
        reads = f" <- {', '.join(inputs)}" if inputs else " <- task"
        lines.append(f"  {_label(team, name)}{reads}")
    return "\n".join(lines)


def to_mermaid(team: Team) -> str:
    """A Mermaid flowchart; groups become subgraphs."""
    ids = {name: f"n{i}" for i, name in enumerate(team.order())}
    lines = ["flowchart LR"]
    grouped = {m for members in team.groups.values() for m in members}
    for group, members in team.groups.items():
        lines.append(f"  subgraph {group}_members[{group}]")
        lines += [f'    {ids[m]}["{_label(team, m)}"]' for m in members]
        lines.append("  end")
    for name in team.order():
        if name in grouped:
            continue
        shape = '["{}"]' if isinstance(team.node(name), Agent) else '{{"{}"}}'
        lines.append(f"  {ids[name]}{shape.format(_label(team, name))}")
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in sorted(team.graph.edges)]
    return "\n".join(lines)


def to_png(team: Team, path: str | Path) -> None:
    """Layered drawing: inputs on the left, the output on the right."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("drawing a PNG needs matplotlib: pip install 'agentfab[plot]'") from None
    graph = team.graph.copy()
    for layer, names in enumerate(nx.topological_generations(graph)):
        for name in names:
            graph.nodes[name]["layer"] = layer
    positions = nx.multipartite_layout(graph, subset_key="layer")
    colours = ["#9ecae1" if isinstance(team.node(n), Agent) else "#fdae6b" for n in graph]
    size = max(4.0, 1.2 * max(len(g) for g in nx.topological_generations(graph)))
    figure, axes = plt.subplots(figsize=(size * 1.4, size))
    nx.draw_networkx(
        graph,
        positions,
        ax=axes,
        node_color=colours,
        node_size=1400,
        font_size=8,
        arrows=True,
        arrowsize=14,
    )
    axes.set_title(f"{team.name}: blue = agent, orange = aggregate")
    axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
