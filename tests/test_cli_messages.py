"""What `agentfab run` tells the user, through a subprocess: a tie is flagged with the
answer, and a run whose agents all failed names the first cause in its one error line.

The server is the scripted one (a real model cannot tie or fail on demand), run in a
thread of the test process so the CLI under test reaches it over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from agentfab.serving.stand_in_server import Fault, StandInServer
from tests.test_cli import agentfab

CITIES = {"One.": "rome", "Two.": "oslo", "Three.": "bern", "Four.": "lima", "Five.": "kiev"}
PIPELINE = """
name: five
models:
  default: {{kind: openai, base_url: "{url}", served_name: scripted, retries: 1}}
agents:
{agents}
topology: {{kind: star, aggregator: {{kind: majority}}}}
run: {{answer_format: short, seed: 0}}
task: "Which city?"
"""


def by_role(body: Mapping[str, Any]) -> str:
    prompt = body["messages"][-1]["content"]
    return next(f"Answer: {c}" for role, c in CITIES.items() if prompt.endswith(role))


def serving(server: StandInServer) -> Iterator[str]:
    """`server` in a thread with its own event loop, for as long as the test runs."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
    try:
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def pipeline(tmp_path: Path, url: str) -> str:
    agents = "\n".join(f'  - {{name: w{i}, role: "{r}"}}' for i, r in enumerate(CITIES, 1))
    path = tmp_path / "five.yaml"
    path.write_text(PIPELINE.format(url=url, agents=agents))
    return str(path)


@pytest.fixture
def ties() -> Iterator[str]:
    yield from serving(StandInServer(by_role))


@pytest.fixture
def broken() -> Iterator[str]:
    fault: Fault = 500
    yield from serving(StandInServer(then=fault))


def test_a_tie_is_flagged_where_the_answer_is_printed(ties: str, tmp_path: Path) -> None:
    done = agentfab("run", pipeline(tmp_path, ties))
    assert done.returncode == 0, done.stderr
    assert "answer: rome (tie of 5 single votes, broken by agent order)\n" in done.stdout
    json_done = agentfab("run", pipeline(tmp_path, ties), "--json")
    assert '"note": "tie of 5 single votes, broken by agent order"' in json_done.stdout


def test_a_run_whose_agents_all_failed_names_the_first_cause(broken: str, tmp_path: Path) -> None:
    done = agentfab("run", pipeline(tmp_path, broken))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "agentfab: error: the output node 'hub' produced no answer: every input failed; "
        f"first cause: w1@1: {broken}: HTTP 500 after 2 attempts: scripted fault 500"
    )
