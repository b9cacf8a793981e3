"""Bradley-Terry in a real star team on the embedded model: the team's own models judge
each other's answers. Mechanics only: the model is weak."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from agentfab import Agent, Orchestrator, RunSettings, Usage
from agentfab.aggregators.bradley_terry import BradleyTerry
from agentfab.topologies import star

pytestmark = pytest.mark.slow


async def test_peer_ranked_star(embedded: Any) -> None:
    # Two model names on the one embedded model, so peers have others' pairs to judge.
    workers = [Agent(name=f"w{i}", model="ab"[i % 2], max_tokens=16) for i in range(3)]
    team = star(workers, BradleyTerry(merge=False))
    orchestrator = Orchestrator({"a": embedded, "b": embedded}, RunSettings(seed=0))
    result = await orchestrator.run(team, "What is the capital of Spain?")

    agents = [m for m in result.messages if m.kind == "agent" and m.ok and m.text.strip()]
    hub = result.messages[-1]
    candidates = hub.details["candidates"]
    n = len(candidates)
    assert n == len(agents) >= 2
    assert len(hub.details["pairs"]) == 2 * n * (n - 1) // 2
    assert {p["verdict"] for p in hub.details["pairs"]} <= {"1", "2", "tie"}
    for p in hub.details["pairs"]:  # a pair of one model's answers goes to the other model
        models = {candidates[p["first"]]["models"][0], candidates[p["second"]]["models"][0]}
        assert len(models) == 2 or p["judge"] not in models
    # the fit read the verdicts the pairs record (a tie half a win each way, judges weighted)
    weights = hub.details["weights"]
    wins = [[0.0] * n for _ in range(n)]
    for p in hub.details["pairs"]:
        weight = weights.get(p["judge"], 1.0)
        first, second = p["first"], p["second"]
        if p["verdict"] == "tie":
            wins[first][second] += weight / 2
            wins[second][first] += weight / 2
        elif p["verdict"] in ("1", "2"):
            won, lost = (first, second) if p["verdict"] == "1" else (second, first)
            wins[won][lost] += weight
    assert hub.details["wins"] == wins
    # scores are finite mean-zero log-strengths, ranked best first; the winner's Luce
    # probability is the hub's confidence
    scores = [c["score"] for c in candidates]
    assert all(math.isfinite(s) for s in scores) and abs(sum(scores)) < 1e-6
    ranking = hub.details["ranking"]
    assert sorted(ranking) == list(range(n)) and hub.details["winner"] == ranking[0]
    assert all(scores[a] >= scores[b] - 1e-6 for a, b in itertools.pairwise(ranking))
    strengths = [math.exp(s - max(scores)) for s in scores]
    assert hub.confidence == pytest.approx(strengths[ranking[0]] / sum(strengths))

    assert hub.usage.calls == len(hub.details["pairs"])
    assert hub.usage.prompt_tokens > 0 and hub.usage.completion_tokens > 0
    assert result.usage == sum((m.usage for m in result.messages), Usage())
    assert result.usage.calls == len(workers) + hub.usage.calls
    assert hub.text in {m.text for m in agents} and result.text == hub.text
    assert hub.answer == candidates[hub.details["winner"]]["answer"]
