"""Aggregators turn the many messages reaching a node into one."""

from agentfab.aggregators.ahead_by_k import AheadByK
from agentfab.aggregators.base import AggregationContext, Aggregator, canonical, vote_stats
from agentfab.aggregators.bradley_terry import BradleyTerry, reputation_from_calibration
from agentfab.aggregators.confidence import (
    Calibration,
    ConfidenceWeighted,
    fit_calibration,
    logprob_confidence,
    stated_confidence,
)
from agentfab.aggregators.execution import ExecutionConsensus
from agentfab.aggregators.extract import answer_format_for, extract_answer, normalise_text
from agentfab.aggregators.majority import Majority, plurality
from agentfab.aggregators.self_aggregation import SelfAggregate

__all__ = [
    "AggregationContext",
    "Aggregator",
    "AheadByK",
    "BradleyTerry",
    "Calibration",
    "ConfidenceWeighted",
    "ExecutionConsensus",
    "Majority",
    "SelfAggregate",
    "answer_format_for",
    "canonical",
    "extract_answer",
    "fit_calibration",
    "logprob_confidence",
    "normalise_text",
    "plurality",
    "reputation_from_calibration",
    "stated_confidence",
    "vote_stats",
]
