"""OpenTelemetry spans of a real team on the embedded model (SmolLM2-135M-Instruct): one
call span per agent under its agent span, tokens equal to the Result's usage."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentfab import Agent, Orchestrator, RunSettings, telemetry
from agentfab.aggregators import Majority
from agentfab.topologies import star

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("real_embedded")]


async def test_spans_of_a_star_on_the_embedded_model(embedded: Any) -> None:
    exporter = InMemorySpanExporter()
    provider = telemetry.enable_tracing(exporter)
    try:
        team = star([Agent(name=f"w{i}", max_tokens=16) for i in range(3)], Majority())
        result = await Orchestrator({"default": embedded}, RunSettings(seed=0)).run(
            team, "What is 3 + 4? Answer with a number."
        )
        provider.force_flush()
        spans = list(exporter.get_finished_spans())
    finally:
        telemetry.disable_tracing()
        provider.shutdown()
    by_name = {s.name: s for s in spans}
    run = by_name["invoke_workflow star"]
    calls = [s for s in spans if s.name.startswith("chat ")]
    agents = {s.context.span_id: s for s in spans if s.name.startswith("invoke_agent ")}
    assert len(calls) == 3 == len(agents) == result.usage.calls
    for call in calls:
        attributes = call.attributes or {}
        assert call.parent is not None and call.parent.span_id in agents
        assert attributes["gen_ai.provider.name"] == "transformers"
        assert attributes["gen_ai.request.seed"] is not None
        assert set(attributes["gen_ai.response.finish_reasons"]) <= {"stop", "length"}
    assert sum(int((c.attributes or {})["gen_ai.usage.input_tokens"]) for c in calls) == (
        result.usage.prompt_tokens
    )
    assert sum(int((c.attributes or {})["gen_ai.usage.output_tokens"]) for c in calls) == (
        result.usage.completion_tokens
    )
    assert (run.attributes or {})["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    hub = by_name["aggregate hub"]
    assert hub.parent is not None and run.context is not None
    assert hub.parent.span_id == run.context.span_id
    if result.answer is not None:
        assert (hub.attributes or {})["agentfab.answer"] == result.answer
