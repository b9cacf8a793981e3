"""Aggregators turn the many messages reaching a node into one."""

from agentfab.aggregators.ahead_by_k import AheadByK
from agentfab.aggregators.base import (
    AggregationContext,
    Aggregator,
    BaseAggregator,
    Needs,
    canonical,
    vote_stats,
)
from agentfab.aggregators.bradley_terry import BradleyTerry, reputation_from_calibration
from agentfab.aggregators.confidence import Calibration, ConfidenceWeighted, fit_calibration
from agentfab.aggregators.execution import ExecutionConsensus
from agentfab.aggregators.majority import Majority, plurality
from agentfab.aggregators.self_aggregation import SelfAggregate

__all__ = [
    "AggregationContext",
    "Aggregator",
    "AheadByK",
    "BaseAggregator",
    "BradleyTerry",
    "Calibration",
    "ConfidenceWeighted",
    "ExecutionConsensus",
    "Majority",
    "Needs",
    "SelfAggregate",
    "canonical",
    "fit_calibration",
    "plurality",
    "reputation_from_calibration",
    "vote_stats",
]
