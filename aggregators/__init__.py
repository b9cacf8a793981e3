"""Aggregators turn the many messages reaching a node into one.

Every name is imported on first use: the engine imports `agentfab.aggregators.base`, which
runs this file, and should not pay for numpy (Bradley-Terry) or the code sandbox
(execution consensus) when its team uses neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfab.lazy import exports

if TYPE_CHECKING:
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

_HOMES = {
    "AheadByK": "agentfab.aggregators.ahead_by_k",
    "AggregationContext": "agentfab.aggregators.base",
    "Aggregator": "agentfab.aggregators.base",
    "BaseAggregator": "agentfab.aggregators.base",
    "Needs": "agentfab.aggregators.base",
    "canonical": "agentfab.aggregators.base",
    "vote_stats": "agentfab.aggregators.base",
    "BradleyTerry": "agentfab.aggregators.bradley_terry",
    "reputation_from_calibration": "agentfab.aggregators.bradley_terry",
    "Calibration": "agentfab.aggregators.confidence",
    "ConfidenceWeighted": "agentfab.aggregators.confidence",
    "fit_calibration": "agentfab.aggregators.confidence",
    "ExecutionConsensus": "agentfab.aggregators.execution",
    "Majority": "agentfab.aggregators.majority",
    "plurality": "agentfab.aggregators.majority",
    "SelfAggregate": "agentfab.aggregators.self_aggregation",
}

__getattr__, __dir__ = exports(__name__, _HOMES, __all__)
