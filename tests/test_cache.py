"""The call cache: what a key covers, identical requests kept apart, a damaged or unwritable
store, and many processes writing one store at once. The runs on a real model are in
tests/integration/test_cache_embedded.py."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agentfab import ChatRequest, ChatResponse, Completion, Orchestrator, RunSettings, Task
from agentfab.agent import Agent
from agentfab.aggregators.majority import Majority
from agentfab.cache import FILE_NAME, CachedClient, CacheStats, open_cache
from agentfab.errors import ConfigError
from agentfab.topologies import star
from tests.scripted import ScriptedClient


def numbered() -> ScriptedClient:
    """Each call's reply is its own number: which call answered is always visible."""
    client: ScriptedClient

    def script(request: ChatRequest) -> tuple[str, float]:
        return f"reply {len(client.requests)}", 0.0

    client = ScriptedClient(script)
    return client


def request(**changes: object) -> ChatRequest:
    fields: dict[str, object] = {"messages": [{"role": "user", "content": "2+2?"}], "model": "m"}
    return ChatRequest(**(fields | changes))  # type: ignore[arg-type]


async def test_a_key_covers_the_whole_request(tmp_path: Path) -> None:
    store = open_cache(tmp_path)
    first = CachedClient(numbered(), store)
    base = await first.chat(request())
    variants = [
        request(seed=1),
        request(temperature=0.1),
        request(max_tokens=5),
        request(model="other"),
        request(messages=[{"role": "user", "content": "2+3?"}]),
    ]
    answers = [await CachedClient(numbered(), store).chat(r) for r in variants]
    assert all(a.completions[0].text == "reply 1" for a in answers)  # each one a miss
    again = CachedClient(numbered(), store)
    assert await again.chat(request()) == dataclasses.replace(base, server="cache")
    assert (again.hits, again.misses) == (1, 0)
    assert len(store) == 1 + len(variants)


async def test_identical_requests_in_one_run_keep_their_own_replies(tmp_path: Path) -> None:
    """Five unseeded agents asking the same thing are five samples, not one."""
    store = open_cache(tmp_path)
    first = CachedClient(numbered(), store)
    made = [(await first.chat(request())).completions[0].text for _ in range(5)]
    assert made == [f"reply {i}" for i in range(1, 6)]
    rerun = CachedClient(numbered(), store)
    assert [(await rerun.chat(request())).completions[0].text for _ in range(5)] == made
    assert (rerun.hits, rerun.misses) == (5, 0)
    # A sixth identical request has no stored reply yet: it is sent.
    assert (await rerun.chat(request())).completions[0].text == "reply 1"


async def test_a_run_reports_hits_and_misses_and_a_rerun_sends_nothing(tmp_path: Path) -> None:
    workers = [Agent(name=f"w{i}", role="Answer.", model="m") for i in range(3)]
    team = star(workers, Majority())
    settings = RunSettings(cache=tmp_path)
    client = numbered()
    first = await Orchestrator({"m": client}, settings).run(team, Task(prompt="2+2?"))
    assert first.cache == CacheStats(hits=0, misses=3)
    assert len(client.requests) == 3
    refusing = ScriptedClient(lambda r: (AssertionError("a call was sent"), 0.0))
    again = await Orchestrator({"m": refusing}, settings).run(team, Task(prompt="2+2?"))
    assert again.cache == CacheStats(hits=3, misses=0)
    assert refusing.requests == []
    assert [m.text for m in again.messages] == [m.text for m in first.messages]
    assert again.usage == first.usage  # what the answers cost when they were made
    uncached = await Orchestrator({"m": numbered()}).run(team, Task(prompt="2+2?"))
    assert uncached.cache is None


async def test_a_damaged_row_is_a_miss_and_is_replaced(tmp_path: Path) -> None:
    store = open_cache(tmp_path)
    await CachedClient(numbered(), store).chat(request())
    with sqlite3.connect(tmp_path / FILE_NAME) as db:
        db.execute("UPDATE calls SET response = '{not json'")
    again = CachedClient(numbered(), store)
    assert (await again.chat(request())).completions[0].text == "reply 1"
    assert (again.hits, again.misses) == (0, 1)
    third = CachedClient(numbered(), store)
    await third.chat(request())
    assert (third.hits, third.misses) == (1, 0)


def test_a_folder_it_cannot_use_is_one_config_error(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=rf"cache {a_file}: cannot open {FILE_NAME}"):
        open_cache(a_file)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / FILE_NAME).write_bytes(b"not a database, just bytes" * 100)
    with pytest.raises(ConfigError, match="file is not a database"):
        open_cache(garbage)


def test_the_cli_names_the_cache_folder_in_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    pipeline = Path(__file__).resolve().parents[1] / "examples/star.yaml"
    for command in (["run", str(pipeline)], ["eval", str(pipeline), "--suite", "gpqa-project"]):
        done = subprocess.run(
            [sys.executable, "-m", "agentfab.cli", *command, "--cache", str(a_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"agentfab: error: cache {a_file}: cannot open {FILE_NAME} ("), line


async def test_a_store_it_cannot_write_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    store = open_cache(tmp_path / "c")
    with sqlite3.connect(tmp_path / "c" / FILE_NAME) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON calls BEGIN SELECT RAISE(ABORT, 'full'); END"
        )
    client = CachedClient(numbered(), store)
    with pytest.warns(UserWarning, match="calls are not cached") as warned:
        replies = await asyncio.gather(*(client.chat(request(seed=i)) for i in range(3)))
    assert len(warned) == 1
    assert [r.completions[0].text for r in replies] == ["reply 1", "reply 2", "reply 3"]
    assert len(store) == 0


def _write_many(folder: str, worker: int, count: int) -> None:
    store = open_cache(folder)
    for i in range(count):
        store.put(f"w{worker}-{i}", ChatResponse([Completion(f"{worker}:{i}")], 1, 1))
        store.put(f"shared-{i}", ChatResponse([Completion(f"shared {i}")], 1, 1))


def test_processes_writing_one_store_at_once_lose_nothing(tmp_path: Path) -> None:
    workers, count = 4, 150
    context = multiprocessing.get_context("spawn")  # no connection inherited across fork
    processes = [
        context.Process(target=_write_many, args=(str(tmp_path), w, count)) for w in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    store = open_cache(tmp_path)
    assert len(store) == workers * count + count
    for w in range(workers):
        for i in range(count):
            stored = store.get(f"w{w}-{i}")
            assert stored is not None and stored.completions[0].text == f"{w}:{i}"
