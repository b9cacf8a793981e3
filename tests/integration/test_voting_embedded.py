"""Confidence weighting, the round-table and first-to-ahead-by-k in real teams on the
embedded model. Mechanics only: the model is weak."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from agentfab import Agent, Orchestrator, RunSettings
from agentfab.aggregators import AheadByK, ConfidenceWeighted
from agentfab.topologies import chain, star


def lead(answers: list[str]) -> tuple[str | None, int]:
    """The most given answer (ties: the first given) and its lead over the runner-up."""
    counts = Counter(answers).most_common()
    if not counts:
        return None, 0
    return counts[0][0], counts[0][1] - (counts[1][1] if len(counts) > 1 else 0)


def workers(n: int, max_tokens: int = 16) -> list[Agent]:
    return [Agent(name=f"w{i}", max_tokens=max_tokens) for i in range(n)]


async def test_stated_confidence_star(embedded: Any) -> None:
    team = star(workers(3, 24), ConfidenceWeighted())
    result = await Orchestrator({"default": embedded}, RunSettings(seed=0)).run(
        team, "What is the capital of Spain?"
    )
    hub = result.messages[-1]
    assert set(hub.details["weights"]) == {"w0@1", "w1@1", "w2@1"} - {
        m.id for m in result.messages if m.answer is None
    }
    assert hub.details["source"] == "stated"
    # each voter weighs its stated confidence (0.5 when it states none); the heaviest answer
    # wins (a tie: the first agent's) and the hub's confidence is that answer's share
    voters = sorted((m for m in result.messages if m.kind == "agent" and m.ok and m.answer),
                    key=lambda m: m.id)
    stated = {m.id: 0.5 if m.confidence is None else m.confidence for m in voters}
    assert hub.details["weights"] == pytest.approx(stated, abs=1e-6)
    heft: dict[str, float] = {}
    for m in voters:
        heft[m.answer] = heft.get(m.answer, 0.0) + stated[m.id]  # type: ignore[index]
    assert voters, "no agent answered: nothing was weighed"
    winner = max(heft, key=heft.__getitem__)
    assert hub.answer == winner
    assert hub.confidence == pytest.approx(heft[winner] / sum(heft.values()))


async def test_logprob_confidence_star_asks_for_logprobs(embedded: Any) -> None:
    team = star(workers(3), ConfidenceWeighted(source="logprob"))
    result = await Orchestrator({"default": embedded}, RunSettings(seed=0)).run(
        team, "Name a primary colour."
    )
    agents = [m for m in result.messages if m.kind == "agent"]
    assert all(0.0 < m.details["logprob_confidence"] <= 1.0 for m in agents)
    hub = result.messages[-1]
    voted = {m.id: m.details["logprob_confidence"] for m in agents if m.answer is not None}
    assert hub.details["weights"] == {k: round(v, 6) for k, v in voted.items()}


async def test_round_table_sees_grouped_answers_and_can_stop_on_consensus(embedded: Any) -> None:
    team = star([Agent(name=f"w{i}", max_tokens=12, temperature=0.0) for i in range(3)],
                ConfidenceWeighted())
    settings = RunSettings(rounds=3, stop_on_consensus=True, seed=0)
    result = await Orchestrator({"default": embedded}, settings).run(team, "What is 2 + 2?")
    round_one = {m.answer for m in result.messages if m.round == 1 and m.kind == "agent"}
    # identical greedy agents agree at once, so the round-table ends after round 1
    assert len(round_one) == 1 and result.rounds == 1
    diverse = star(workers(3, 12), ConfidenceWeighted())
    settings = RunSettings(rounds=2, seed=3)
    second = await Orchestrator({"default": embedded}, settings).run(diverse, "Name a planet.")
    assert second.rounds == 2
    revisers = [m for m in second.messages if m.round == 2 and m.kind == "agent"]
    assert all(m.inputs == ["w0@1", "w1@1", "w2@1"] for m in revisers)


async def test_ahead_by_k_asks_only_until_decided(embedded: Any) -> None:
    team = star([Agent(name="w0", max_tokens=12, temperature=1.0)], AheadByK(k=2, max_samples=6))
    result = await Orchestrator({"default": embedded}, RunSettings(seed=0)).run(
        team, "Name a colour."
    )
    vote = result.messages[-1]
    samples = [m for m in result.messages if m.kind == "agent"]
    assert vote.details["samples"] == len(samples) <= 6
    answers = [m.answer for m in samples if m.answer is not None]
    leader, margin = lead(answers)
    assert (vote.answer, vote.details["lead"]) == (leader, margin)
    assert vote.details["decided"] == (margin >= 2)
    if margin >= 2:  # it stopped at the deciding sample: one fewer left it undecided
        assert lead(answers[:-1])[1] == 1 and samples[-1].answer is not None
        assert (vote.details["stopped"], vote.details["asked"]) == ("decided", len(samples))
    else:  # undecided only once every sample it may ask for was drawn
        assert (vote.details["stopped"], vote.details["asked"]) == ("max_samples", 6)
    # every call is counted once, by the sample messages; the vote only reports them
    assert vote.usage.total_tokens == 0
    extra = vote.details["extra_samples_usage"]
    assert result.usage.completion_tokens == samples[0].usage.completion_tokens + extra[
        "completion_tokens"
    ]


async def test_ahead_by_k_at_every_step_of_a_chain(embedded: Any) -> None:
    agents = [Agent(name=n, max_tokens=10, temperature=0.0) for n in ("a", "b")]
    team = chain(agents, vote=AheadByK(k=2, max_samples=4))
    result = await Orchestrator({"default": embedded}, RunSettings(seed=0)).run(
        team, "What is 3 + 4?"
    )
    votes = [m for m in result.messages if m.kind == "aggregate"]
    assert [v.sender for v in votes] == ["a-vote", "b-vote"]
    # greedy agents repeat themselves: one extra sample makes a lead of 2
    assert all(v.details["samples"] == 2 and v.details["decided"] for v in votes)
    assert next(m for m in result.messages if m.sender == "b").inputs == ["a-vote@1"]
