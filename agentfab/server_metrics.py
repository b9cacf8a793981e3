"""What a vLLM server says it did during a run, from its Prometheus `/metrics`.

The counters are read before and after a run; the difference is the run's share
when it had the server to itself (concurrent runs on one server each see the sum).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

# Our field -> vLLM's counter (summed over its label sets: engines, finish reasons).
COUNTERS = {
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "prompt_tokens_cached": "vllm:prompt_tokens_cached_total",
    "generation_tokens": "vllm:generation_tokens_total",
    "requests": "vllm:request_success_total",
    "queue_time_s": "vllm:request_queue_time_seconds_sum",
}


class ServerStats(BaseModel):
    """One server's counters over a run (after minus before)."""

    model_config = ConfigDict(frozen=True)

    endpoint: str
    prefix_cache_queries: float = 0.0
    """Prompt tokens looked up in the prefix cache."""
    prefix_cache_hits: float = 0.0
    """Of those, tokens found cached (their prefill was skipped)."""
    prompt_tokens: float = 0.0
    prompt_tokens_cached: float = 0.0
    """Prompt tokens of finished requests that came from the cache."""
    generation_tokens: float = 0.0
    requests: float = 0.0
    """Requests the server finished."""
    queue_time_s: float = 0.0
    """Seconds requests waited in the server's queue, summed."""

    @property
    def prefix_cache_hit_rate(self) -> float | None:
        if self.prefix_cache_queries <= 0:
            return None
        return self.prefix_cache_hits / self.prefix_cache_queries

    @property
    def cached_prompt_share(self) -> float | None:
        """Share of prompt tokens served from the cache. Unlike the hit rate, a long prefill
        split over several steps does not count its own earlier chunks as hits."""
        if self.prompt_tokens <= 0:
            return None
        return self.prompt_tokens_cached / self.prompt_tokens

    @property
    def mean_queue_time_s(self) -> float | None:
        return self.queue_time_s / self.requests if self.requests > 0 else None


def parse_counters(text: str) -> dict[str, float]:
    """The counters agentfab reports, from Prometheus text exposition format."""
    wanted = {metric: field for field, metric in COUNTERS.items()}
    totals = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        field = wanted.get(name)
        if field is None:
            continue
        try:
            totals[field] += float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue  # a line we do not understand is not worth failing a run over
    return totals


def difference(
    endpoint: str, before: Mapping[str, float], after: Mapping[str, float]
) -> ServerStats:
    # A server restarted mid-run counts from zero again: keep what it counted since.
    values = {
        field: after.get(field, 0.0) - before.get(field, 0.0)
        if after.get(field, 0.0) >= before.get(field, 0.0)
        else after.get(field, 0.0)
        for field in COUNTERS
    }
    return ServerStats(endpoint=endpoint, **values)
