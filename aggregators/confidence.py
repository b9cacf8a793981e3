"""Confidence-weighted voting (after ReConcile), and calibration of confidences.

A confidence is read (by `agentfab.answers`) from the model's own statement
("Confidence: 0.8") or from the log-probabilities of the tokens of its answer. Either can be
recalibrated on questions with known answers: a logistic fit maps a raw confidence to the
probability of being right.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentfab.aggregators.base import (
    AggregationContext,
    BaseAggregator,
    Needs,
    canonical,
    vote_note,
    vote_stats,
)
from agentfab.errors import ConfigError
from agentfab.messages import Message, Task


@dataclass(frozen=True)
class Calibration:
    """P(correct) = sigmoid(slope * confidence + intercept)."""

    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, confidence: float) -> float:
        return 1.0 / (1.0 + math.exp(-(self.slope * confidence + self.intercept)))


def fit_calibration(
    confidences: Sequence[float], correct: Sequence[bool], *, l2: float = 1e-2
) -> Calibration:
    """Logistic regression of correctness on confidence (Newton's method, a small ridge)."""
    if len(confidences) != len(correct) or not confidences:
        raise ValueError("need as many outcomes as confidences, at least one")
    slope, intercept = 0.0, 0.0
    for _ in range(50):
        g_s = g_i = 0.0
        h_ss, h_si, h_ii = l2, 0.0, l2
        for x, y in zip(confidences, correct, strict=True):
            p = Calibration(slope, intercept)(x)
            g_s += (p - y) * x
            g_i += p - y
            w = p * (1 - p)
            h_ss, h_si, h_ii = h_ss + w * x * x, h_si + w * x, h_ii + w
        g_s, g_i = g_s + l2 * slope, g_i + l2 * intercept
        det = h_ss * h_ii - h_si * h_si
        step_s, step_i = (h_ii * g_s - h_si * g_i) / det, (h_ss * g_i - h_si * g_s) / det
        slope, intercept = slope - step_s, intercept - step_i
        if abs(step_s) + abs(step_i) < 1e-9:
            break
    return Calibration(slope, intercept)


@dataclass(frozen=True)
class ConfidenceWeighted(BaseAggregator):
    """Each answer's votes weigh by the voters' (calibrated) confidence; the heaviest wins.

    `source` is `stated` (the model says how sure it is; agents are asked to)
    or `logprob` (token log-probabilities; agents are asked for them).
    `calibration` recalibrates every voter, or per sender by name. A voter
    without a confidence weighs `default`.
    """

    source: str = "stated"
    calibration: Calibration | Mapping[str, Calibration] | None = None
    default: float = 0.5
    name: str = "confidence"

    def __post_init__(self) -> None:
        if self.source not in ("stated", "logprob"):
            raise ConfigError(f"confidence source is 'stated' or 'logprob', not {self.source!r}")

    @property
    def needs(self) -> Needs:
        """A stated confidence, or token log-probabilities, from each agent it reads."""
        return Needs(stated_confidence=self.source == "stated", logprobs=self.source == "logprob")

    def weight(self, message: Message) -> float:
        raw = (
            message.confidence
            if self.source == "stated"
            else message.details.get("logprob_confidence")
        )
        if raw is None:
            return self.default
        calibration = self.calibration
        if isinstance(calibration, Mapping):
            calibration = calibration.get(message.sender)
        return calibration(raw) if calibration is not None else float(raw)

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message:
        voters = [m for m in canonical(messages) if m.ok and m.answer is not None]
        weights: dict[str, float] = defaultdict(float)
        for m in voters:
            weights[m.answer or ""] += self.weight(m)
        # a tie goes to the answer given first in canonical order (dicts keep that order)
        winner = max(weights, key=weights.__getitem__) if weights else None
        total = sum(weights.values())
        stats = vote_stats([m.answer for m in voters if m.answer is not None])
        stats.update(
            voters=len(voters),
            weighted_votes={a: round(w, 6) for a, w in sorted(weights.items())},
            weights={m.id: round(self.weight(m), 6) for m in voters},
            source=self.source,
        )
        return ctx.decision(
            inputs=messages,
            text=next((m.text for m in voters if m.answer == winner), ""),
            answer=winner,
            details=stats,
            confidence=weights[winner] / total if winner is not None and total > 0 else None,
            note=vote_note(weights, winner, unit="weighted votes"),
        )
