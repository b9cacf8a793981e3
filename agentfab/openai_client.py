"""`LLMClient` for OpenAI-compatible servers (vLLM first), over `httpx.AsyncClient`.

The transport under httpx was chosen by measurement (benchmarks/overhead.py, 1,000 calls
at 64 in flight): httpcore's pool spends several times the CPU of aiohttp per call, so
the default is `AiohttpSessionTransport`, a buffered transport over one aiohttp session.
Any httpx transport can be injected instead (tests use that to produce wire-level faults).
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
from functools import lru_cache
from typing import Any

import aiohttp
import httpx

from agentfab.errors import BackendError
from agentfab.llm import ChatRequest, ChatResponse, Completion, TokenLogprob

__all__ = ["AiohttpSessionTransport", "OpenAIClient"]

_STRUCTURED_FIELD = "structured_outputs"


class OpenAIClient:
    """Chat completions from one OpenAI-compatible endpoint, e.g. `http://127.0.0.1:8000/v1`.

    At most `max_concurrency` requests are on the wire at once. An attempt that fails with
    429, 5xx, a connection error or a timeout is retried `retries` times with exponential
    backoff and jitter; every other failure, and the last one, raises `BackendError`
    naming the endpoint. `timeout_s` bounds connecting and waiting for the response of one
    attempt.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        max_concurrency: int = 64,
        timeout_s: float = 120.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
        supports_structured_choice: bool = True,
    ) -> None:
        self.endpoint = base_url.rstrip("/")
        self._retries = max(0, retries)
        self._backoff_s = backoff_s
        self._timeout_s = timeout_s
        self._structured_choice = supports_structured_choice
        self._slots = asyncio.Semaphore(max_concurrency)
        self._chat_url = httpx.URL(f"{self.endpoint}/chat/completions")
        self._models_url = httpx.URL(f"{self.endpoint}/models")
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=timeout_s,
            transport=transport or AiohttpSessionTransport(max_connections=max_concurrency),
            # Environment proxies would be mounted beside the chosen transport and bypass it;
            # model servers are addressed directly.
            trust_env=False,
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        structured = self._structured_choice and bool(request.choices)
        response = await self._send(self._chat_url, _chat_body(request, structured))
        if structured and _rejects_structured_choice(response):
            # This server does not know the field: prompt plainly, now and from now on.
            self._structured_choice = False
            response = await self._send(self._chat_url, _chat_body(request, False))
        try:
            return _parse_chat(self._payload(response))
        except (KeyError, TypeError, ValueError) as exc:
            raise self._malformed(exc) from exc

    async def list_models(self) -> list[str]:
        """The model names the endpoint serves (a health check)."""
        response = await self._send(self._models_url, None)
        try:
            return [card["id"] for card in self._payload(response)["data"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._malformed(exc) from exc

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _send(self, url: httpx.URL, content: bytes | None) -> httpx.Response:
        """POST `content` (GET when None), retrying transient failures; return the response."""
        method = "GET" if content is None else "POST"
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._slots:
                    response = await self._http.request(method, url, content=content)
            except httpx.TransportError as exc:  # the one place transport errors become ours
                if attempt > self._retries or not _is_transient(exc):
                    raise self._failure(*_describe(exc, self._timeout_s), attempt) from exc
            else:
                status = response.status_code
                if status != 429 and status < 500:
                    return response
                if attempt > self._retries:
                    raise self._failure(f"HTTP {status}", _server_message(response), attempt)
            await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))

    def _payload(self, response: httpx.Response) -> Any:
        if response.is_success:
            return json.loads(response.content)
        status = response.status_code
        raise self._failure(f"HTTP {status}", _server_message(response), 1)

    def _failure(self, what: str, detail: str, attempts: int) -> BackendError:
        message = f"{self.endpoint}: {what}"
        if attempts > 1:
            message += f" after {attempts} attempts"
        if detail:
            message += f": {detail}"
        return BackendError(message, endpoint=self.endpoint, retryable=attempts > 1)

    def _malformed(self, exc: Exception) -> BackendError:
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        return BackendError(f"{self.endpoint}: malformed response: {detail}", endpoint=self.endpoint)


def _chat_body(request: ChatRequest, structured: bool) -> bytes:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": request.messages,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "n": request.n,
    }
    if request.seed is not None:
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


def _rejects_structured_choice(response: httpx.Response) -> bool:
    return response.status_code == 400 and _STRUCTURED_FIELD in response.text


def _parse_chat(data: dict[str, Any]) -> ChatResponse:
    usage = data.get("usage") or {}
    choices = data["choices"]
    if len(choices) > 1:
        choices = sorted(choices, key=lambda choice: choice.get("index", 0))
    return ChatResponse(
        completions=[_completion(choice) for choice in choices],
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
        model=data.get("model") or "",
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


def _describe(exc: httpx.TransportError, timeout_s: float) -> tuple[str, str]:
    """(what happened, detail) for an error message."""
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


def _server_message(response: httpx.Response) -> str:
    try:
        data = json.loads(response.content)
        error = data.get("error", data)
        message = error.get("message", error) if isinstance(error, dict) else error
    except ValueError:
        message = response.text
    return _one_line(message)


def _one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class AiohttpSessionTransport(httpx.AsyncBaseTransport):
    """An httpx transport over one `aiohttp.ClientSession`, with buffered bodies.

    Minimal work per request: no streaming, no cookie jar, no decompression (httpx
    decodes). Honours httpx's connect/read/pool timeouts and raises httpx's exceptions.
    """

    def __init__(self, *, max_connections: int = 100, keepalive_s: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        try:
            async with session.request(
                request.method,
                str(request.url),
                headers=request.headers,
                data=request.content or None,
                timeout=_aiohttp_timeout(**request.extensions.get("timeout", {})),
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _as_httpx_error(exc, request) from exc
        return httpx.Response(response.status, headers=response.raw_headers, content=body)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        # Opened on first use: an aiohttp session must be created inside the event loop.
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=self._keepalive_s
        )
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
        )
        return self._session


@lru_cache(maxsize=8)
def _aiohttp_timeout(
    connect: float | None = None,
    read: float | None = None,
    write: float | None = None,
    pool: float | None = None,
) -> aiohttp.ClientTimeout:
    # aiohttp has no write timeout; its `connect` covers waiting for a pooled connection.
    return aiohttp.ClientTimeout(connect=pool, sock_connect=connect, sock_read=read)


_HTTPX_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionError, httpx.ReadError),
)


def _as_httpx_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    for aiohttp_error, httpx_error in _HTTPX_ERRORS:
        if isinstance(exc, aiohttp_error):
            return httpx_error(message, request=request)
    return httpx.TransportError(message, request=request)
