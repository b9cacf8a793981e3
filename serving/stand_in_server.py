"""A stand-in for a model server: OpenAI-compatible, it answers from a script, not a model.

Only for conditions a real server cannot produce on demand: fault injection (errors,
dropped connections, hangs) and overhead measurement need a server whose behaviour is known
exactly; everything else is tested against real models (docs/ARCHITECTURE.md).
It speaks the real wire format: `GET /v1/models` and `POST /v1/chat/completions` with
`choices[i].message.content`, `finish_reason`, `usage` and, when asked, `logprobs.content`.

In process::

    server = StandInServer(reply="Answer: B", faults=[500, "drop"])
    async with server as base_url:      # http://127.0.0.1:<free port>/v1
        ...
    assert len(server.requests) == 3

    StandInServer(faults=[None], then=500)   # answers once, then fails every request

As a separate process (keeps the server's CPU out of a client's measurement); it prints
`READY <base_url>` on stdout once it accepts connections::

    python -m agentfab.serving.stand_in_server --port 0 --reply "Answer: B"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Literal

from aiohttp import web

__all__ = ["Fault", "Reply", "StandInServer", "main"]

Fault = int | Literal["drop", "hang"]
"""What one chat request meets instead of an answer: an HTTP status (500, 429, 400...),
`"drop"` (the connection is closed without a response) or `"hang"` (no response until
the server stops)."""

Reply = str | Callable[[Mapping[str, Any]], str]
"""Fixed reply text, or a function of the request body called once per sample."""

_TOKEN = re.compile(r"\s*\S+")


class StandInServer:
    """An OpenAI-compatible server on 127.0.0.1 whose answers and faults are scripted."""

    def __init__(
        self,
        reply: Reply = "Answer: B",
        *,
        latency_s: float = 0.0,
        faults: Sequence[Fault | None] = (),
        then: Fault | None = None,
        retry_after: str | None = None,
        reject_fields: Collection[str] = (),
        model: str = "scripted",
        host: str = "127.0.0.1",
        port: int = 0,
        record: bool = True,
        reuse_port: bool = False,
        gate: asyncio.Event | None = None,
    ) -> None:
        """`faults` are met by the first chat requests, one each, in order (`None`: that
        request is answered); `then` by every request after them (a server that stays
        broken). `retry_after`: the `Retry-After` header of every 429 (seconds, or a date).
        `reject_fields`: body fields answered with 400 "Unrecognized request argument",
        as OpenAI's own API does. `record=False` keeps no request log (long benchmarks).
        `reuse_port`: several servers (processes) may listen on one port, the kernel
        spreading connections over them. `gate`: chat requests wait until it is set (a
        server that holds every answer until told), then answer after `latency_s`."""
        self.reply = reply
        self.latency_s = latency_s
        self.reject_fields = tuple(reject_fields)
        self.model = model
        self.host = host
        self.port = port
        self.record = record
        self.reuse_port = reuse_port
        self.gate = gate
        self.requests: list[dict[str, Any]] = []
        """Bodies of the chat requests received, in arrival order."""
        self.in_flight = 0
        self.max_in_flight = 0
        """Most chat requests ever being handled at once."""
        self._faults: deque[Fault | None] = deque(faults)
        self._then = then
        self._retry_after = retry_after
        self._served = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        # A short shutdown timeout: "hang" handlers are cancelled instead of waited for.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_port=self.reuse_port or None)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _models(self, request: web.Request) -> web.Response:
        card = {"id": self.model, "object": "model", "created": 0, "owned_by": "agentfab"}
        return web.json_response({"object": "list", "data": [card]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        if self.record:
            self.requests.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
            fault = self._faults.popleft() if self._faults else self._then
            if fault is not None:
                return await self._fail(request, fault)
            rejected = [name for name in self.reject_fields if name in body]
            if rejected:
                return _error(400, f"Unrecognized request argument supplied: {rejected[0]}")
            return web.json_response(self._completion(body))
        finally:
            self.in_flight -= 1

    async def _fail(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault == "hang":
            await asyncio.Event().wait()  # until the server stops and cancels this handler
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response()  # never written: the connection is gone
        assert isinstance(fault, int)
        headers = None
        if fault == 429 and self._retry_after is not None:
            headers = {"Retry-After": self._retry_after}
        return _error(fault, f"scripted fault {fault}", headers)

    def _completion(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self._served += 1
        choices = [self._choice(body, index) for index in range(int(body.get("n") or 1))]
        prompt_tokens = sum(
            len(_TOKEN.findall(message["content"]))
            for message in body.get("messages", ())
            if isinstance(message.get("content"), str)
        )
        completion_tokens = sum(choice.pop("_tokens") for choice in choices)
        return {
            "id": f"chatcmpl-scripted-{self._served}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _choice(self, body: Mapping[str, Any], index: int) -> dict[str, Any]:
        text = self.reply(body) if callable(self.reply) else self.reply
        allowed = (body.get("structured_outputs") or {}).get("choice")
        if allowed and text not in allowed:
            text = allowed[0]  # honour the constraint as a real server would
        tokens = _TOKEN.findall(text)
        finish_reason = "stop"
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and len(tokens) > max_tokens:
            tokens, finish_reason = tokens[:max_tokens], "length"
        logprobs = None
        if body.get("logprobs"):
            logprobs = {"content": _logprobs(tokens, int(body.get("top_logprobs") or 0))}
        return {
            "index": index,
            "message": {"role": "assistant", "content": "".join(tokens)},
            "finish_reason": finish_reason,
            "logprobs": logprobs,
            "_tokens": len(tokens),
        }


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    error = {"message": message, "type": "scripted_error", "param": None, "code": status}
    return web.json_response({"error": error}, status=status, headers=headers)


def _logprobs(tokens: list[str], top: int) -> list[dict[str, Any]]:
    # Made-up but well-formed: the sampled token is always the most likely one.
    return [
        {
            "token": token,
            "logprob": -0.25,
            "bytes": list(token.encode()),
            "top_logprobs": [
                {"token": token if rank == 0 else f"<alt{rank}>", "logprob": -0.25 - 2.0 * rank}
                for rank in range(top)
            ],
        }
        for token in tokens
    ]


async def _serve_forever(server: StandInServer) -> None:
    print("READY", await server.start(), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--reply", default="Answer: B")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--model", default="scripted")
    parser.add_argument(
        "--reuse-port", action="store_true", help="share the port with other such servers"
    )
    args = parser.parse_args(argv)
    server = StandInServer(
        args.reply,
        latency_s=args.latency,
        model=args.model,
        host=args.host,
        port=args.port,
        record=False,
        reuse_port=args.reuse_port,
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops it
        asyncio.run(_serve_forever(server))


if __name__ == "__main__":
    main()
