"""OpenTelemetry spans through the SDK's in-memory exporter, over the real wire format
(OpenAIClient against the stand-in server): names, parents, GenAI attributes, and the
tokens equal to the Result's usage; off costs no import; the environment turns on OTLP.
The same on the embedded model: tests/integration/test_telemetry_embedded.py."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentfab import Agent, Orchestrator, Result, Task, telemetry
from agentfab.aggregators import BradleyTerry, Majority
from agentfab.openai_client import OpenAIClient
from agentfab.serving.stand_in_server import StandInServer
from agentfab.topologies import star

ROLES = {
    "You favour A.": "Answer: A",
    "You favour A too.": "Answer: A",
    "You favour B.": "Answer: B",
}
TASK = Task(prompt="Which letter?", choices=["first", "second", "third", "fourth"])


def by_role(body: Mapping[str, Any]) -> str:
    """Agents answer by their role; anything else is a judge, who prefers the first shown."""
    prompt = body["messages"][-1]["content"]
    return next((reply for role, reply in ROLES.items() if prompt.endswith(role)), "1")


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = telemetry.enable_tracing(self.exporter)

    def finished(self) -> list[ReadableSpan]:
        self.provider.force_flush()
        return list(self.exporter.get_finished_spans())


@pytest.fixture
def spans() -> Iterator[Spans]:
    collected = Spans()
    yield collected
    telemetry.disable_tracing()
    collected.provider.shutdown()


async def run_team(aggregator: object) -> tuple[Result, str]:
    workers = [Agent(name=f"w{i}", role=role, max_tokens=8) for i, role in enumerate(ROLES)]
    async with StandInServer(by_role, model="smol") as url, OpenAIClient(url, model="smol") as c:
        result = await Orchestrator({"default": c}).run(star(workers, aggregator), TASK)  # type: ignore[arg-type]
    return result, url


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def named(spans: list[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


def tokens(span: ReadableSpan) -> tuple[Any, Any]:
    attributes = span.attributes or {}
    return attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]


async def test_a_run_is_a_tree_of_workflow_agent_and_call_spans(spans: Spans) -> None:
    result, url = await run_team(Majority())
    finished = spans.finished()
    [run] = named(finished, "invoke_workflow ")
    assert run.name == "invoke_workflow star" and run.parent is None
    agents = named(finished, "invoke_agent ")
    assert sorted(s.name for s in agents) == [
        "invoke_agent w0",
        "invoke_agent w1",
        "invoke_agent w2",
    ]
    [hub] = named(finished, "aggregate ")
    assert hub.name == "aggregate hub"
    assert {parent_of(s) for s in [*agents, hub]} == {span_id(run)}

    calls = named(finished, "chat ")
    assert len(calls) == 3 == result.usage.calls
    assert sorted(parent_of(c) for c in calls) == sorted(span_id(a) for a in agents)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    for call in calls:
        attributes = call.attributes or {}
        assert call.name == "chat smol"
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "smol"
        assert attributes["gen_ai.response.model"] == "smol"
        assert attributes["gen_ai.request.max_tokens"] == 8
        assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)
        assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)

    usage = (result.usage.prompt_tokens, result.usage.completion_tokens)
    assert usage[0] > 0 and usage[1] > 0
    assert tuple(map(sum, zip(*(tokens(c) for c in calls), strict=True))) == usage
    assert tokens(run) == usage
    for agent in agents:
        message = next(m for m in result.messages if agent.name.endswith(m.sender))
        assert (agent.attributes or {})["agentfab.answer"] == message.answer

    hub_attributes = hub.attributes or {}
    assert hub_attributes["agentfab.answer"] == result.answer == "A"
    tally = json.loads(str(hub_attributes["agentfab.tally"]))
    assert tally == json.loads(json.dumps(result.messages[-1].details, default=str))
    assert tally["votes"] == {"A": 2, "B": 1}


async def test_judges_calls_are_children_of_the_aggregate_span(spans: Spans) -> None:
    result, _ = await run_team(BradleyTerry())
    finished = spans.finished()
    [hub] = named(finished, "aggregate ")
    agents = {span_id(a) for a in named(finished, "invoke_agent ")}
    calls = named(finished, "chat ")
    judged = [c for c in calls if parent_of(c) == span_id(hub)]
    assert len(judged) == len(calls) - 3 > 0  # every call not an agent's is the hub's
    assert all(parent_of(c) in agents for c in calls if c not in judged)
    usage = (result.usage.prompt_tokens, result.usage.completion_tokens)
    assert tuple(map(sum, zip(*(tokens(c) for c in calls), strict=True))) == usage
    tally = json.loads(str((hub.attributes or {})["agentfab.tally"]))
    assert tally["wins"] == [[0.0, 1.0], [1.0, 0.0]] and tally["ranking"] == [0, 1]


async def test_off_makes_no_spans(spans: Spans) -> None:
    telemetry.disable_tracing()
    await run_team(Majority())
    assert spans.finished() == []


OFF_COSTS_NO_IMPORT = """
import asyncio, sys
from agentfab import Agent, Orchestrator
from agentfab.aggregators import Majority
from agentfab.topologies import star
from tests.scripted import ScriptedClient
client = ScriptedClient(lambda request: ("Answer: 4", 0.0))
team = star([Agent(name="a"), Agent(name="b")], Majority())
result = asyncio.run(Orchestrator({"default": client}).run(team, "2 + 2?"))
assert result.answer == "4", result.answer
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""


def test_without_configuration_opentelemetry_is_never_imported() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", OFF_COSTS_NO_IMPORT], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


EXPORTS_OVER_OTLP = """
import asyncio
from agentfab import Agent, Orchestrator
from agentfab.aggregators import Majority
from agentfab.topologies import star
from tests.scripted import ScriptedClient
client = ScriptedClient(lambda request: ("Answer: 4", 0.0))
team = star([Agent(name="a"), Agent(name="b")], Majority())
asyncio.run(Orchestrator({"default": client}).run(team, "2 + 2?"))
"""  # the SDK flushes its batch at exit


async def test_the_otlp_endpoint_variable_turns_on_export_over_http() -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[str] = []

    async def traces(request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource in export.resource_spans:
            received.extend(s.name for scope in resource.scope_spans for s in scope.spans)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", EXPORTS_OVER_OTLP, env=env, stderr=asyncio.subprocess.PIPE
        )
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, stderr.decode()
    finally:
        await runner.cleanup()
    assert sorted(received) == sorted(
        ["invoke_workflow star", "invoke_agent a", "invoke_agent b", "aggregate hub"]
        + ["chat default"] * 2
    )
