"""Reading vLLM's Prometheus counters into a run's ServerStats."""

from __future__ import annotations

from agentfab.server_metrics import difference, parse_counters

EXPOSITION = """\
# HELP vllm:prefix_cache_queries_total Prefix cache queries, in terms of number of queried tokens.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.79e+09
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 750.0
vllm:prompt_tokens_total{engine="0",model_name="m"} 1000.0
vllm:prompt_tokens_cached_total{engine="0",model_name="m"} 700.0
vllm:generation_tokens_total{engine="0",model_name="m"} 64.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 6.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 2.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="m"} 0.4
vllm:request_queue_time_seconds_count{engine="0",model_name="m"} 8.0
vllm:num_requests_running{engine="0",model_name="m"} 3.0
"""


def test_counters_sum_label_sets_and_skip_other_series() -> None:
    counters = parse_counters(EXPOSITION)
    assert counters["requests"] == 8.0  # stop + length
    assert counters["prefix_cache_queries"] == 1000.0  # not the _created timestamp
    assert counters["queue_time_s"] == 0.4


def test_difference_is_the_run_and_a_restarted_server_counts_from_zero() -> None:
    before = parse_counters(EXPOSITION)
    after = {**before, "prefix_cache_queries": 1800.0, "prefix_cache_hits": 1350.0,
             "requests": 3.0}  # requests went down: the server restarted mid-run
    stats = difference("http://h/v1", before, after)
    assert stats.prefix_cache_hit_rate == 600.0 / 800.0
    assert stats.requests == 3.0
    assert stats.mean_queue_time_s == 0.0  # no queueing counted during the run
    whole = difference("http://h/v1", dict.fromkeys(before, 0.0), before)
    assert whole.cached_prompt_share == 0.7 and whole.mean_queue_time_s == 0.05
