"""Confidence-weighted voting (after ReConcile), and where confidences come from.

A confidence is read from the model's own statement ("Confidence: 0.8") or
from the log-probabilities of the tokens of its answer (length-normalised:
the geometric mean of the tokens' probabilities). Either can be recalibrated
on questions with known answers: a logistic fit maps a raw confidence to
the probability of being right.
"""

from __future__ import annotations

import math
import re
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
from agentfab.llm import TokenLogprob
from agentfab.messages import Message, Task

# "Confidence: 0.8", "confidence level is 80%", "Confidence: 4/5", "5 out of 5"; the number
# must end there ("I'm confident 3 options are wrong" states no confidence).
_SCALE = r"(?P<pct>\s*%|\s*percent\b)?(?:\s*(?:/|out\s+of)\s*(?P<of>\d+(?:\.\d+)?))?"
_STATED = re.compile(
    r"confiden(?:ce|t)\s*(?:level|score)?\s*(?:is|:|=|-|of|at)?\s*\(?\s*"
    rf"(?P<v>\d+(?:\.\d+)?){_SCALE}(?!\s*[a-z]|\d)",
    re.IGNORECASE,
)
# "I am 70% confident", "90% sure".
_STATED_BEFORE = re.compile(
    r"(?<![\d.])(?P<v>\d+(?:\.\d+)?)(?P<pct>\s*%|\s*percent\b)(?P<of>)\s*(?:confident|sure|certain)",
    re.IGNORECASE,
)
_WORDS = {"very high": 0.95, "high": 0.85, "medium": 0.6, "moderate": 0.6, "low": 0.3}
_STATED_WORD = re.compile(
    r"confiden(?:ce|t)\s*(?:level)?\s*(?:is|:|=|-)?\s*(very high|high|medium|moderate|low)",
    re.IGNORECASE,
)
_MARKER = re.compile(r"answer\s*(?:is|:)", re.IGNORECASE)


def stated_confidence(text: str) -> float | None:
    """The last confidence the text states, in [0, 1]: `0.8`, `80%`, `8/10`, `4/5`, `high`.

    A bare number is read on the scale it fits: up to 1 as is, up to 10 as tenths, up to
    100 as a percentage.
    """
    found = [*_STATED.finditer(text), *_STATED_BEFORE.finditer(text)]
    numbers = sorted(found, key=lambda m: m.start())
    if numbers:
        return _on_unit_scale(numbers[-1])
    words = list(_STATED_WORD.finditer(text))
    return _WORDS[words[-1].group(1).lower()] if words else None


def _on_unit_scale(found: re.Match[str]) -> float | None:
    value = float(found.group("v"))
    if found.group("of"):
        scale = float(found.group("of"))
        return min(value / scale, 1.0) if scale > 0 else None
    if found.group("pct") or value > 10:
        value /= 100
    elif value > 1:
        value /= 10
    return min(max(value, 0.0), 1.0)


def logprob_confidence(text: str, logprobs: Sequence[TokenLogprob]) -> float | None:
    """Geometric-mean token probability of the answer part of `text` (after `Answer:`),
    or of the whole text when it marks no answer."""
    if not logprobs:
        return None
    offsets, position = [], 0
    for token in logprobs:
        offsets.append(position)
        position += len(token.token)
    marks = list(_MARKER.finditer(text))
    start = marks[-1].end() if marks else 0
    chosen = [t.logprob for t, at in zip(logprobs, offsets, strict=True) if at >= start]
    chosen = chosen or [t.logprob for t in logprobs]
    return math.exp(sum(chosen) / len(chosen))


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
