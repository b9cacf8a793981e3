"""Drawing a team: plain text, Mermaid, a PNG or an SVG.

The pictures share one layout (`layout`): layers from the inputs on the left to the
output on the right, each layer in the team's own order (leaf-0, leaf-1, ...) and then
reordered to cross fewer edges, a group's members kept together in a box. `TeamShape` is
a team as data (nodes, edges, groups): what traces and eval runs record, so a viewer can
draw the team without the pipeline that built it. Drawing only: it changes no team.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict

from agentfab.agent import Agent
from agentfab.errors import ConfigError
from agentfab.team import Team

AGENT_COLOUR = "#9ecae1"
AGGREGATE_COLOUR = "#fdae6b"


class ShapeNode(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["agent", "aggregate"]
    detail: str
    """An agent's model, an aggregate's aggregator (and quorum)."""


class TeamShape(BaseModel):
    """A team as data: what drawing it needs, nothing that runs it."""

    model_config = ConfigDict(frozen=True)

    name: str
    nodes: list[ShapeNode]
    """In the order the team was built."""
    edges: list[tuple[str, str]]
    """`(writer, reader)`."""
    groups: dict[str, list[str]] = {}
    output: str

    @classmethod
    def of(cls, team: Team) -> TeamShape:
        nodes = [
            ShapeNode(name=n, kind=_kind(team, n), detail=_detail(team, n)) for n in team.graph
        ]
        return cls(
            name=team.name,
            nodes=nodes,
            edges=sorted(team.graph.edges),
            groups={g: list(m) for g, m in team.groups.items()},
            output=team.output,
        )

    def graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        graph.add_nodes_from(n.name for n in self.nodes)
        graph.add_edges_from(self.edges)
        return graph


def _kind(team: Team, name: str) -> Literal["agent", "aggregate"]:
    return "agent" if isinstance(team.node(name), Agent) else "aggregate"


def _detail(team: Team, name: str) -> str:
    node = team.node(name)
    if isinstance(node, Agent):
        return node.model
    quorum = f", quorum {node.quorum}" if node.quorum else ""
    return node.aggregator.name + quorum


def _label(team: Team, name: str) -> str:
    kind = "agent, " if isinstance(team.node(name), Agent) else ""
    return f"{name} [{kind}{_detail(team, name)}]"


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


# The layout.


@dataclass(frozen=True)
class Layout:
    """Where each node goes: layers left to right, each ordered top to bottom."""

    layers: list[list[str]]
    group_of: Mapping[str, str]

    GROUP_GAP = 0.5
    """Extra space between neighbours of different groups, in node steps."""

    def positions(self) -> dict[str, tuple[float, float]]:
        """`(layer, height)` of each node, each layer centred on 0."""
        places = {}
        for x, layer in enumerate(self.layers):
            heights, y = [], 0.0
            for i, name in enumerate(layer):
                if i and self.group_of.get(name) != self.group_of.get(layer[i - 1]):
                    y += self.GROUP_GAP
                heights.append(y)
                y += 1.0
            middle = heights[-1] / 2 if heights else 0.0
            places.update({n: (float(x), middle - h) for n, h in zip(layer, heights, strict=True)})
        return places


SWEEPS = 4


def layout(graph: nx.DiGraph, groups: Mapping[str, Sequence[str]] | None = None) -> Layout:
    """Longest-path layers, ordered by the graph's own node order, then by barycentre
    sweeps (each node beside the mean place of its neighbours in the layer before or
    after) while they cross fewer edges. A group's members stay next to each other."""
    rank = {name: i for i, name in enumerate(graph)}
    group_of = {m: g for g, members in (groups or {}).items() for m in members}
    layers = [sorted(layer, key=rank.__getitem__) for layer in nx.topological_generations(graph)]
    layers = [_keep_groups_together(layer, dict.fromkeys(layer, 0.0), group_of) for layer in layers]
    best, fewest = layers, crossings(graph, layers)
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        trial = [list(layer) for layer in layers]
        order = range(1, len(trial)) if forward else range(len(trial) - 2, -1, -1)
        for i in order:
            fixed = trial[i - 1] if forward else trial[i + 1]
            place = {name: p for p, name in enumerate(fixed)}
            near = graph.predecessors if forward else graph.successors
            trial[i] = _keep_groups_together(
                trial[i], _barycentres(trial[i], place, near), group_of
            )
        count = crossings(graph, trial)
        layers = trial
        if count < fewest:
            best, fewest = trial, count
    return Layout(best, group_of)


def _barycentres(layer: list[str], place: Mapping[str, int], near: Any) -> dict[str, float]:
    # A node with no neighbour in the fixed layer keeps its current place.
    centres = {}
    for p, name in enumerate(layer):
        seen = [place[n] for n in near(name) if n in place]
        centres[name] = sum(seen) / len(seen) if seen else float(p)
    return centres


def _keep_groups_together(
    layer: list[str], centre: Mapping[str, float], group_of: Mapping[str, str]
) -> list[str]:
    """The layer sorted by centre (ties keep the current order), each group's members
    contiguous at the mean centre of the group."""
    blocks: dict[str, list[str]] = {}
    for name in layer:
        blocks.setdefault(group_of.get(name, "\0" + name), []).append(name)
    ordered = sorted(
        blocks.values(),
        key=lambda members: sum(centre[m] for m in members) / len(members),
    )
    return [m for members in ordered for m in sorted(members, key=centre.__getitem__)]


def crossings(graph: nx.DiGraph, layers: Sequence[Sequence[str]]) -> int:
    """Pairs of edges between neighbouring layers that cross."""
    total = 0
    for left, right in itertools.pairwise(layers):
        at_left = {n: i for i, n in enumerate(left)}
        at_right = {n: i for i, n in enumerate(right)}
        edges = [
            (at_left[a], at_right[b]) for a, b in graph.edges if a in at_left and b in at_right
        ]
        total += sum(
            1
            for i, (a1, b1) in enumerate(edges)
            for a2, b2 in edges[i + 1 :]
            if (a1 - a2) * (b1 - b2) < 0
        )
    return total


# The pictures.

X_STEP = 2.6
Y_STEP = 0.9
BOX_W = 1.9
BOX_H = 0.56
ROUNDED = "round,pad=0.02,rounding_size=0.12"
SQUARE = "square,pad=0.02"


def draw(shape: TeamShape, fills: Mapping[str, str] | None = None, title: str = "") -> Any:
    """The team as a matplotlib figure on the shared layout. Each node's patch has the gid
    `node-<i>` and each edge's `edge-<i>` (indices into `shape.nodes` and `shape.edges`),
    so an SVG of it can be made interactive."""
    plt = pyplot()
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

    placed = layout(shape.graph(), shape.groups)
    xy = {n: (x * X_STEP, y * Y_STEP) for n, (x, y) in placed.positions().items()}
    tallest, layers = max(len(layer) for layer in placed.layers), len(placed.layers)
    # Capped well below matplotlib's pixel limit; a team of thousands of nodes gets small text.
    width, height = min(2.3 * layers + 1, 60.0), min(0.75 * tallest + 1.4, 150.0)
    figure, axes = plt.subplots(figsize=(width, height))
    for name, members in shape.groups.items():
        corners = [xy[m] for m in members if m in xy]
        if not corners:
            continue
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        pad = 0.15
        box = Rectangle(
            (min(xs) - BOX_W / 2 - pad, min(ys) - BOX_H / 2 - pad),
            max(xs) - min(xs) + BOX_W + 2 * pad,
            max(ys) - min(ys) + BOX_H + 2 * pad,
            facecolor="#f4f4f4",
            edgecolor="#888888",
            linestyle="--",
            zorder=0,
        )
        axes.add_patch(box)
        axes.text(
            min(xs) - BOX_W / 2 - pad,
            max(ys) + BOX_H / 2 + pad + 0.05,
            name,
            fontsize=8,
            color="#555555",
            va="bottom",
        )
    for i, (a, b) in enumerate(shape.edges):
        (x1, y1), (x2, y2) = xy[a], xy[b]
        arrow = FancyArrowPatch(
            (x1 + BOX_W / 2, y1),
            (x2 - BOX_W / 2, y2),
            arrowstyle="-|>",
            mutation_scale=12,
            color="#555555",
            linewidth=1.0,
            zorder=1,
        )
        arrow.set_gid(f"edge-{i}")
        axes.add_patch(arrow)
    for i, node in enumerate(shape.nodes):
        x, y = xy[node.name]
        colour = (fills or {}).get(node.name) or (
            AGENT_COLOUR if node.kind == "agent" else AGGREGATE_COLOUR
        )
        patch = FancyBboxPatch(
            (x - BOX_W / 2, y - BOX_H / 2),
            BOX_W,
            BOX_H,
            boxstyle=ROUNDED if node.kind == "agent" else SQUARE,
            facecolor=colour,
            edgecolor="#333333",
            linewidth=2.2 if node.name == shape.output else 1.0,
            zorder=2,
        )
        patch.set_gid(f"node-{i}")
        axes.add_patch(patch)
        axes.text(x, y + 0.07, node.name, ha="center", va="center", fontsize=8, zorder=3)
        axes.text(
            x,
            y - 0.15,
            node.detail,
            ha="center",
            va="center",
            fontsize=6,
            zorder=3,
            color="#333333",
        )
    xs = [p[0] for p in xy.values()]
    ys = [p[1] for p in xy.values()]
    axes.set_xlim(min(xs) - BOX_W, max(xs) + BOX_W)
    axes.set_ylim(min(ys) - 1.0, max(ys) + 1.0)
    axes.set_aspect("equal")
    axes.axis("off")
    if title:
        axes.set_title(title, fontsize=9)
    figure.tight_layout()
    return figure


def to_png(team: Team, path: str | Path) -> None:
    """The team drawn on the shared layout: agents rounded and blue, aggregates square and
    orange, the output outlined, groups boxed."""
    figure = draw(TeamShape.of(team), title=f"{team.name}: blue = agent, orange = aggregate")
    try:
        figure.savefig(path, dpi=110)
    finally:
        pyplot().close(figure)


def to_svg(shape: TeamShape, fills: Mapping[str, str] | None = None) -> str:
    """The drawing as SVG text, ready to inline in a page."""
    return svg_of(draw(shape, fills), bbox_inches="tight")


def svg_of(figure: Any, **savefig: Any) -> str:
    """A matplotlib figure as inline SVG (closed after): its text kept as text, so the
    page's font draws it and it can be searched."""
    plt = pyplot()
    buffer = io.StringIO()
    try:
        with plt.rc_context({"svg.fonttype": "none"}):
            figure.savefig(buffer, format="svg", **savefig)
    finally:
        plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # the XML prolog and doctype do not belong inline


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or one line saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("drawing needs matplotlib: pip install 'agentfab[plot]'") from None
    return plt
