"""The aggregator specs of a pipeline: each built-in with its settings, and `kind: python`
for your own. Each spec builds its aggregator (`build()`); nothing here aggregates."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from agentfab import references
from agentfab.aggregators.ahead_by_k import AheadByK
from agentfab.aggregators.base import Aggregator
from agentfab.aggregators.bradley_terry import BradleyTerry
from agentfab.aggregators.confidence import ConfidenceWeighted
from agentfab.aggregators.execution import ExecutionConsensus
from agentfab.aggregators.majority import Majority
from agentfab.aggregators.self_aggregation import SelfAggregate
from agentfab.errors import ConfigError
from agentfab.pipeline.spec import Spec
from agentfab.team import check_aggregator
from agentfab.yaml_loader import Loc


class AggregatorBase(Spec):
    """What every aggregator spec answers."""

    def build(self) -> Aggregator:
        raise NotImplementedError

    def models(self) -> list[tuple[Loc, str]]:
        """The models it names (judges, a writer), each with where it sits in the spec: a
        run would stop at the first call to one the pipeline lacks."""
        return []


class MajoritySpec(AggregatorBase):
    """Plurality vote over extracted answers; a tie goes to the first agent's answer."""

    kind: Literal["majority"] = "majority"

    def build(self) -> Aggregator:
        return Majority()


class ConfidenceSpec(AggregatorBase):
    """Votes weighted by confidence (ReConcile): stated by the agents, or from logprobs."""

    kind: Literal["confidence"]
    source: Literal["stated", "logprob"] = "stated"
    default: float = Field(default=0.5, ge=0.0, le=1.0)
    """Weight of a voter whose confidence is unknown."""

    def build(self) -> Aggregator:
        return ConfidenceWeighted(source=self.source, default=self.default)


class AheadByKSpec(AggregatorBase):
    """First-to-ahead-by-k (MAKER): sample the node's agents until one answer leads by k."""

    kind: Literal["ahead_by_k"]
    k: int = Field(default=2, ge=1)
    max_samples: int = Field(default=10, ge=1)
    batch: int = Field(default=4, ge=1)

    def build(self) -> Aggregator:
        return AheadByK(k=self.k, max_samples=self.max_samples, batch=self.batch)


class SelfAggregateSpec(AggregatorBase):
    """A model writes a better answer from the candidates (generative self-aggregation)."""

    kind: Literal["self_aggregate"]
    model: str | None = None
    """The writer; empty: the candidates' own model."""
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)

    def build(self) -> Aggregator:
        return SelfAggregate(self.model, max_tokens=self.max_tokens, temperature=self.temperature)

    def models(self) -> list[tuple[Loc, str]]:
        return [] if self.model is None else [(("model",), self.model)]


class BradleyTerrySpec(AggregatorBase):
    """Judges compare answers in pairs, both orders; a Bradley-Terry fit ranks them."""

    kind: Literal["bradley_terry"]
    judge: str | list[str] | None = None
    """A judge model or a panel; empty: the candidates' own models judge each other."""
    judges_per_pair: int = Field(default=1, ge=1)
    all_pairs_up_to: int = Field(default=6, ge=2)
    max_pairs: int | None = Field(default=None, ge=1)
    reputation: dict[str, float] | None = None
    """Judge model -> weight of its verdicts."""

    def build(self) -> Aggregator:
        judge = tuple(self.judge) if isinstance(self.judge, list) else self.judge
        return BradleyTerry(
            judge=judge,
            judges_per_pair=self.judges_per_pair,
            all_pairs_up_to=self.all_pairs_up_to,
            max_pairs=self.max_pairs,
            reputation=self.reputation,
        )

    def models(self) -> list[tuple[Loc, str]]:
        if isinstance(self.judge, list):
            return [(("judge", j), judge) for j, judge in enumerate(self.judge)]
        return [] if self.judge is None else [(("judge",), self.judge)]


class ExecutionSpec(AggregatorBase):
    """Code answers grouped by what they return on the problem's test inputs; the largest
    group wins. Needs code tasks (`agentfab eval` on a HumanEval-style suite)."""

    kind: Literal["execution"]
    per_input_s: float = Field(default=1.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=4, ge=1)

    def build(self) -> Aggregator:
        return ExecutionConsensus(
            per_input_s=self.per_input_s, timeout_s=self.timeout_s, concurrency=self.concurrency
        )


class PythonAggregatorSpec(AggregatorBase):
    """Your own aggregator: `ref` names its class (or a function that makes one) and
    `settings` are its keyword arguments. It is made when the pipeline is loaded, so a wrong
    name or setting is an error there (see docs/EXTENDING.md)."""

    kind: Literal["python"]
    ref: str
    """`package.module:Name`, found on sys.path, in the current folder or the pipeline's."""
    settings: dict[str, Any] = {}

    _checked: Aggregator | None = PrivateAttr(default=None)
    """The one made when the spec was validated: it answers `models()`."""

    @model_validator(mode="after")
    def _made(self) -> PythonAggregatorSpec:
        try:
            self._checked = self.build()
        except ConfigError as error:
            raise ValueError(str(error)) from None  # so pydantic places it at its line
        return self

    def models(self) -> list[tuple[Loc, str]]:
        made = self._checked or self.build()
        return [(("ref",), model) for model in made.models()]

    def build(self) -> Aggregator:
        made = references.build(self.ref, self.settings)
        check_aggregator(made, f"aggregator {self.ref!r}")
        return made  # type: ignore[no-any-return]


AggregatorSpec = Annotated[
    MajoritySpec
    | ConfidenceSpec
    | AheadByKSpec
    | SelfAggregateSpec
    | BradleyTerrySpec
    | ExecutionSpec
    | PythonAggregatorSpec,
    Field(discriminator="kind"),
]
