"""OpenTelemetry spans: one per run, per node and per model call (the `otel` extra).

Off unless configured: by `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) in the
environment, which sends spans over OTLP, or by `enable_tracing(exporter)`. When off, each
span costs one global check and OpenTelemetry is never imported.

Model calls follow the GenAI semantic conventions: a client span `chat {model}` with
`gen_ai.request.*`, `gen_ai.response.*` and `gen_ai.usage.*_tokens`; agents are
`invoke_agent {name}` spans and the run an `invoke_workflow {team}` span. An aggregate
node's span carries its decision: the answer, its confidence and its tally (votes,
Bradley-Terry scores, weights) as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agentfab.errors import AgentfabError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from agentfab.llm import ChatRequest, ChatResponse
    from agentfab.messages import Message, Usage
    from agentfab.result import Result

ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_TALLY_CHARS = 8_000  # an attribute is a string; a huge win matrix is cut, not dropped
_UNSET: Any = object()
_tracer: Tracer | None = _UNSET  # resolved on first use; None: off
_Spanning = contextlib.AbstractContextManager["Span | None"]
_OFF: _Spanning = contextlib.nullcontext()  # what every span is when tracing is off


def enable_tracing(
    exporter: SpanExporter | None = None, *, provider: TracerProvider | None = None
) -> TracerProvider:
    """Turn spans on: into `exporter` (batched), into your own `provider`, or, with
    neither, over OTLP as the `OTEL_EXPORTER_OTLP_*` variables say."""
    global _tracer
    try:
        if provider is None:
            provider = _provider(exporter if exporter is not None else _otlp_exporter())
    except ImportError as error:
        raise AgentfabError(
            f"tracing needs OpenTelemetry ({error.name} is missing): pip install 'agentfab[otel]'"
        ) from None
    _tracer = provider.get_tracer("agentfab")
    return provider


def disable_tracing() -> None:
    """Turn spans off, whatever the environment says."""
    global _tracer
    _tracer = None


def tracer() -> Tracer | None:
    """The tracer spans go to, or None when tracing is off."""
    global _tracer
    if _tracer is _UNSET:
        _tracer = None
        if any(os.environ.get(name) for name in ENDPOINT_ENVS) and not _sdk_disabled():
            try:
                enable_tracing()
            except AgentfabError as error:  # the variable may be meant for another program
                warnings.warn(f"{ENDPOINT_ENVS[1]} is set, but {error}", stacklevel=2)
    return _tracer


def run_span(team: str) -> _Spanning:
    if (active := tracer()) is None:
        return _OFF
    attributes = {"gen_ai.operation.name": "invoke_workflow", "agentfab.team": team}
    return active.start_as_current_span(f"invoke_workflow {team}", attributes=attributes)


def node_span(name: str, kind: str, round_no: int) -> _Spanning:
    if (active := tracer()) is None:
        return _OFF
    operation = "invoke_agent" if kind == "agent" else "aggregate"
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "agentfab.node": name,
        "agentfab.round": round_no,
    }
    if kind == "agent":
        attributes["gen_ai.agent.name"] = name
    return active.start_as_current_span(f"{operation} {name}", attributes=attributes)


def call_span(model: str, client: object, request: ChatRequest) -> _Spanning:
    """A model call's client span; `record_call` fills in what came back."""
    if (active := tracer()) is None:
        return _OFF
    from opentelemetry.trace import SpanKind

    attributes = _request_attributes(model, client, request)
    name = f"chat {attributes['gen_ai.request.model']}"
    return active.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes)


def record_call(span: Span | None, response: ChatResponse | None, usage: Usage, error: str) -> None:
    """The response's model and finish reasons, and what the call cost (`agentfab.calls`:
    the requests it took, retries included)."""
    if span is None:
        return
    span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
    span.set_attribute("agentfab.calls", usage.calls)
    if response is not None:
        if response.model:
            span.set_attribute("gen_ai.response.model", response.model)
        reasons = [c.finish_reason for c in response.completions]
        span.set_attribute("gen_ai.response.finish_reasons", reasons)
    if error:
        _failed(span, error)


def record_message(span: Span | None, message: Message) -> None:
    """What a node said: its answer, confidence, usage and, for an aggregate, its tally."""
    if span is None:
        return
    if message.answer is not None:
        span.set_attribute("agentfab.answer", message.answer)
    if message.confidence is not None:
        span.set_attribute("agentfab.confidence", message.confidence)
    span.set_attribute("gen_ai.usage.input_tokens", message.usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", message.usage.completion_tokens)
    if message.kind == "aggregate":
        tally = {k: v for k, v in message.details.items() if k != "prompts"}
        text = json.dumps(tally, default=str, sort_keys=True)
        span.set_attribute("agentfab.tally", text[:_TALLY_CHARS])
    if message.error:
        _failed(span, message.error)


def record_result(span: Span | None, result: Result) -> None:
    if span is None:
        return
    if result.answer is not None:
        span.set_attribute("agentfab.answer", result.answer)
    span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)
    span.set_attribute("agentfab.calls", result.usage.calls)
    span.set_attribute("agentfab.complete", result.complete)


def _request_attributes(model: str, client: object, request: ChatRequest) -> dict[str, Any]:
    """The request as the GenAI conventions name it; the served model name where the client
    replaces the pipeline's own."""
    endpoint = str(getattr(client, "endpoint", ""))
    served = getattr(client, "model", None)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai" if endpoint.startswith("http") else "transformers",
        "gen_ai.request.model": served if isinstance(served, str) else request.model or model,
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.temperature": request.temperature,
        "gen_ai.request.choice.count": request.n,
        "agentfab.model": model,
    }
    if request.seed is not None:
        attributes["gen_ai.request.seed"] = request.seed
    where = urlsplit(endpoint)
    if where.hostname:
        attributes["server.address"] = where.hostname
        if where.port:
            attributes["server.port"] = where.port
    return attributes


def _failed(span: Span, error: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("error.type", error.split(":", 1)[0][:200])
    span.set_status(Status(StatusCode.ERROR, error))


def _provider(exporter: SpanExporter) -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "agentfab"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _otlp_exporter() -> SpanExporter:
    """OTLP as the standard variables say: http/protobuf unless the protocol is grpc."""
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    )
    if protocol.strip() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter()


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
