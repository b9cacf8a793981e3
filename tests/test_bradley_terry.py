"""Bradley-Terry ranking: the fit, both orders against position bias, ties, schedules,
reputation, order independence and the judges' tokens.

Judges are scripted here: a judge that is biased, or right, on demand is a
condition a real model cannot produce.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from itertools import combinations
from typing import Any

import choix
import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from agentfab import BackendError, ChatRequest, ConfigError, LLMClient, Message, Task, Usage
from agentfab.aggregators.base import AggregationContext
from agentfab.aggregators.bradley_terry import (
    BradleyTerry,
    fit_scores,
    pair_schedule,
    parse_verdict,
    reputation_from_calibration,
)
from tests.scripted import Reply, ScriptedClient

TASK = Task(prompt="What is the capital of Italy?")
SHOWN = re.compile(r"Answer 1:\n(.*)\n\nAnswer 2:\n(.*)\n\n", re.DOTALL)
Prefer = Callable[[str, str], str]


def msg(i: int, answer: str | None, model: str = "m") -> Message:
    text = f"Answer: {answer}" if answer is not None else "I am not sure."
    return Message(id=f"a{i:02d}@1", sender=f"a{i:02d}", text=text, answer=answer, model=model)


def judge(prefer: Prefer) -> ScriptedClient:
    """A judge replying `prefer(answer shown first, answer shown second)`."""

    def script(request: ChatRequest) -> tuple[Reply, float]:
        found = SHOWN.search(request.messages[-1]["content"])
        assert found is not None
        first, second = (t.removeprefix("Answer: ") for t in found.groups())
        return prefer(first, second), 0.0

    return ScriptedClient(script)


def prefers(right: str) -> Prefer:
    """An unbiased judge that knows the right answer (and ties the others)."""
    return lambda a, b: "1" if a == right else "2" if b == right else "tie"


def decide(messages: list[Message], clients: Mapping[str, LLMClient], **options: Any) -> Message:
    ctx = AggregationContext(node="hub", clients=clients, seed=0)
    return asyncio.run(BradleyTerry(**options).aggregate(TASK, messages, ctx))


def scores(out: Message) -> dict[str | None, float]:
    return {c["answer"]: c["score"] for c in out.details["candidates"]}


def replicated(wins: list[list[int]]) -> list[tuple[int, int]]:
    return [(i, j) for i, row in enumerate(wins) for j, k in enumerate(row) for _ in range(k)]


def exact_fit(wins: list[list[float]], alpha: float) -> list[float]:
    """The maximum of the weighted log-likelihood, found by scipy, not by choix:
    sum over i != j of (wins[i][j] + alpha) * log sigmoid(s_i - s_j), scores of mean zero."""
    counts = np.asarray(wins, dtype=float) + alpha * (1 - np.eye(len(wins)))

    def negative(s: np.ndarray) -> tuple[float, np.ndarray]:
        diff = s[:, None] - s[None, :]
        loss = float(np.sum(counts * np.logaddexp(0.0, -diff)))
        pull = counts / (1.0 + np.exp(diff))  # d loss / d diff, negated
        return loss, pull.T.sum(axis=1) - pull.sum(axis=1)

    found = minimize(negative, np.zeros(len(wins)), jac=True, method="BFGS", tol=1e-13)
    assert np.max(np.abs(negative(found.x)[1])) < 1e-8  # a stationary point: the maximum
    return [float(v) for v in found.x - found.x.mean()]


def quantised_fit(wins: list[list[float]], alpha: float) -> list[float]:
    """The fit as it was: weights rounded to 0.1, each tenth one comparison for choix."""
    tenths = [[round(10 * w) for w in row] for row in wins]
    return list(choix.ilsr_pairwise(len(wins), replicated(tenths), alpha=10 * alpha))


def ranked(values: list[float]) -> list[int]:
    return sorted(range(len(values)), key=lambda i: -values[i])


# ---- the fit

EXAMPLE = [[0.0, 0.53, 1.27], [0.47, 0.0, 0.9], [0.73, 1.1, 0.0]]
"""Reputation-weighted wins whose rounding to 0.1 reorders candidates 1 and 2."""


@pytest.mark.parametrize("alpha", [0.01, 0.5])
@pytest.mark.parametrize(
    "wins",
    [
        [[0, 3, 1, 4], [1, 0, 2, 2], [2, 0, 0, 1], [0, 1, 1, 0]],
        EXAMPLE,
        [[0, 0.25, 0.125], [0.15, 0, 0.0], [0.9, 0.35, 0]],
        [[0, 2, 2], [0, 0, 1], [0, 0, 0]],  # a candidate that won everything
    ],
)
def test_the_fit_is_the_exact_maximum_of_the_weighted_likelihood(
    wins: list[list[float]], alpha: float
) -> None:
    exact = exact_fit(wins, alpha)
    assert fit_scores(wins, alpha) == pytest.approx(exact, abs=1e-6)


def test_fractional_weights_are_fitted_as_they_are_not_rounded() -> None:
    exact = exact_fit(EXAMPLE, 0.01)
    assert ranked(exact) == [0, 2, 1]
    assert ranked(quantised_fit(EXAMPLE, 0.01)) == [0, 1, 2]  # rounding swapped 1 and 2
    ours = fit_scores(EXAMPLE, 0.01)
    assert ours == pytest.approx(exact, abs=1e-6) and ranked(ours) == [0, 2, 1]


def test_two_candidates_have_the_closed_form_score() -> None:
    # The maximum of (a + alpha) log p + (b + alpha) log(1 - p) is p = (a + alpha) / (a + b +
    # 2 alpha), so the scores are +-log((a + alpha) / (b + alpha)) / 2.
    half = math.log((0.45 + 0.01) / (0.35 + 0.01)) / 2
    assert fit_scores([[0, 0.45], [0.35, 0]], 0.01) == pytest.approx([half, -half], abs=1e-9)
    assert exact_fit([[0, 0.45], [0.35, 0]], 0.01) == pytest.approx([half, -half], abs=1e-7)


def test_a_tie_is_half_a_win_each_way() -> None:
    halves = [[0.0, 1.5, 2.0], [0.5, 0.0, 1.0], [0.0, 1.0, 0.0]]
    doubled = [[2 * w for w in row] for row in halves]  # in whole comparisons
    # the likelihood is the same up to a factor when counts and regulariser scale together
    assert fit_scores(halves, alpha=0.01) == pytest.approx(fit_scores(doubled, 0.02), abs=1e-6)
    assert fit_scores(halves, alpha=0.01) == pytest.approx(exact_fit(halves, 0.01), abs=1e-6)


def test_judged_pairs_give_the_matrix_and_the_order_of_the_exact_fit() -> None:
    beats = {("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")}
    split = [{"a", "b"}, {"a", "c"}]  # the judge says "1" in both orders

    def table(x: str, y: str) -> str:
        return "1" if (x, y) in beats or {x, y} in split else "2"

    # given in reverse: the canonical order (by message id) is a, b, c, d all the same
    out = decide([msg(i, a) for i, a in enumerate("abcd")][::-1], {"m": judge(table)})
    wins = [[0, 1, 1, 2], [1, 0, 2, 2], [1, 0, 0, 2], [0, 0, 0, 0]]  # a, b, c, d
    assert out.details["wins"] == wins
    exact = exact_fit([[float(k) for k in row] for row in wins], 0.01)
    assert list(scores(out).values()) == pytest.approx(exact, abs=1e-6)
    assert out.details["ranking"] == ranked(exact) == [1, 0, 2, 3]
    assert out.answer == "b" and out.text == "Answer: b"


def test_small_reputations_are_not_rounded_into_a_tie() -> None:
    # "hi" (weight 0.25) prefers x shown first and ties it shown second; "lo" (0.15)
    # prefers y shown second and ties it shown first: x leads y by 0.45 to 0.35.
    # Rounded to tenths both were 4, a tie that y, the canonically first, won.
    clients = {
        "hi": judge(lambda a, b: "1" if a == "x" else "tie"),
        "lo": judge(lambda a, b: "2" if b == "y" else "tie"),
    }
    messages = [msg(0, "y", "w"), msg(1, "x", "w")]
    panel = {"judge": ("hi", "lo"), "judges_per_pair": 2, "reputation": {"hi": 0.25, "lo": 0.15}}
    out = decide(messages, clients, **panel)
    wins = out.details["wins"]  # y, x
    assert wins == [[0.0, pytest.approx(0.35)], [pytest.approx(0.45), 0.0]]
    assert quantised_fit(wins, 0.01) == pytest.approx([0.0, 0.0], abs=1e-9)
    assert list(scores(out).values()) == pytest.approx(exact_fit(wins, 0.01), abs=1e-6)
    assert scores(out)["x"] > scores(out)["y"] + 0.2 and out.answer == "x"


def test_equal_scores_within_the_fit_s_tolerance_are_a_tie() -> None:
    beats = {("a", "b"), ("b", "c"), ("c", "a"), ("a", "d"), ("b", "d")}  # c and d tie

    def table(x: str, y: str) -> str:
        return "1" if (x, y) in beats else "2" if (y, x) in beats else "tie"

    out = decide([msg(i, a) for i, a in enumerate("abcd")], {"m": judge(table)})
    s = scores(out)
    assert s["a"] == pytest.approx(s["b"], abs=1e-7)  # equal, up to the fit's tolerance
    assert out.answer == "a"  # the stable rule decides, not the noise


# ---- position bias, ties, verdicts


def test_a_judge_that_always_says_1_is_neutralised_by_the_two_orders() -> None:
    messages = [msg(0, "x"), msg(1, "y"), msg(2, "z")]
    biased = decide(messages, {"m": judge(lambda a, b: "1")})
    assert [p["verdict"] for p in biased.details["pairs"]] == ["1"] * 6
    wins = biased.details["wins"]
    assert all(wins[i][j] == wins[j][i] == 1.0 for i, j in combinations(range(3), 2))
    assert list(scores(biased).values()) == pytest.approx([0.0] * 3, abs=1e-9)
    assert biased.confidence == pytest.approx(1 / 3)
    assert biased.answer == "x"  # nobody favoured: the stable rule (first answer) decides

    fair = decide(messages, {"m": judge(prefers("y"))})
    assert fair.answer == "y"
    assert scores(fair)["y"] > scores(fair)["x"] == pytest.approx(scores(fair)["z"])


def test_ties_are_legal_verdicts_and_support_breaks_equal_scores() -> None:
    def xy_tie(a: str, b: str) -> str:
        return "tie" if {a, b} == {"x", "y"} else "1" if b == "z" else "2"

    out = decide([msg(0, "x"), msg(1, "y"), msg(2, "z"), msg(3, "y")], {"m": judge(xy_tie)})
    s = scores(out)
    assert s["x"] == pytest.approx(s["y"]) and s["x"] > s["z"]
    assert out.details["wins"][0][1] == out.details["wins"][1][0] == 1.0
    assert out.answer == "y"  # equal score, two supporters against one
    assert [c["support"] for c in out.details["candidates"]] == [1, 2, 1]

    all_ties = decide([msg(0, "x"), msg(1, "y")], {"m": judge(lambda a, b: "tie")})
    assert all_ties.details["wins"] == [[0.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("1", "1"),
        (" 2\n", "2"),
        ("tie", "tie"),
        ("Answer 2 is better.", "2"),
        ("They are equal.", "tie"),
        ("It's a TIE", "tie"),
        ("no idea", None),
        ("12", None),
    ],
)
def test_replies_in_text_are_read(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


def test_unreadable_and_failed_verdicts_are_left_out_but_recorded() -> None:
    def script(request: ChatRequest) -> tuple[Reply, float]:
        first = SHOWN.search(request.messages[-1]["content"]).group(1)  # type: ignore[union-attr]
        if "x" in first:
            return BackendError("judge down", endpoint="scripted"), 0.0
        return "hmm", 0.0

    out = decide([msg(0, "x"), msg(1, "y")], {"m": ScriptedClient(script)})
    assert [p["verdict"] for p in out.details["pairs"]] == [None, None]
    assert "judge down" in out.details["pairs"][0]["error"]
    assert out.details["wins"] == [[0.0, 0.0], [0.0, 0.0]]
    assert out.usage.calls == 2 and out.answer == "x"


def test_the_judge_is_asked_for_a_choice_with_the_shared_text_first() -> None:
    client = judge(prefers("x"))
    decide([msg(0, "x"), msg(1, "y")], {"m": client})
    assert len(client.requests) == 2
    for request in client.requests:
        assert request.choices == ["1", "2", "tie"] and request.temperature == 0.0
        content = request.messages[-1]["content"]
        assert content.startswith("Question: What is the capital of Italy?\n\nAnswer 1:\n")
        assert content.endswith("Reply 1, 2 or tie.")


# ---- judges


def test_peers_do_not_judge_their_own_answers() -> None:
    clients = {m: judge(prefers("x")) for m in ("m0", "m1", "m2")}
    messages = [msg(0, "x", "m0"), msg(1, "y", "m1"), msg(2, "z", "m2"), msg(3, "x", "m1")]
    out = decide(messages, clients)
    by_answer = {c["answer"]: set(c["models"]) for c in out.details["candidates"]}
    answers = [c["answer"] for c in out.details["candidates"]]
    for p in out.details["pairs"]:
        authors = by_answer[answers[p["first"]]] | by_answer[answers[p["second"]]]
        assert p["judge"] not in authors or authors == {"m0", "m1", "m2"}
    assert out.details["judges"] == ["m0", "m1", "m2"]
    assert out.answer == "x"


def test_a_named_judge_judges_every_pair() -> None:
    referee = judge(prefers("z"))
    out = decide([msg(0, "x"), msg(1, "y"), msg(2, "z")], {"ref": referee}, judge="ref")
    assert {p["judge"] for p in out.details["pairs"]} == {"ref"}
    assert len(referee.requests) == 6 and out.answer == "z"


def test_messages_without_a_judge_are_a_config_error() -> None:
    messages = [msg(0, "x").model_copy(update={"model": None}), msg(1, "y")]
    messages[1] = messages[1].model_copy(update={"model": None})
    with pytest.raises(ConfigError, match="has no judge"):
        decide(messages, {})


# ---- schedules


def test_a_large_pool_gets_a_connected_schedule_within_max_pairs() -> None:
    client = judge(prefers("c03"))
    messages = [msg(i, f"c{i:02d}") for i in range(10)]
    out = decide(messages, {"m": client}, max_pairs=12)
    judged = Counter(
        (min(p["first"], p["second"]), max(p["first"], p["second"])) for p in out.details["pairs"]
    )
    assert len(judged) == 12 and set(judged.values()) == {2}  # each pair in both orders
    assert nx.is_connected(nx.Graph(list(judged)))
    assert out.answer == "c03"

    default = decide(messages, {"m": judge(prefers("c03"))})
    assert len(default.details["pairs"]) == 2 * 20  # twice the candidates
    with pytest.raises(ConfigError, match="cannot connect 10 candidates"):
        decide(messages, {"m": client}, max_pairs=8)


def test_small_pools_are_judged_on_every_pair() -> None:
    out = decide([msg(i, f"c{i}") for i in range(6)], {"m": judge(prefers("c1"))}, max_pairs=5)
    assert len(out.details["pairs"]) == 2 * 15


@given(st.integers(2, 16), st.integers(0, 40), st.integers(0, 2**32))
def test_pair_schedules_connect_every_item(n: int, extra: int, seed: int) -> None:
    budget = n - 1 + extra
    pairs = pair_schedule(n, budget, random.Random(seed))
    assert len(pairs) == min(budget, n * (n - 1) // 2) == len(set(pairs))
    assert all(0 <= i < j < n for i, j in pairs)
    graph = nx.Graph(pairs)
    graph.add_nodes_from(range(n))
    assert nx.is_connected(graph)


# ---- reputation


def test_reputation_outweighs_low_reputation_judges_that_disagree() -> None:
    clients = {
        "good": judge(prefers("x")),
        "bad1": judge(prefers("y")),
        "bad2": judge(prefers("y")),
    }
    messages = [msg(0, "x", "w"), msg(1, "y", "w")]
    panel = {"judge": ("good", "bad1", "bad2"), "judges_per_pair": 3}
    assert decide(messages, clients, **panel).answer == "y"  # two votes to one
    weights = {"good": 0.9, "bad1": 0.2, "bad2": 0.2}
    out = decide(messages, clients, **panel, reputation=weights)
    assert out.answer == "x"
    assert out.details["wins"] == [[0.0, pytest.approx(1.8)], [pytest.approx(0.8), 0.0]]
    with pytest.raises(ConfigError, match="no reputation for judge"):
        decide(messages, clients, **panel, reputation={"good": 1.0})


def test_calibration_gives_the_accurate_judge_more_weight() -> None:
    truths = {"What is the capital of Italy?": "rome", "What is the capital of France?": "paris"}
    clients = {
        "good": judge(lambda a, b: "1" if a in truths.values() else "2"),
        "biased": judge(lambda a, b: "1"),
    }
    decisions = []
    for question, truth in truths.items():
        messages = [msg(0, truth, "w"), msg(1, "lyon", "w"), msg(2, "milan", "w")]
        ctx = AggregationContext(node="hub", clients=clients, seed=0)
        bt = BradleyTerry(judge=("good", "biased"), judges_per_pair=2)
        decisions.append((asyncio.run(bt.aggregate(Task(prompt=question), messages, ctx)), truth))
    reputation = reputation_from_calibration(decisions)
    # Per question: 2 informative pairs x 2 orders; the biased judge is right in one order.
    assert reputation == {"biased": pytest.approx(5 / 10), "good": pytest.approx(9 / 10)}
    with pytest.raises(ConfigError):
        reputation_from_calibration(decisions, smoothing=0)


# ---- order independence and tokens


def quirky(salt: str) -> Prefer:
    """Deterministic, position-dependent and intransitive preferences."""
    return lambda a, b: ("1", "2", "tie")[zlib.crc32(f"{salt}|{a}|{b}".encode()) % 3]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", "e", None]), min_size=1, max_size=9),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_decision_does_not_depend_on_arrival_order(
    answers: list[str | None], merge: bool, rnd: random.Random
) -> None:
    messages = [msg(i, a, f"m{i % 3}") for i, a in enumerate(answers)]
    shuffled = list(messages)
    rnd.shuffle(shuffled)
    options = {"merge": merge, "all_pairs_up_to": 4, "max_pairs": 9}
    clients = {m: judge(quirky(m)) for m in ("m0", "m1", "m2")}
    first = decide(messages, clients, **options)
    second = decide(shuffled, {m: judge(quirky(m)) for m in clients}, **options)
    assert (first.answer, first.text, first.confidence) == (
        second.answer,
        second.text,
        second.confidence,
    )
    assert first.details == second.details and first.usage == second.usage


def test_judge_tokens_and_vote_stats_are_reported() -> None:
    out = decide([msg(0, "x"), msg(1, "y"), msg(2, "z"), msg(3, "x")], {"m": judge(prefers("z"))})
    assert out.usage == Usage(prompt_tokens=6 * 10, completion_tokens=6 * 5, calls=6)
    assert out.details["votes"] == {"x": 2, "y": 1, "z": 1}
    assert out.details["agreement"] == 0.5 and out.details["margin"] == 0.25
    assert out.answer == "z" and out.kind == "aggregate"


def test_one_or_no_candidate_needs_no_judge() -> None:
    one = decide([msg(0, "x"), msg(1, "x")], {})
    assert one.answer == "x" and one.usage == Usage() and one.confidence == 1.0
    none = decide([msg(0, "x").model_copy(update={"error": "boom"})], {})
    assert none.answer is None and none.text == "" and none.details["candidates"] == []


def test_without_merging_every_message_is_a_candidate() -> None:
    out = decide([msg(0, "x"), msg(1, "x"), msg(2, "y")], {"m": judge(prefers("y"))}, merge=False)
    assert [c["ids"] for c in out.details["candidates"]] == [["a00@1"], ["a01@1"], ["a02@1"]]
    assert out.answer == "y" and len(out.details["pairs"]) == 6
