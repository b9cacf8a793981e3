"""Each topology builds the graph its name promises, and refuses shapes that cannot run."""

from __future__ import annotations

import pytest

from agentfab import Agent, Aggregate, ConfigError, Team
from agentfab.aggregators import Majority
from agentfab.topologies import chain, custom, groups, star, tree


def agents(*names: str, max_tokens: int = 64) -> list[Agent]:
    return [Agent(name=n, max_tokens=max_tokens) for n in names]


def test_star_workers_feed_the_hub() -> None:
    team = star(agents("a", "b", "c"), Majority(), quorum=2)
    assert team.output == "hub"
    assert sorted(team.graph.edges) == [("a", "hub"), ("b", "hub"), ("c", "hub")]
    hub = team.node("hub")
    assert isinstance(hub, Aggregate) and hub.quorum == 2
    assert team.peers("a") == ["a", "b", "c"]


def test_chain_links_each_agent_to_the_next() -> None:
    team = chain(agents("x", "y", "z"))
    assert sorted(team.graph.edges) == [("x", "y"), ("y", "z")]
    assert team.output == "z"
    assert team.order() == ["x", "y", "z"]
    assert team.peers("y") == ["y"]  # a chain agent revisits only its own answer


@pytest.mark.parametrize(("branching", "depth"), [(2, 1), (2, 3), (3, 2), (4, 2)])
def test_tree_has_branching_to_the_depth_leaves(branching: int, depth: int) -> None:
    team = tree(agents("p", "q"), Majority(), branching=branching, depth=depth)
    leaves = [n for n in team.graph if team.graph.in_degree(n) == 0]
    inner = [n for n in team.graph if team.graph.in_degree(n) > 0]
    assert len(leaves) == branching**depth
    assert len(inner) == sum(branching**h for h in range(depth))
    assert all(team.graph.in_degree(n) == branching for n in inner)
    assert team.output == f"L{depth}-0"
    # leaves are copies of the given agents, taken in turn
    assert {n.rsplit("-", 1)[0] for n in leaves} == {"p", "q"}


def test_tree_with_combiner_checks_fan_in_against_context() -> None:
    combiner = Agent(name="judge", max_tokens=256)
    ok = tree(
        agents("leaf", max_tokens=256),
        branching=4,
        depth=1,
        combiner=combiner,
        context_lengths={"default": 4096},
    )
    assert isinstance(ok.node("L1-0"), Agent)
    with pytest.raises(ConfigError, match=r"beyond the 2048-token context of model 'default'"):
        tree(
            agents("leaf", max_tokens=256),
            branching=8,
            depth=1,
            combiner=combiner,
            context_lengths={"default": 2048},
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"branching": 1}, "branching must be at least 2"),
        ({"depth": 0}, "depth must be at least 1"),
        ({"branching": 10, "depth": 5}, "more than 4096 leaves"),
        ({"branching": 3, "depth": 10**9}, "more than 4096 leaves"),
    ],
)
def test_tree_rejects_bad_shapes(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tree(agents("a"), Majority(), **kwargs)


def test_groups_only_aggregates_cross_between_groups() -> None:
    team = groups(
        {"g1": agents("a", "b"), "g2": agents("c", "d"), "g3": agents("e")},
        Majority(),
        links=[("g1", "g2")],
    )
    members = {"g1": {"a", "b"}, "g2": {"c", "d"}, "g3": {"e"}}
    for src, dst in team.graph.edges:
        src_group = next((g for g, m in members.items() if src in m), None)
        if src_group is not None:  # a member's answer only reaches its own group's aggregate
            assert dst == src_group
    assert ("g1", "c") in team.graph.edges and ("g1", "d") in team.graph.edges
    # g2 and g3 are not linked onward, so a final aggregate reads them
    assert team.output == "final"
    assert sorted(team.inputs("final")) == ["g2", "g3"]


def test_single_group_needs_no_final_node() -> None:
    team = groups({"only": agents("a", "b")}, Majority())
    assert team.output == "only"


def test_custom_graph_from_edges() -> None:
    nodes = [*agents("a", "b"), Aggregate("vote", Majority())]
    team = custom(nodes, [("a", "b"), ("a", "vote"), ("b", "vote")])
    assert team.output == "vote"
    assert team.inputs("b") == ["a"]


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([("a", "b"), ("b", "a")], "cycle"),
        ([("a", "b")], "exactly one output node, has 2"),
        ([("a", "zz")], "unknown node 'zz'"),
    ],
)
def test_custom_graph_rejects_bad_shapes(edges: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        custom(agents("a", "b", "c") if message.startswith("exactly") else agents("a", "b"), edges)


def test_quorum_must_fit_fan_in() -> None:
    with pytest.raises(ConfigError, match="quorum 4 must be between 1 and its 3 inputs"):
        star(agents("a", "b", "c"), Majority(), quorum=4)


def test_duplicate_node_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="two nodes are named 'a'"):
        Team.from_edges(agents("a", "a"), [])


def test_chain_with_a_vote_at_every_step() -> None:
    team = chain(agents("x", "y"), vote=Majority())
    assert sorted(team.graph.edges) == [("x", "x-vote"), ("x-vote", "y"), ("y", "y-vote")]
    assert team.output == "y-vote"


def test_fan_in_check_counts_peers_in_later_rounds() -> None:
    team = star(agents(*[f"w{i}" for i in range(20)], max_tokens=256), Majority())
    team.validate({"default": 8192}, rounds=1)
    with pytest.raises(ConfigError, match="in later rounds"):
        team.validate({"default": 4096}, rounds=2)
