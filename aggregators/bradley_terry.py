"""Bradley-Terry ranking of candidate answers by pairwise judges.

After Fortytwo's peer-ranked consensus: judges (the team's own models, or named
ones) compare pairs of candidates, each pair in both orders so that a judge's
position bias cancels; a Bradley-Terry fit (`choix`) turns the verdicts into
one score per candidate, and the best-scored candidate is the decision.

The fit is the exact maximum of the likelihood of the weighted verdicts (a tie is half a
win each way) plus `alpha` virtual verdicts each way on every pair: the posterior mode
under a Beta(alpha + 1, alpha + 1) prior on each pair's win probability, which keeps
every score finite when a candidate won or lost all its pairs.
"""

from __future__ import annotations

import asyncio
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from agentfab.aggregators.base import AggregationContext, BaseAggregator, canonical, vote_stats
from agentfab.answers import normalise_text
from agentfab.errors import BackendError, ConfigError, ModelOutputError
from agentfab.llm import ChatRequest
from agentfab.messages import Message, Task, Usage
from agentfab.prompts import lettered

VERDICTS = ("1", "2", "tie")
JUDGE_INSTRUCTION = "Which answer is better? Reply 1, 2 or tie."
_SCORE_TIE = 1e-6  # scores this close are a tie: the fit stops at choix's tolerance (1e-8)
_TIE = re.compile(r"\btie\b|\bequal", re.IGNORECASE)
_DIGIT = re.compile(r"\b([12])\b")


@dataclass(frozen=True)
class Candidate:
    """One answer under judgement: the messages that gave it, merged."""

    answer: str | None
    text: str
    """The text the judges read: the first message's, by id."""
    ids: tuple[str, ...]
    models: frozenset[str]
    """Models that wrote it; a peer judge does not judge its own candidates."""

    @property
    def key(self) -> str:
        """The canonical order: by the first message that gave it (favours no answer text)."""
        return self.ids[0]


@dataclass(frozen=True)
class Judgement:
    """One judge's verdict on one ordered pair (`first` was shown as answer 1)."""

    first: int
    second: int
    judge: str
    verdict: str | None
    """`1`, `2` or `tie`; None when the reply could not be read or the call failed."""
    usage: Usage
    error: str | None = None

    @property
    def winner(self) -> int | None:
        return {"1": self.first, "2": self.second}.get(self.verdict or "")

    def record(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"first": self.first, "second": self.second}
        entry |= {"judge": self.judge, "verdict": self.verdict}
        return entry | ({"error": self.error} if self.error else {})


@dataclass(frozen=True)
class BradleyTerry(BaseAggregator):
    """Judges compare candidates pairwise; a Bradley-Terry fit picks the winner.

    Candidates are the ok messages with text; with `merge`, messages with the
    same extracted answer are one candidate (its support is how many gave it).
    Judges are `judge` (one model or a panel of models) or, by default, the
    models that wrote the candidates (peer ranking). Pools of up to
    `all_pairs_up_to` candidates are judged on every pair; larger ones on
    `max_pairs` pairs (default twice the candidates): a random spanning cycle,
    which keeps the comparison graph connected, then random extra pairs.
    Equal scores go to the candidate with more support, then to the canonically
    first, so judges that cannot tell the candidates apart leave a majority vote.
    """

    judge: str | tuple[str, ...] | None = None
    """A judge model, or a panel; None: the candidates' own models judge each other."""
    judges_per_pair: int = 1
    """How many judges judge each pair (both orders each); capped by those eligible."""
    all_pairs_up_to: int = 6
    max_pairs: int | None = None
    """Pairs judged in a larger pool; None: twice the number of candidates."""
    alpha: float = 0.01
    """Regulariser of the fit: virtual verdicts (of weight 1) each way on every pair; > 0."""
    reputation: Mapping[str, float] | None = field(default=None, hash=False)
    """Judge model -> weight of its verdicts (see `reputation_from_calibration`)."""
    merge: bool = True
    max_answer_chars: int = 2000
    """Longer candidate texts are cut for the judge's prompt."""
    max_tokens: int = 8
    """Reply length, for judges that ignore structured choice and write text."""
    name: str = "bradley-terry"

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not self.alpha > 0:
            problems.append(f"alpha must be > 0, got {self.alpha}")
        if self.judges_per_pair < 1:
            problems.append(f"judges_per_pair must be >= 1, got {self.judges_per_pair}")
        if self.max_pairs is not None and self.max_pairs < 1:
            problems.append(f"max_pairs must be >= 1, got {self.max_pairs}")
        bad = {j: w for j, w in (self.reputation or {}).items() if not 0 <= w < math.inf}
        if bad:
            problems.append(f"reputation weights must be finite and >= 0, got {bad}")
        if problems:
            raise ConfigError(f"aggregator {self.name!r}: " + "; ".join(problems))

    def models(self) -> list[str]:
        """The named judges; peer judges are the candidates' own models."""
        return [self.judge] if isinstance(self.judge, str) else sorted(set(self.judge or ()))

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message:
        candidates = self.candidates(messages)
        judgements: list[Judgement] = []
        judges: list[str] = []
        if len(candidates) > 1:
            judges = self._judges(candidates, ctx)
            rng = random.Random(f"{ctx.seed or 0}/{ctx.node}/{ctx.round}")
            pairs = self._schedule(len(candidates), rng, ctx)
            assigned = assign_judges(pairs, candidates, judges, self.judges_per_pair, rng)
            judgements = await self._judge_all(task, candidates, assigned, ctx)
        result = rank(candidates, judgements, self._weights(judges, ctx), self.alpha)
        best = candidates[result.order[0]] if candidates else None
        answers = [m.answer for m in canonical(messages) if m.ok and m.answer is not None]
        details = vote_stats(answers) | result.details() | {"alpha": self.alpha}
        if best is not None and best.answer is None:
            details["no_answer"] = f"the best-ranked candidate ({', '.join(best.ids)}) has none"
        return ctx.decision(
            inputs=messages,
            text=best.text if best else "",
            answer=best.answer if best else None,
            details=details,
            confidence=result.confidence,
            usage=sum((j.usage for j in judgements), Usage()),
            note=result.tie_note(),
        )

    def candidates(self, messages: Sequence[Message]) -> list[Candidate]:
        """The ok messages with text, merged by answer when `merge`, in canonical order."""
        groups: dict[str, list[Message]] = {}
        for m in canonical(messages):
            if m.ok and m.text.strip():
                same = self.merge and m.answer is not None
                groups.setdefault(f"={m.answer}" if same else f"#{m.id}", []).append(m)
        merged = [
            Candidate(
                answer=g[0].answer,
                text=g[0].text,
                ids=tuple(m.id for m in g),
                models=frozenset(m.model for m in g if m.model is not None),
            )
            for g in groups.values()
        ]
        return sorted(merged, key=lambda c: c.key)

    def _judges(self, candidates: Sequence[Candidate], ctx: AggregationContext) -> list[str]:
        if isinstance(self.judge, str):
            return [self.judge]
        if self.judge:
            return sorted(set(self.judge))
        peers = sorted(set().union(*(c.models for c in candidates)))
        if not peers:
            raise ConfigError(
                f"node {ctx.node!r}: {self.name} has no judge: name one (judge=...) "
                "or aggregate messages that carry their model"
            )
        return peers

    def _schedule(
        self, n: int, rng: random.Random, ctx: AggregationContext
    ) -> list[tuple[int, int]]:
        if n <= self.all_pairs_up_to:
            return list(combinations(range(n), 2))
        budget = self.max_pairs if self.max_pairs is not None else 2 * n
        if budget < n - 1:
            raise ConfigError(
                f"node {ctx.node!r}: max_pairs={budget} cannot connect {n} candidates "
                f"(it needs at least {n - 1})"
            )
        return pair_schedule(n, budget, rng)

    def _weights(self, judges: Sequence[str], ctx: AggregationContext) -> dict[str, float]:
        if self.reputation is None:
            return dict.fromkeys(judges, 1.0)
        missing = [j for j in judges if j not in self.reputation]
        if missing:
            raise ConfigError(
                f"node {ctx.node!r}: no reputation for judge(s) {', '.join(missing)}; "
                "give every judge a weight"
            )
        return {j: self.reputation[j] for j in judges}

    async def _judge_all(
        self,
        task: Task,
        candidates: Sequence[Candidate],
        assigned: Sequence[tuple[int, int, str]],
        ctx: AggregationContext,
    ) -> list[Judgement]:
        """Every assigned pair in both orders, concurrently, in a fixed order."""
        orders = [(a, b, j) for i, k, j in assigned for a, b in ((i, k), (k, i))]
        try:
            async with asyncio.TaskGroup() as group:
                jobs = [
                    group.create_task(self._judge(task, candidates, a, b, j, ctx))
                    for a, b, j in orders
                ]
        except BaseExceptionGroup as failed:  # raise the first failure (a budget) as itself
            raise failed.exceptions[0] from None
        return [job.result() for job in jobs]

    async def _judge(
        self,
        task: Task,
        candidates: Sequence[Candidate],
        first: int,
        second: int,
        judge: str,
        ctx: AggregationContext,
    ) -> Judgement:
        texts = [candidates[i].text[: self.max_answer_chars] for i in (first, second)]
        request = ChatRequest(
            messages=[{"role": "user", "content": judge_prompt(task, *texts)}],
            model=judge,
            temperature=0.0,
            max_tokens=self.max_tokens,
            seed=ctx.seed,
            choices=list(VERDICTS),
        )
        try:
            response = await ctx.chat(judge, request)
        except (BackendError, ModelOutputError) as error:  # one lost verdict, not a lost run
            return Judgement(first, second, judge, None, Usage(calls=1), str(error))
        usage = response.usage
        reply = response.completions[0].text if response.completions else ""
        return Judgement(first, second, judge, parse_verdict(reply), usage)


def judge_prompt(task: Task, first: str, second: str) -> str:
    """What is shared comes first (question, answers), the short instruction last."""
    question = task.prompt.strip()
    if task.choices:
        question = f"{question}\n{lettered(task.choices)}"
    return (
        f"Question: {question}\n\nAnswer 1:\n{first.strip()}\n\n"
        f"Answer 2:\n{second.strip()}\n\n{JUDGE_INSTRUCTION}"
    )


def parse_verdict(reply: str) -> str | None:
    """`1`, `2` or `tie` from a judge's reply; None when it says none of them."""
    text = reply.strip().lower()
    if text in VERDICTS:
        return text
    if _TIE.search(text):
        return "tie"
    digit = _DIGIT.search(text)
    return digit.group(1) if digit else None


def pair_schedule(n: int, max_pairs: int, rng: random.Random) -> list[tuple[int, int]]:
    """At most `max_pairs` pairs (i < j) of n items that connect them all.

    A random spanning path first (connected with n - 1 pairs), then the edge that
    closes it into a cycle (every item compared twice), then random other pairs.
    """
    if max_pairs < n - 1:
        raise ValueError(f"{max_pairs} pairs cannot connect {n} items")
    order = list(range(n))
    rng.shuffle(order)
    cycle = [_pair(order[k], order[(k + 1) % n]) for k in range(n if n > 2 else n - 1)]
    rest = sorted(set(combinations(range(n), 2)) - set(cycle))
    rng.shuffle(rest)
    return sorted((cycle + rest)[:max_pairs])


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


def assign_judges(
    pairs: Sequence[tuple[int, int]],
    candidates: Sequence[Candidate],
    judges: Sequence[str],
    per_pair: int,
    rng: random.Random,
) -> list[tuple[int, int, str]]:
    """Judges for each pair: never one that wrote either candidate while another can judge;
    the least loaded first, ties broken at random, so the work is spread evenly."""
    load = dict.fromkeys(judges, 0)
    assigned = []
    for i, j in pairs:
        authors = candidates[i].models | candidates[j].models
        eligible = [m for m in judges if m not in authors] or list(judges)
        tiebreak = {m: rng.random() for m in eligible}
        for m in sorted(eligible, key=lambda m: (load[m], tiebreak[m]))[:per_pair]:
            load[m] += 1
            assigned.append((i, j, m))
    return assigned


def win_matrix(
    n: int, judgements: Iterable[Judgement], weights: Mapping[str, float]
) -> list[list[float]]:
    """wins[i][j]: weighted verdicts for i over j; a tie is half a win each way."""
    wins = [[0.0] * n for _ in range(n)]
    for j in judgements:
        weight = weights.get(j.judge, 1.0)
        if j.verdict == "tie":
            wins[j.first][j.second] += weight / 2
            wins[j.second][j.first] += weight / 2
        elif j.winner is not None:
            loser = j.second if j.winner == j.first else j.first
            wins[j.winner][loser] += weight
    return wins


def fit_scores(wins: Sequence[Sequence[float]], alpha: float) -> list[float]:
    """Bradley-Terry log-strengths (mean zero) maximising the likelihood of `wins`.

    The fractional counts go to choix as they are (weights are never rounded), with
    `alpha` added to every off-diagonal count: a prior that is part of the likelihood, so
    the fit is its exact maximum. choix's own `alpha` is not used: it only seeds I-LSR's
    Markov chain and maximises no objective.
    """
    import choix  # imports scipy.stats (~1.5 s): loaded on the first fit, not with agentfab
    import numpy as np

    counts = np.asarray(wins, dtype=float).reshape(len(wins), len(wins))
    counts = counts + alpha * (1.0 - np.eye(len(wins)))
    params = choix.ilsr_pairwise_dense(counts, alpha=0.0, max_iter=1000)
    return [float(p) for p in params]


@dataclass(frozen=True)
class Ranking:
    """Candidates ranked from their judgements."""

    candidates: Sequence[Candidate]
    judgements: Sequence[Judgement]
    weights: Mapping[str, float]
    wins: list[list[float]]
    scores: list[float]
    order: list[int]
    """Candidate indices, best first."""

    @property
    def confidence(self) -> float | None:
        """The winner's Luce probability of being chosen from all candidates."""
        if not self.order:
            return None
        top = max(self.scores)
        strengths = [math.exp(s - top) for s in self.scores]
        return strengths[self.order[0]] / sum(strengths)

    def tie_note(self) -> str | None:
        """How a tie for the top score was broken (support, then agent order), if any."""
        if len(self.order) < 2:
            return None
        top = max(self.scores)
        tied = [i for i in self.order if _tie_rank(top, self.scores[i]) == 0]
        if len(tied) < 2:
            return None
        support = len(self.candidates[self.order[0]].ids)
        level = [i for i in tied if len(self.candidates[i].ids) == support]
        if len(level) > 1:
            return f"tie of {len(level)} candidates on score and support, broken by agent order"
        return f"tie of {len(tied)} candidates on score, broken by support"

    def details(self) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "answer": c.answer,
                    "ids": list(c.ids),
                    "models": sorted(c.models),
                    "support": len(c.ids),
                    "score": score,
                }
                for c, score in zip(self.candidates, self.scores, strict=True)
            ],
            "ranking": self.order,
            "winner": self.order[0] if self.order else None,
            "wins": self.wins,
            "pairs": [j.record() for j in self.judgements],
            "judges": sorted(self.weights),
            "weights": dict(sorted(self.weights.items())),
        }


def rank(
    candidates: Sequence[Candidate],
    judgements: Sequence[Judgement],
    weights: Mapping[str, float],
    alpha: float,
) -> Ranking:
    """Fit the judgements; order by score, then support, then the canonical key."""
    wins = win_matrix(len(candidates), judgements, weights)
    scores = fit_scores(wins, alpha) if candidates else []
    top = max(scores, default=0.0)
    order = sorted(
        range(len(candidates)),
        key=lambda i: (
            _tie_rank(top, scores[i]),
            -len(candidates[i].ids),
            candidates[i].key,
        ),
    )
    return Ranking(candidates, judgements, weights, wins, scores, order)


def _tie_rank(top: float, score: float) -> int:
    # Measured from the top: a near-tie is a tie.
    return round((top - score) / _SCORE_TIE)


def reputation_from_calibration(
    decisions: Iterable[tuple[Message, str]], *, smoothing: float = 1.0
) -> dict[str, float]:
    """Per-judge weights from BradleyTerry decisions on questions with known answers.

    `decisions` pairs each decision message with the right answer. A judge's
    weight is its accuracy on the verdicts where exactly one of the two
    candidates is right (a tie scores half), smoothed towards 1/2 with
    `smoothing` pseudo-verdicts each way: (right + s) / (judged + 2 s).
    Every judge that gave a verdict is listed; one never tested weighs 1/2.
    """
    if not smoothing > 0:
        raise ConfigError(f"smoothing must be > 0, got {smoothing}")
    right: dict[str, float] = {}
    judged: dict[str, int] = {}
    for decision, truth in decisions:
        correct = [_same(c["answer"], truth) for c in decision.details["candidates"]]
        for pair in decision.details["pairs"]:
            verdict, judge = pair["verdict"], pair["judge"]
            if verdict is None:
                continue
            first, second = correct[pair["first"]], correct[pair["second"]]
            informative = first != second
            judged[judge] = judged.get(judge, 0) + informative
            credit = {"1": float(first), "2": float(second)}.get(verdict, 0.5)
            right[judge] = right.get(judge, 0.0) + credit * informative
    return {j: (right[j] + smoothing) / (judged[j] + 2 * smoothing) for j in sorted(judged)}


def _same(answer: str | None, truth: str) -> bool:
    return answer is not None and normalise_text(answer) == normalise_text(truth)
