"""Aggregators turn the many messages reaching a node into one."""

from agentfab.aggregators.base import AggregationContext, Aggregator, canonical, vote_stats
from agentfab.aggregators.extract import answer_format_for, extract_answer, normalise_text
from agentfab.aggregators.majority import Majority, plurality

__all__ = [
    "AggregationContext",
    "Aggregator",
    "Majority",
    "answer_format_for",
    "canonical",
    "extract_answer",
    "normalise_text",
    "plurality",
    "vote_stats",
]
