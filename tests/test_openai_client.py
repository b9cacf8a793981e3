"""OpenAIClient against the scripted server: the wire format, retries, faults and limits.

A real vLLM server cannot fail on demand; the scripted one speaks the same wire format.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from agentfab import openai_client
from agentfab.errors import BackendError, ConfigError
from agentfab.llm import ChatRequest, TokenLogprob
from agentfab.openai_client import OpenAIClient, counting_calls, retry_delay
from agentfab.serving.stand_in_server import Fault, StandInServer

QUESTION = ChatRequest(messages=[{"role": "user", "content": "Which is largest?"}], model="m")

TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport | None]] = {
    "default": lambda: None,
    "httpcore": httpx.AsyncHTTPTransport,
}
"""Faults must read the same whichever transport carries the requests."""


def fast_client(base_url: str, **options: Any) -> OpenAIClient:
    """A client that retries without noticeable waiting."""
    return OpenAIClient(base_url, backoff_s=0.001, **options)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_samples_logprobs_and_usage_are_parsed() -> None:
    server = StandInServer("Answer: B")
    request = ChatRequest(
        messages=QUESTION.messages,
        model="m",
        n=3,
        logprobs=True,
        top_logprobs=2,
        seed=7,
        stop=["\n"],
    )
    async with server as base_url, OpenAIClient(base_url) as client:
        response = await client.chat(request)

    assert [c.text for c in response.completions] == ["Answer: B"] * 3
    assert {c.finish_reason for c in response.completions} == {"stop"}
    first = response.completions[0].logprobs
    assert first is not None
    assert [t.token for t in first] == ["Answer:", " B"]
    assert first[1] == TokenLogprob(token=" B", logprob=-0.25, top={" B": -0.25, "<alt1>": -2.25})
    assert (response.prompt_tokens, response.completion_tokens) == (3, 6)
    assert response.model == "m"
    body = server.requests[0]
    assert (body["n"], body["seed"], body["stop"]) == (3, 7, ["\n"])
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)


async def test_no_logprobs_unless_asked() -> None:
    async with StandInServer() as base_url, OpenAIClient(base_url) as client:
        response = await client.chat(QUESTION)
    assert response.completions[0].logprobs is None


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_transient_statuses_are_retried(status: int) -> None:
    server = StandInServer(faults=[status, status])
    async with server as base_url, fast_client(base_url, retries=3) as client:
        response = await client.chat(QUESTION)
    assert response.completions[0].text == "Answer: B"
    assert len(server.requests) == 3


async def test_retries_are_bounded() -> None:
    server = StandInServer(faults=[500] * 5)
    async with server as base_url, fast_client(base_url, retries=2) as client:
        with pytest.raises(BackendError) as caught:
            await client.chat(QUESTION)
    assert str(caught.value) == f"{base_url}: HTTP 500 after 3 attempts: scripted fault 500"
    assert caught.value.endpoint == base_url
    assert len(server.requests) == 3


async def test_client_errors_are_not_retried() -> None:
    server = StandInServer(faults=[400])
    async with server as base_url, fast_client(base_url) as client:
        with pytest.raises(BackendError) as caught:
            await client.chat(QUESTION)
    assert str(caught.value) == f"{base_url}: HTTP 400: scripted fault 400"
    assert len(server.requests) == 1


@pytest.mark.parametrize("transport", TRANSPORTS.values(), ids=TRANSPORTS.keys())
async def test_connection_refused_names_the_endpoint(
    transport: Callable[[], httpx.AsyncBaseTransport | None],
) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    async with fast_client(base_url, retries=2, transport=transport()) as client:
        with pytest.raises(BackendError) as caught:
            await client.chat(QUESTION)
    assert str(caught.value) == f"{base_url}: connection refused after 3 attempts"


@pytest.mark.parametrize("transport", TRANSPORTS.values(), ids=TRANSPORTS.keys())
async def test_a_hanging_server_times_out(
    transport: Callable[[], httpx.AsyncBaseTransport | None],
) -> None:
    server = StandInServer(faults=["hang", "hang"])
    async with server as base_url:
        client = fast_client(base_url, timeout_s=0.2, retries=1, transport=transport())
        async with client:
            with pytest.raises(BackendError) as caught:
                await client.chat(QUESTION)
    assert str(caught.value) == f"{base_url}: no response within 0.2s after 2 attempts"
    assert len(server.requests) == 2


@pytest.mark.parametrize("transport", TRANSPORTS.values(), ids=TRANSPORTS.keys())
async def test_a_dropped_connection_is_retried(
    transport: Callable[[], httpx.AsyncBaseTransport | None],
) -> None:
    server = StandInServer(faults=["drop"])
    async with server as base_url, fast_client(base_url, transport=transport()) as client:
        response = await client.chat(QUESTION)
    assert response.completions[0].text == "Answer: B"
    assert len(server.requests) == 2


async def test_concurrency_limit_is_honoured() -> None:
    server = StandInServer(latency_s=0.05)
    async with server as base_url, OpenAIClient(base_url, max_concurrency=4) as client:
        await asyncio.gather(*(client.chat(QUESTION) for _ in range(20)))
    assert server.max_in_flight == 4


async def test_structured_choice_is_sent() -> None:
    server = StandInServer("I would say Jupiter")
    request = ChatRequest(messages=QUESTION.messages, model="m", choices=["A", "B"])
    async with server as base_url, OpenAIClient(base_url) as client:
        response = await client.chat(request)
    assert server.requests[0]["structured_outputs"] == {"choice": ["A", "B"]}
    assert response.completions[0].text == "A"


async def test_structured_choice_falls_back_to_prompting_once_rejected() -> None:
    server = StandInServer(reject_fields=["structured_outputs"])
    request = ChatRequest(messages=QUESTION.messages, model="m", choices=["A", "B"])
    async with server as base_url, fast_client(base_url) as client:
        first = await client.chat(request)
        await client.chat(request)
    assert first.completions[0].text == "Answer: B"
    assert ["structured_outputs" in body for body in server.requests] == [True, False, False]


async def test_structured_choice_can_be_switched_off() -> None:
    server = StandInServer()
    request = ChatRequest(messages=QUESTION.messages, model="m", choices=["A", "B"])
    async with (
        server as base_url,
        OpenAIClient(base_url, supports_structured_choice=False) as client,
    ):
        await client.chat(request)
    assert "structured_outputs" not in server.requests[0]


async def test_the_served_name_replaces_the_requested_model() -> None:
    server = StandInServer()
    async with server as base_url, OpenAIClient(base_url, model="served") as client:
        await client.chat(QUESTION)
    assert server.requests[0]["model"] == "served"


async def test_list_models() -> None:
    async with StandInServer(model="smol") as base_url, OpenAIClient(base_url) as client:
        assert await client.list_models() == ["smol"]


async def test_api_key_is_sent_as_bearer_token() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"object": "list", "data": []})

    transport = httpx.MockTransport(record)
    async with OpenAIClient("http://x/v1", api_key="k", transport=transport) as client:
        assert await client.list_models() == []
    assert seen == ["Bearer k"]


async def test_a_malformed_answer_is_a_backend_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"choices": 3}))
    async with OpenAIClient("http://x/v1", transport=transport) as client:
        with pytest.raises(BackendError, match=r"^http://x/v1: malformed response: TypeError"):
            await client.chat(QUESTION)


@pytest.mark.parametrize(
    ("faults", "calls"),
    [
        ([], 1),
        (["hang"], 2),  # the server got the first one and may have run it
        (["drop"], 2),
        ([500], 2),
        ([429], 1),  # turned away: no model ran
    ],
)
async def test_every_request_a_server_may_have_run_is_a_call(
    faults: list[Fault], calls: int
) -> None:
    server = StandInServer(faults=faults)
    async with server as base_url, fast_client(base_url, timeout_s=0.2, retries=1) as client:
        async with asyncio.timeout(20):
            with counting_calls() as sent:
                await client.chat(QUESTION)
    assert sent.calls == calls


async def test_requests_that_never_connected_are_no_calls() -> None:
    async with fast_client(f"http://127.0.0.1:{closed_port()}/v1", retries=1) as client:
        with counting_calls() as sent, pytest.raises(BackendError, match="refused"):
            await client.chat(QUESTION)
    assert sent.calls == 0


async def test_concurrent_calls_count_their_own_requests() -> None:
    server = StandInServer(faults=["hang"])
    async with server as base_url, fast_client(base_url, timeout_s=0.2, retries=1) as client:

        async def counted() -> int:
            with counting_calls() as sent:
                await client.chat(QUESTION)
            return sent.calls

        async with asyncio.timeout(20):
            counts = await asyncio.gather(counted(), counted())
    assert sorted(counts) == [1, 2]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("7", 7.0), ("soon", None), (None, None)],
)
async def test_a_429_carries_the_servers_retry_after(
    header: str | None, seconds: float | None
) -> None:
    server = StandInServer(faults=[429], retry_after=header)
    async with server as base_url, fast_client(base_url, retries=0) as client:
        with pytest.raises(BackendError, match="HTTP 429") as caught:
            await client.chat(QUESTION)
    assert caught.value.busy and caught.value.retryable
    assert (caught.value.status, caught.value.retry_after_s) == (429, seconds)


async def test_retry_after_may_be_a_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    server = StandInServer(faults=[429], retry_after=email.utils.format_datetime(when, True))
    async with server as base_url, fast_client(base_url, retries=0) as client:
        with pytest.raises(BackendError) as caught:
            await client.chat(QUESTION)
    assert caught.value.retry_after_s is not None and 0 < caught.value.retry_after_s <= 120


async def test_the_client_waits_as_a_429_asks(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float | None] = []

    def no_wait(backoff_s: float, step: int, retry_after_s: float | None, max_s: float) -> float:
        waits.append(retry_after_s)
        return 0.0

    monkeypatch.setattr(openai_client, "retry_delay", no_wait)
    server = StandInServer(faults=[429, 500], retry_after="3")
    async with server as base_url, fast_client(base_url, retries=2) as client:
        await client.chat(QUESTION)
    assert waits == [3.0, None]  # a 500 without Retry-After: the client's own backoff


def test_retry_delay_follows_the_server_within_a_bound() -> None:
    assert retry_delay(0.5, 0, 2.0, 30.0) == 2.0
    assert retry_delay(0.5, 0, 3600.0, 30.0) == 30.0
    assert 0.25 <= retry_delay(0.5, 0, None, 30.0) <= 0.75  # backoff with jitter
    assert retry_delay(0.5, 20, None, 30.0) == 30.0


UNCLOSED_CLIENT = """
import asyncio, sys
from agentfab.llm import ChatRequest
from agentfab.openai_client import OpenAIClient
from agentfab.serving.stand_in_server import StandInServer

QUESTION = ChatRequest(messages=[{"role": "user", "content": "2+2?"}], model="m")
client = OpenAIClient(f"http://127.0.0.1:{sys.argv[1]}/v1")  # never closed


async def ask() -> str:
    async with StandInServer("Answer: 4", port=int(sys.argv[1])):
        return (await client.chat(QUESTION)).completions[0].text


print(asyncio.run(ask()), asyncio.run(ask()))  # one client, two event loops
"""


def test_a_client_nobody_closed_leaves_no_session_open_and_serves_a_second_loop() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", UNCLOSED_CLIENT, str(closed_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Answer: 4 Answer: 4"
    assert "Unclosed" not in done.stderr and "Traceback" not in done.stderr, done.stderr


async def test_without_url_or_key_the_openai_environment_variables_are_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, str | None]] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("authorization")))
        return httpx.Response(200, json={"object": "list", "data": []})

    monkeypatch.setenv("OPENAI_BASE_URL", "http://from-env:9/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    transport = httpx.MockTransport(record)
    async with OpenAIClient(transport=transport) as client:
        await client.list_models()
    async with OpenAIClient("http://given/v1", api_key="", transport=transport) as client:
        await client.list_models()  # a URL and an empty key given: neither is replaced
    assert seen == [("http://from-env:9/v1/models", "Bearer sk-env"), ("http://given/v1/models", None)]


def test_without_url_and_without_openai_base_url_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match=r"^no base_url given and OPENAI_BASE_URL is not set$"):
        OpenAIClient()
