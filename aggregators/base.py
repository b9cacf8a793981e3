"""The one interface every aggregator implements, and what it is given.

Every aggregator must decide from its inputs alone, whatever their order, and make its
model calls through the context, inside the run's budget.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentfab.errors import ConfigError
from agentfab.llm import ChatRequest, ChatResponse, LLMClient
from agentfab.messages import Message, Task, Usage


@dataclass(frozen=True)
class AggregationContext:
    """What an aggregator may use: where it runs, and the clients of the run's models."""

    node: str
    """The aggregating node's name."""
    round: int = 1
    clients: Mapping[str, LLMClient] = field(default_factory=dict)
    """Model name -> client, for judges and synthesisers."""
    answer_format: str = "short"
    """How answers are extracted: `letter`, `number`, `short` or `text`."""
    seed: int | None = None
    call: Callable[[str, ChatRequest], Awaitable[ChatResponse]] | None = None
    """Set by the orchestrator: sends a request through the run's budget."""
    sample: Callable[[int], Awaitable[list[Message]]] | None = None
    """Set by the orchestrator: `n` more answers from the agents this node reads."""

    async def chat(self, model: str, request: ChatRequest) -> ChatResponse:
        """Ask `model` (a judge, a synthesiser); counted against the run's budget."""
        if self.call is not None:
            return await self.call(model, request)
        if model not in self.clients:
            known = ", ".join(sorted(self.clients)) or "none"
            raise ConfigError(f"node {self.node!r}: no client for model {model!r} (known: {known})")
        return await self.clients[model].chat(request)

    def decision(
        self,
        *,
        inputs: Sequence[Message],
        text: str,
        answer: str | None,
        details: dict[str, Any],
        confidence: float | None = None,
        usage: Usage | None = None,
        note: str | None = None,
    ) -> Message:
        """The aggregator's result as a message from this node.

        `note` says how the decision was reached when that needs saying (`vote_note`).
        A decision with no answer agreed on nothing: its agreement and margin are None, not
        the share of an answer it did not choose, and its note says why there is none
        (`details["no_answer"]`, by default `no_answer_reason`)."""
        if answer is None:
            details = {**details, "agreement": None, "margin": None}
            details.setdefault("no_answer", no_answer_reason(inputs))
            note = note or f"no answer: {details['no_answer']}"
        return Message(
            id=f"{self.node}@{self.round}",
            sender=self.node,
            kind="aggregate",
            round=self.round,
            text=text,
            answer=answer,
            confidence=confidence,
            inputs=sorted(m.id for m in inputs),
            usage=usage or Usage(),
            details=details,
            note=note,
        )


@dataclass(frozen=True)
class Needs:
    """What an aggregator needs from the agents it reads; their calls ask for it."""

    stated_confidence: bool = False
    """Each agent is asked to state how sure it is (`Message.confidence`)."""
    logprobs: bool = False
    """Each agent's call returns token log-probabilities (`details["logprob_confidence"]`)."""

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            stated_confidence=self.stated_confidence or other.stated_confidence,
            logprobs=self.logprobs or other.logprobs,
        )


@runtime_checkable
class Aggregator(Protocol):
    """Many messages in, one message out.

    Pure aggregators make no model calls; judge-based and generative ones call through
    `ctx.chat` the models they name in `models()`, and report what they spent in the
    returned message's usage. Implementations must not depend on the order of `messages`.
    `BaseAggregator` gives the defaults: needs nothing, calls no model.
    """

    @property
    def name(self) -> str:
        """A short name for traces and reports."""
        ...

    @property
    def needs(self) -> Needs:
        """What this aggregator reads from its agents beyond their answers."""
        ...

    def models(self) -> list[str]:
        """The models this aggregator calls itself (judges, a writer): a run checks each has
        a client before its first call. A model chosen at run time from the candidates'
        own is not listed."""
        ...

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message: ...


class BaseAggregator:
    """Defaults for an aggregator: it needs nothing from its agents and calls no model.
    Subclasses give `name` and `aggregate`, and override what they need."""

    @property
    def needs(self) -> Needs:
        return Needs()

    def models(self) -> list[str]:
        return []


def derive_seed(seed: int | None, *parts: object) -> int | None:
    """A seed of its own for each agent, node, round or sample, reproducible from one run
    seed: without it, every agent of a seeded team would sample as a clone."""
    if seed is None:
        return None
    return zlib.crc32("/".join(map(str, (seed, *parts))).encode())


def canonical(messages: Sequence[Message]) -> list[Message]:
    """Messages in a fixed order (by id), so no decision depends on arrival order."""
    return sorted(messages, key=lambda m: m.id)


def vote_stats(answers: Sequence[str]) -> dict[str, Any]:
    """Agreement (top share), entropy (bits) and margin (top share minus runner-up) of answers."""
    counts = Counter(answers)
    total = sum(counts.values())
    if total == 0:
        return {"votes": {}, "agreement": 0.0, "entropy": 0.0, "margin": 0.0}
    shares = sorted((c / total for c in counts.values()), reverse=True)
    entropy = -sum(p * math.log2(p) for p in shares)
    return {
        "votes": dict(sorted(counts.items())),
        "agreement": shares[0],
        "entropy": entropy + 0.0,  # turn -0.0 into 0.0
        "margin": shares[0] - (shares[1] if len(shares) > 1 else 0.0),
    }


WEAK_SHARE = 0.5
"""A decision whose answer has less than this share of the votes is carried by a small
share (a plurality, not a majority) and says so."""


def vote_note(
    votes: Mapping[str, float],
    chosen: str | None,
    *,
    broken_by: str = "agent order",
    unit: str = "votes",
) -> str | None:
    """How a vote for `chosen` was decided, when that needs saying: a tie the rule broke by
    `broken_by` (`"tie of 5 single votes, broken by agent order"`), or a share below
    `WEAK_SHARE` (`"carried by 2 of 5 votes (40%)"`). None for a clear decision.

    `votes` are counts or weights per answer; `chosen` must be one with the most."""
    if chosen is None or chosen not in votes:
        return None
    top = votes[chosen]
    tied = [v for v in votes.values() if math.isclose(v, top)]
    if len(tied) > 1:
        return f"tie of {_tied(len(tied), top)}, broken by {broken_by}"
    total = sum(votes.values())
    if total > 0 and top / total < WEAK_SHARE:
        return f"carried by {_amount(top)} of {_amount(total)} {unit} ({top / total:.0%})"
    return None


def _tied(answers: int, each: float) -> str:
    if math.isclose(each, 1.0):
        return f"{answers} single votes"
    if float(each).is_integer():
        return f"{answers} answers with {int(each)} votes each"
    return f"{answers} answers of equal weight ({each:.3g} each)"


def _amount(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def no_answer_reason(inputs: Sequence[Message]) -> str:
    """Why inputs gave a node nothing to decide on, naming the first cause (by message id)."""
    if not inputs:
        return "no inputs"
    ordered = canonical(inputs)
    failed = [m for m in ordered if not m.ok]
    first = (failed or [m for m in ordered if m.answer is None] or ordered)[0]
    cause = first.error or first.note or "no answer"
    return f"none of the {len(inputs)} inputs gave an answer (first, {first.id}: {cause})"
