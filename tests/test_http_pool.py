"""HttpPool against raw sockets: every way a server may frame, end or spoil a response.

A real server picks one framing and keeps it; these raw servers answer with exactly the
bytes each case needs (chunked, until close, `Connection: close`, garbage, silence).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from agentfab.errors import ConfigError
from agentfab.http_pool import HttpPool


class Last(bytes):
    """Bytes the server writes before it hangs up."""


Answer = Callable[[bytes], bytes | None]
"""The raw bytes to answer a request with (its head and body given); None: hang up."""


def framed(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return b"HTTP/1.1 200 OK\r\n%scontent-length: %d\r\n\r\n%s" % (head.encode(), len(body), body)


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """(base URL, requests received, connections opened so far) of a server that answers
    each request on a connection with `answer(request)`; closes when told None."""
    requests: list[bytes] = []
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = head + await reader.readexactly(length)
                requests.append(request)
                reply = answer(request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
                if isinstance(reply, Last):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/v1", requests, connections


async def test_requests_carry_method_path_headers_and_body_and_reuse_the_connection() -> None:
    async with raw_server(lambda request: framed(b'{"ok": 1}')) as (url, requests, opened):
        pool = HttpPool(url, headers={"authorization": "Bearer k"})
        first = await pool.request("POST", "/v1/chat/completions", b'{"q": 1}')
        second = await pool.request("GET", "/v1/models")
        await pool.aclose()
    assert (first.status_code, first.content, second.content) == (200, b'{"ok": 1}', b'{"ok": 1}')
    head, _, body = requests[0].partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    assert {"authorization: Bearer k", "content-length: 8", f"host: {url[7:-3]}"} <= set(lines)
    assert body == b'{"q": 1}'
    assert requests[1].startswith(b"GET /v1/models HTTP/1.1\r\n")
    assert len(opened) == 1  # kept alive


async def test_a_chunked_response_is_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    async with raw_server(lambda request: chunked) as (url, _, opened):
        pool = HttpPool(url)
        assert (await pool.request("GET", "/a")).content == b"abcde"
        assert (await pool.request("GET", "/a")).content == b"abcde"
        await pool.aclose()
    assert len(opened) == 1


async def test_a_body_that_ends_with_the_connection_and_connection_close() -> None:
    until_close = Last(b"HTTP/1.1 200 OK\r\n\r\nall of it")
    replies = iter([until_close, framed(b"x", "connection: close")])
    async with raw_server(lambda request: next(replies)) as (url, _, opened):
        pool = HttpPool(url)
        assert (await pool.request("GET", "/a")).content == b"all of it"
        assert (await pool.request("GET", "/a")).content == b"x"
        await pool.aclose()
    assert len(opened) == 2  # neither connection was reused


async def test_headers_are_lower_case_and_repeated_ones_joined() -> None:
    reply = framed(b"", "Retry-After: 3", "X-A: 1", "x-a: 2")
    async with raw_server(lambda request: reply) as (url, _, _opened):
        pool = HttpPool(url)
        response = await pool.request("GET", "/a")
        await pool.aclose()
    assert response.headers["retry-after"] == "3" and response.headers["x-a"] == "1, 2"


async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    replies = iter([framed(b"1"), None])

    def answer(request: bytes) -> bytes | None:
        return next(replies, framed(b"2"))

    async with raw_server(answer) as (url, _, opened):
        pool = HttpPool(url)
        assert (await pool.request("GET", "/a")).content == b"1"
        with pytest.raises(httpx.RemoteProtocolError):
            await pool.request("GET", "/a")  # answered by closing
        assert (await pool.request("GET", "/a")).content == b"2"
        await pool.aclose()
    assert len(opened) == 2


async def test_garbage_and_a_dropped_response_are_protocol_errors() -> None:
    short = Last(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab")
    replies = iter([b"NOT HTTP AT ALL\r\n\r\n", short])
    async with raw_server(lambda request: next(replies, None)) as (url, _, _opened):
        pool = HttpPool(url)
        with pytest.raises(httpx.RemoteProtocolError, match="malformed response"):
            await pool.request("GET", "/a")
        with pytest.raises(httpx.RemoteProtocolError, match="disconnected"):
            await pool.request("GET", "/a")  # a short body, then the server hangs up
        await pool.aclose()


async def test_silence_is_a_read_timeout_and_a_cancel_spoils_the_connection() -> None:
    async with raw_server(lambda request: b"") as (url, _, opened):
        pool = HttpPool(url, timeout_s=0.1)
        with pytest.raises(httpx.ReadTimeout, match=r"no response within 0\.1s"):
            await pool.request("GET", "/a")
        task = asyncio.create_task(pool.request("GET", "/a"))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await pool.aclose()
    assert len(opened) == 2  # neither connection went back to be reused


async def test_a_closed_port_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = HttpPool(f"http://127.0.0.1:{port}")
    with pytest.raises(httpx.ConnectError) as caught:
        await pool.request("GET", "/a")
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


@pytest.mark.parametrize("url", ["ftp://host/v1", "127.0.0.1:8000/v1", "http:///v1"])
def test_a_url_that_is_not_http_is_refused_with_its_name(url: str) -> None:
    with pytest.raises(ConfigError, match="not an http:// or https:// URL"):
        HttpPool(url)
