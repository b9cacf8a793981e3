"""The layout every drawing of a team shares: ordered layers, fewer crossings, groups
together; and the pictures drawn on it."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from agentfab import Agent
from agentfab.aggregators import Majority
from agentfab.drawing import TeamShape, crossings, layout, to_png, to_svg
from agentfab.pipeline import load_pipeline
from agentfab.topologies import groups, tree

ROOT = Path(__file__).resolve().parents[1]


def test_a_tree_s_layers_read_in_order_and_cross_nothing() -> None:
    agents = [Agent(name="a"), Agent(name="b"), Agent(name="c")]  # leaves a-0, b-1, c-2, a-3...
    team = tree(agents, Majority(), branching=3, depth=2)
    shape = TeamShape.of(team)
    placed = layout(shape.graph(), shape.groups)
    leaves = [f"{agents[i % 3].name}-{i}" for i in range(9)]
    assert placed.layers == [leaves, ["L1-0", "L1-1", "L1-2"], ["L2-0"]]
    assert crossings(shape.graph(), placed.layers) == 0


def test_crossings_are_counted_between_neighbouring_layers() -> None:
    graph = nx.DiGraph([("a", "y"), ("b", "x"), ("a", "z")])
    assert crossings(graph, [["a", "b"], ["x", "y", "z"]]) == 2  # b-x crosses a-y and a-z
    assert crossings(graph, [["a", "b"], ["y", "z", "x"]]) == 0


def test_the_sweeps_undo_crossings_the_build_order_made() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(["a", "b", "c", "z", "y", "x", "out"])  # readers built in reverse
    graph.add_edges_from([("a", "x"), ("b", "y"), ("c", "z")])
    graph.add_edges_from((n, "out") for n in "xyz")
    first = [["a", "b", "c"], ["z", "y", "x"], ["out"]]
    assert crossings(graph, first) == 3
    placed = layout(graph)
    assert crossings(graph, placed.layers) == 0
    assert placed.layers[0] == ["a", "b", "c"]  # the inputs keep the build order


def test_a_group_s_members_stay_together_and_apart_from_the_next_group() -> None:
    team = groups(
        {
            "left": [Agent(name="l1"), Agent(name="l2")],
            "right": [Agent(name="r1"), Agent(name="r2")],
        },
        Majority(),
    )
    shape = TeamShape.of(team)
    # Interleave the build order: the layout must still put each group in one block.
    interleaved = shape.model_copy(
        update={"nodes": [shape.nodes[i] for i in (0, 2, 1, 3, *range(4, len(shape.nodes)))]}
    )
    placed = layout(interleaved.graph(), interleaved.groups)
    first = placed.layers[0]
    for members in shape.groups.values():
        at = sorted(first.index(m) for m in members)
        assert at == list(range(at[0], at[0] + len(members)))
    heights = placed.positions()
    step_inside = heights["l1"][1] - heights["l2"][1]
    step_across = heights["l2"][1] - heights["r1"][1]
    assert step_inside == pytest.approx(1.0)
    assert step_across == pytest.approx(1.0 + placed.GROUP_GAP)


def test_the_svg_has_one_element_per_node_and_edge_and_boxes_the_groups() -> None:
    team = load_pipeline(ROOT / "examples/groups.yaml").build_team()
    shape = TeamShape.of(team)
    svg = to_svg(shape, {"final": "#123456"})
    assert svg.startswith("<svg")
    for i in range(len(shape.nodes)):
        assert svg.count(f'id="node-{i}"') == 1
    for i in range(len(shape.edges)):
        assert svg.count(f'id="edge-{i}"') == 1
    for group in shape.groups:
        assert f">{group}<" in svg  # the box's label, as text
    assert "#123456" in svg


@pytest.mark.parametrize(
    "example", sorted(p.stem for p in (ROOT / "examples").glob("*.yaml") if "eval" not in p.stem)
)
def test_every_example_team_draws_as_a_png(example: str, tmp_path: Path) -> None:
    team = load_pipeline(ROOT / "examples" / f"{example}.yaml").build_team()
    out = tmp_path / "team.png"
    to_png(team, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
