"""Keep-alive HTTP/1.1 connections to one server: `OpenAIClient`'s default transport.

An OpenAI-compatible API asks little of HTTP: a JSON body up, a whole JSON body down, over
connections kept open. That much, on asyncio's own transports with llhttp's parser
(`httptools`, the parser of uvicorn and Node.js), costs a third of the CPU of an aiohttp
session per request (benchmarks/overhead.py); aiohttp's request and response objects,
header multidicts, cookie, redirect and tracing hooks are work an API call does not need.

Failures are raised as httpx's exceptions, the client's one vocabulary for every transport.
Callers bound concurrency: the pool opens a connection whenever none is idle.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools
import httpx

from agentfab import __version__
from agentfab.errors import ConfigError

__all__ = ["HttpPool", "WireResponse"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class WireResponse:
    """A whole response: status, headers (names in lower case) and body."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


class HttpPool:
    """Requests to the origin of `base_url` (`http://host:port`, or https), each waited
    for at most `timeout_s` to connect and again to be answered."""

    def __init__(
        self, base_url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 120.0
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(f"{base_url}: not an http:// or https:// URL")
        self._host = parts.hostname
        self._port = parts.port or _DEFAULT_PORTS[parts.scheme]
        self._tls = parts.scheme == "https"
        self._timeout_s = timeout_s
        fixed = {
            "host": parts.netloc.rpartition("@")[2],
            "user-agent": f"agentfab/{__version__}",
            "accept": "application/json",
            "content-type": "application/json",
            **(headers or {}),
        }
        self._fixed_headers = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._heads: dict[tuple[str, str], bytes] = {}
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._ssl: ssl.SSLContext | None = None

    async def request(self, method: str, target: str, body: bytes | None = None) -> WireResponse:
        """Send `method target` (a path, e.g. `/v1/models`) with `body`; the whole answer."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._adopt(loop)
        connection = self._take_idle() or await self._connect(loop)
        waiter: asyncio.Future[WireResponse] = loop.create_future()
        connection.waiter = waiter
        timer = loop.call_later(self._timeout_s, _expire, waiter, self._timeout_s)
        try:
            connection.send(self._head(method, target), body)
            response = await waiter
        except BaseException:
            connection.close()  # cut off mid-exchange: its state is unknown
            raise
        finally:
            timer.cancel()
        if connection.reusable and self._loop is loop:
            self._idle.append(connection)
        else:
            connection.close()
        return response

    async def aclose(self) -> None:
        closer, self._closer, self._loop = self._closer, None, None
        self._close_idle()
        if closer is not None:
            await closer.aclose()

    def _head(self, method: str, target: str) -> bytes:
        key = (method, target)
        head = self._heads.get(key)
        if head is None:
            head = f"{method} {target} HTTP/1.1\r\n{self._fixed_headers}".encode("latin-1")
            self._heads[key] = head
        return head

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:  # the server may have closed it while it waited
                return connection
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        tls = self._tls_context() if self._tls else None
        try:
            async with asyncio.timeout(self._timeout_s):
                _, connection = await loop.create_connection(
                    _Connection, self._host, self._port, ssl=tls
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection within {self._timeout_s:g}s") from exc
        except OSError as exc:  # refused, unreachable, unknown host, TLS handshake
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from exc
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            import certifi  # httpx's own dependency: the CA bundle httpx would use

            self._ssl = ssl.create_default_context(cafile=certifi.where())
        return self._ssl

    async def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve `loop`. Connections belong to the loop that opened them, so a client used by
        one `asyncio.run` after another (`agentfab.run` twice) opens new ones; the old loop
        closed its own when it shut down."""
        self._idle = []
        self._loop = loop
        self._closer = _close_at_shutdown(self)
        await anext(self._closer)

    def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


async def _close_at_shutdown(pool: HttpPool) -> AsyncGenerator[None, None]:
    """Closes `pool`'s idle connections when finalised: by `aclose`, or by the event loop's
    shutdown (`asyncio.run` finalises every async generator still open), so a client nobody
    closed leaves no unclosed socket behind."""
    try:
        yield
    finally:
        pool._close_idle()


def _expire(waiter: asyncio.Future[WireResponse], timeout_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(httpx.ReadTimeout(f"no response within {timeout_s:g}s"))


class _Connection(asyncio.Protocol):
    """One connection: writes a request, parses the response into `waiter`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[WireResponse] | None = None
        self.closed = False
        self.reusable = False
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._length_known = False
        self._headers_done = False

    def send(self, head: bytes, body: bytes | None) -> None:
        assert self.transport is not None
        self.reusable = False
        if body is None:
            self.transport.write(head + b"\r\n")
        else:
            self.transport.write(b"%scontent-length: %d\r\n\r\n%s" % (head, len(body), body))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._headers_done and not self._length_known:
            self.on_message_complete()  # a body that ends where the connection does
        self._fail(httpx.RemoteProtocolError("server disconnected without a whole response"))

    # httptools' callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in ("content-length", "transfer-encoding"):
            self._length_known = True
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        response = WireResponse(self._parser.get_status_code(), self._headers, b"".join(self._body))
        self.reusable = self._length_known and self._parser.should_keep_alive()
        self._headers, self._body = {}, []
        self._length_known = self._headers_done = False
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            self.close()  # nobody asked (or nobody waits any more): the connection is spoiled
        else:
            waiter.set_result(response)

    def _fail(self, error: httpx.TransportError) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
