"""Confidence weighting and first-to-ahead-by-k on constructed inputs."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfab import Message, Task, TokenLogprob, Usage
from agentfab.aggregators import (
    AggregationContext,
    AheadByK,
    Calibration,
    ConfidenceWeighted,
    fit_calibration,
)
from agentfab.aggregators.base import Needs
from agentfab.answers import logprob_confidence, stated_confidence

TASK = Task(prompt="q")


def msg(i: int, answer: str | None, confidence: float | None = None, **details: float) -> Message:
    return Message(id=f"a{i}@1", sender=f"a{i}", text=f"Answer: {answer}", answer=answer,
                   confidence=confidence, details=details)


def run(aggregator: object, messages: list[Message], ctx: AggregationContext | None = None) -> Message:
    return asyncio.run(aggregator.aggregate(TASK, messages, ctx or AggregationContext(node="hub")))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: Paris\nConfidence: 0.8", 0.8),
        ("Answer: Paris (confidence 85%)", 0.85),
        ("I am confident: 9/10", 0.9),
        ("Confidence level: high", 0.85),
        ("confidence = 7", 0.7),
        ("Confidence: 1.5", 0.15),
        ("no statement here", None),
    ],
)
def test_stated_confidence(text: str, expected: float | None) -> None:
    got = stated_confidence(text)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_logprob_confidence_is_the_geometric_mean_of_the_answer_tokens() -> None:
    tokens = [TokenLogprob("I think", -2.0), TokenLogprob(" Answer:", -1.0),
              TokenLogprob(" Paris", math.log(0.5)), TokenLogprob(".", math.log(0.8))]
    got = logprob_confidence("I think Answer: Paris.", tokens)
    assert got == pytest.approx(math.sqrt(0.5 * 0.8))
    whole = logprob_confidence("no marker", [TokenLogprob("no", math.log(0.25)), TokenLogprob(" marker", 0.0)])
    assert whole == pytest.approx(0.5)


def test_confident_minority_overturns_a_doubtful_majority() -> None:
    messages = [msg(0, "x", 0.2), msg(1, "x", 0.25), msg(2, "y", 0.95)]
    out = run(ConfidenceWeighted(), messages)
    assert out.answer == "y"
    assert out.details["weighted_votes"] == {"x": 0.45, "y": 0.95}
    assert out.details["votes"] == {"x": 2, "y": 1}


def test_minority_only_a_little_more_confident_does_not() -> None:
    messages = [msg(0, "x", 0.6), msg(1, "x", 0.6), msg(2, "y", 0.9)]
    assert run(ConfidenceWeighted(), messages).answer == "x"


def test_logprob_source_and_missing_confidence_default() -> None:
    messages = [msg(0, "x", logprob_confidence=0.9), msg(1, "y", logprob_confidence=0.3), msg(2, "y")]
    out = run(ConfidenceWeighted(source="logprob", default=0.1), messages)
    assert out.answer == "x"  # 0.9 against 0.3 + 0.1
    assert ConfidenceWeighted(source="logprob").needs == Needs(logprobs=True)
    assert ConfidenceWeighted().needs == Needs(stated_confidence=True)


def test_calibration_can_reverse_an_overconfident_agent() -> None:
    # a0 claims 0.9 but is usually wrong; a1 claims 0.5 and is usually right
    calibration = {"a0": Calibration(slope=1.0, intercept=-3.0), "a1": Calibration(slope=1.0, intercept=1.0)}
    messages = [msg(0, "x", 0.9), msg(1, "y", 0.5)]
    assert run(ConfidenceWeighted(), messages).answer == "x"
    assert run(ConfidenceWeighted(calibration=calibration), messages).answer == "y"


def test_fit_calibration_learns_that_high_confidence_means_right() -> None:
    rng = random.Random(0)
    confidences = [rng.random() for _ in range(400)]
    correct = [rng.random() < c for c in confidences]
    fitted = fit_calibration(confidences, correct)
    assert fitted.slope > 2
    assert fitted(0.9) > 0.75 and fitted(0.1) < 0.25


FAIL = "<fail>"
"""A scripted answer that is a failed call instead."""


class Sampler:
    """Hands out scripted answers one at a time and records every request."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[int] = []

    async def __call__(self, n: int) -> list[Message]:
        self.asked.append(n)
        out = [self._one(100 + len(self.asked) * 10 + i) for i in range(n)]
        return [m.model_copy(update={"usage": Usage(completion_tokens=5, calls=1)}) for m in out]

    def _one(self, i: int) -> Message:
        answer = self.answers.pop(0)
        if answer == FAIL:
            return Message(id=f"a{i}@1", sender=f"a{i}", error="HTTP 500")
        return msg(i, answer)


def ctx_with(sampler: Sampler) -> AggregationContext:
    return AggregationContext(node="vote", sample=sampler)


def test_ahead_by_k_stops_at_the_deciding_sample_and_asks_for_no_more() -> None:
    sampler = Sampler(["x", "y", "x", "x", "x", "x", "x"])
    out = run(AheadByK(k=2, max_samples=10), [msg(0, "x")], ctx_with(sampler))
    # the input leads by 1, so one sample can decide; it is x, and nothing more is asked
    assert out.answer == "x" and out.details["decided"]
    assert sampler.asked == [1]
    assert out.details["samples"] == 2
    assert sampler.answers == ["y", "x", "x", "x", "x", "x"]


def test_ahead_by_k_keeps_sampling_through_disagreement() -> None:
    sampler = Sampler(["y", "x", "y", "y", "y", "x"])
    out = run(AheadByK(k=2, max_samples=10, batch=4), [msg(0, "x")], ctx_with(sampler))
    # x | asks 1: y (lead 0) | asks 2: x, y (lead 0) | asks 2: y, y -> y leads by 2
    assert out.answer == "y" and out.details["decided"]
    assert out.details["votes"] == {"x": 2, "y": 4}
    assert sum(sampler.asked) == 5 and sampler.answers == ["x"]
    assert out.details["extra_samples_usage"]["completion_tokens"] == 25


def test_ahead_by_k_gives_up_at_max_samples_with_the_plurality() -> None:
    sampler = Sampler(["y", "x", "y", "x", "y", "x"])
    out = run(AheadByK(k=3, max_samples=4), [msg(0, "x")], ctx_with(sampler))
    assert not out.details["decided"] and out.details["samples"] == 4
    assert out.answer == "x"  # tie 2:2: x was counted first
    assert sum(sampler.asked) == 3


def test_ahead_by_k_counts_failed_samples_against_max_samples() -> None:
    sampler = Sampler([FAIL, "y", "x", FAIL, "x", "x"])
    out = run(AheadByK(k=3, max_samples=5), [msg(0, "x")], ctx_with(sampler))
    # x | asks 2: fail, y (lead 0) | asks 2: x, fail (x 2, y 1) -> 5 asked, no more
    assert sampler.asked == [2, 2] and sampler.answers == ["x", "x"]
    assert out.answer == "x" and not out.details["decided"]
    assert (out.details["asked"], out.details["samples"]) == (5, 3)
    assert out.details["stopped"] == "max_samples"


def test_ahead_by_k_stops_when_a_batch_brings_nothing_usable() -> None:
    sampler = Sampler(["y", FAIL, FAIL] + ["x"] * 10)
    out = run(AheadByK(k=2, max_samples=10), [msg(0, "x")], ctx_with(sampler))
    # x | asks 1: y (lead 0) | asks 2: both fail -> the vote ends on what it has
    assert sampler.asked == [1, 2]
    assert not out.details["decided"] and out.details["stopped"] == "samples failed"
    assert out.answer == "x" and out.details["votes"] == {"x": 1, "y": 1}
    assert out.details["extra_samples_usage"]["calls"] == 3  # the failed calls are reported


def test_ahead_by_k_without_a_sampler_decides_on_its_inputs() -> None:
    out = run(AheadByK(k=2), [msg(0, "x"), msg(1, "x"), msg(2, "y")])
    assert out.answer == "x" and not out.details["decided"]


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 1)), min_size=1, max_size=8),
       st.randoms())
def test_confidence_weighted_ignores_arrival_order(votes: list[tuple[str, float]], rnd: random.Random) -> None:
    messages = [msg(i, a, c) for i, (a, c) in enumerate(votes)]
    shuffled = list(messages)
    rnd.shuffle(shuffled)
    first, second = run(ConfidenceWeighted(), messages), run(ConfidenceWeighted(), shuffled)
    assert (first.answer, first.details) == (second.answer, second.details)


@given(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=6), st.randoms())
def test_ahead_by_k_ignores_arrival_order(answers: list[str], rnd: random.Random) -> None:
    messages = [msg(i, a) for i, a in enumerate(answers)]
    shuffled = list(messages)
    rnd.shuffle(shuffled)
    first = run(AheadByK(k=2), messages, ctx_with(Sampler(["a", "b"] * 8)))
    second = run(AheadByK(k=2), shuffled, ctx_with(Sampler(["a", "b"] * 8)))
    assert (first.answer, first.details) == (second.answer, second.details)
