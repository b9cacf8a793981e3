"""The call cache: each model call's response kept on disk, so a rerun, or a new aggregator
over the same samples, costs no calls (`run: {cache: DIR}`, `--cache DIR`).

A call is keyed by its endpoint, the model the client names and the full request (seed,
sampling settings, every message), and by how many identical requests came before it in
the same run: five unseeded agents asking the same thing keep five different samples, and
a rerun gets the same five back. The store is one SQLite file in write-ahead mode, so runs
in several processes (or on Ray workers sharing the folder) read and write it at once;
the first response stored under a key is the one kept. A cache that cannot be written
warns once and the run goes on: the response is the run's either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from agentfab.errors import ConfigError
from agentfab.llm import ChatRequest, ChatResponse, Completion, LLMClient, TokenLogprob

FILE_NAME = "calls.sqlite"
_KEY_VERSION = 1  # part of every key: a change of what a key covers starts afresh


class CacheStats(BaseModel):
    """Calls answered from the cache (`hits`) and sent to a model, then stored (`misses`)."""

    model_config = ConfigDict(frozen=True)

    hits: int = 0
    misses: int = 0

    def __add__(self, other: CacheStats) -> CacheStats:
        return CacheStats(hits=self.hits + other.hits, misses=self.misses + other.misses)


class CallCache:
    """The store: `DIR/calls.sqlite`, one row per call. Open it with `open_cache`."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / FILE_NAME
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Autocommit: every put is its own short transaction; `timeout` waits out
            # another process's write rather than failing.
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, response TEXT NOT NULL)"
            )
        except (OSError, sqlite3.Error) as error:
            raise ConfigError(f"cache {folder}: cannot open {self.path.name} ({error})") from None
        self._lock = threading.Lock()  # one connection, used from any thread
        self._warned = False

    def get(self, key: str) -> ChatResponse | None:
        try:
            with self._lock:
                found = self._db.execute("SELECT response FROM calls WHERE key = ?", (key,))
                row = found.fetchone()
        except sqlite3.Error as error:
            self._warn(error)
            return None
        if row is None:
            return None
        try:
            return _response(json.loads(row[0]))
        except (ValueError, KeyError, TypeError):
            return None  # a damaged row is a miss; `put` replaces it

    def put(self, key: str, response: ChatResponse) -> None:
        text = json.dumps(asdict(response), separators=(",", ":"))
        try:
            with self._lock:
                # Keep the first response stored under a key, unless it no longer reads.
                self._db.execute(
                    "INSERT INTO calls (key, response) VALUES (?, ?) ON CONFLICT(key) "
                    "DO UPDATE SET response = excluded.response WHERE NOT json_valid(response)",
                    (key, text),
                )
        except sqlite3.Error as error:
            self._warn(error)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM calls").fetchone()
        return int(count)

    def _warn(self, error: sqlite3.Error) -> None:
        if not self._warned:
            self._warned = True
            warnings.warn(f"call cache {self.path}: {error}; calls are not cached", stacklevel=3)


@cache
def _open(folder: Path) -> CallCache:
    return CallCache(folder)


def open_cache(folder: Path | str) -> CallCache:
    """The cache in `folder`, one connection per folder per process."""
    return _open(Path(folder).expanduser().resolve())


class CachedClient:
    """A client whose calls go through the cache; made for one run, so the count of
    identical requests (and the hits and misses) is that run's."""

    def __init__(self, client: LLMClient, store: CallCache) -> None:
        self.client = client
        self.store = store
        self.endpoint = str(getattr(client, "endpoint", type(client).__qualname__))
        self.model = getattr(client, "model", None)  # a served name replacing the request's
        self._seen: Counter[str] = Counter()
        self.hits = 0
        self.misses = 0

    async def chat(self, request: ChatRequest) -> ChatResponse:
        asked = self._request_key(request)
        key = f"{asked}:{self._seen[asked]}"
        self._seen[asked] += 1
        if (stored := self.store.get(key)) is not None:
            self.hits += 1
            return stored
        response = await self.client.chat(request)
        self.misses += 1
        self.store.put(key, response)
        return response

    async def aclose(self) -> None:
        """Nothing: the client it wraps belongs to the caller."""

    def _request_key(self, request: ChatRequest) -> str:
        asked = {
            "version": _KEY_VERSION,
            "endpoint": self.endpoint,
            "served": self.model if isinstance(self.model, str) else None,
            "request": asdict(request),
        }
        text = json.dumps(asked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


def cached_clients(clients: Mapping[str, LLMClient], folder: Path | str) -> dict[str, CachedClient]:
    """One run's clients through the cache; models that share a client share its wrapper."""
    store = open_cache(folder)
    wrapped: dict[int, CachedClient] = {}
    for client in clients.values():
        wrapped.setdefault(id(client), CachedClient(client, store))
    return {name: wrapped[id(client)] for name, client in clients.items()}


def stats_of(clients: Mapping[str, LLMClient]) -> CacheStats | None:
    """The hits and misses of one run's clients; None when they have no cache."""
    unique = [c for c in {id(c): c for c in clients.values()}.values()]
    cached = [c for c in unique if isinstance(c, CachedClient)]
    if not cached:
        return None
    return CacheStats(hits=sum(c.hits for c in cached), misses=sum(c.misses for c in cached))


def tally(stats: CacheStats | None) -> None:
    """Add a finished run's figures to the enclosing `counting_cache` block, if any."""
    counter = _tally.get()
    if counter is not None and stats is not None:
        counter.add(stats)


@dataclass
class CacheTally:
    """The cache's hits and misses over every run inside one `counting_cache` block."""

    hits: int = 0
    misses: int = 0

    def add(self, stats: CacheStats) -> None:
        self.hits += stats.hits
        self.misses += stats.misses

    def stats(self) -> CacheStats:
        return CacheStats(hits=self.hits, misses=self.misses)


_tally: ContextVar[CacheTally | None] = ContextVar("agentfab_cache_tally", default=None)


@contextlib.contextmanager
def counting_cache() -> Iterator[CacheTally]:
    """Sum the cache figures of the runs this task makes inside the block (an eval item:
    the team and its baselines)."""
    tally = CacheTally()
    token = _tally.set(tally)
    try:
        yield tally
    finally:
        _tally.reset(token)


def _response(data: dict[str, Any]) -> ChatResponse:
    return ChatResponse(
        completions=[_completion(c) for c in data["completions"]],
        prompt_tokens=int(data["prompt_tokens"]),
        completion_tokens=int(data["completion_tokens"]),
        model=str(data["model"]),
        server="cache",
    )


def _completion(data: dict[str, Any]) -> Completion:
    logprobs = data.get("logprobs")
    return Completion(
        text=str(data["text"]),
        finish_reason=str(data["finish_reason"]),
        logprobs=None
        if logprobs is None
        else [TokenLogprob(t["token"], float(t["logprob"]), dict(t["top"])) for t in logprobs],
    )
