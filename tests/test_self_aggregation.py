"""Generative self-aggregation and mixture-of-agents teams, on constructed inputs.

The synthesiser is scripted: these tests need to see exactly which prompt it
got and to make it answer something no candidate said.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentfab import (
    Agent,
    Aggregate,
    BackendError,
    ChatRequest,
    ConfigError,
    Message,
    Orchestrator,
    Task,
)
from agentfab.aggregators import AggregationContext, Majority
from agentfab.aggregators.self_aggregation import INSTRUCTION, SelfAggregate
from agentfab.topologies.mixture import mixture_of_agents
from tests.scripted import Reply, ScriptedClient

TASK = Task(prompt="What is the capital of France?")


def msg(
    sender: str,
    text: str,
    answer: str | None = None,
    *,
    model: str | None = "m",
    error: str | None = None,
) -> Message:
    return Message(
        id=f"{sender}@1", sender=sender, text=text, answer=answer, model=model, error=error
    )


def replying(text: Reply) -> ScriptedClient:
    return ScriptedClient(lambda _request: (text, 0.0))


def context(clients: dict[str, ScriptedClient], answer_format: str = "short") -> AggregationContext:
    return AggregationContext(node="hub", clients=clients, answer_format=answer_format)


def prompt_of(client: ScriptedClient) -> str:
    (request,) = client.requests
    return request.messages[-1]["content"]


CANDIDATES = [
    msg("c", "I think Marseille.\nAnswer: Marseille", "marseille"),
    msg("a", "Answer: Lyon", "lyon"),
    msg("b", "Lyon, surely.\nAnswer: Lyon", "lyon"),
]


async def test_candidates_are_numbered_in_canonical_order_then_the_instruction() -> None:
    client = replying("Answer: Paris")
    await SelfAggregate().aggregate(TASK, CANDIDATES, context({"m": client}))
    assert prompt_of(client) == (
        "What is the capital of France?\n\n"
        "Candidate 1:\nAnswer: Lyon\n\n"
        "Candidate 2:\nLyon, surely.\nAnswer: Lyon\n\n"
        "Candidate 3:\nI think Marseille.\nAnswer: Marseille\n\n"
        f"{INSTRUCTION}\n\n"
        "Reply with a short answer of a few words, as: Answer: <answer>"
    )


async def test_the_new_answer_can_be_one_no_candidate_gave() -> None:
    ctx = context({"m": replying("Both are wrong.\nAnswer: Paris")})
    out = await SelfAggregate().aggregate(TASK, CANDIDATES, ctx)
    voted = await Majority().aggregate(TASK, CANDIDATES, ctx)
    assert (out.answer, voted.answer) == ("paris", "lyon")
    assert out.text == "Both are wrong.\nAnswer: Paris"
    assert out.details["agrees_with_candidate"] is False
    assert out.details["votes"] == {"lyon": 2, "marseille": 1}
    assert out.details["agreement"] == pytest.approx(2 / 3)
    assert out.details["margin"] == pytest.approx(1 / 3)
    assert out.details["entropy"] == pytest.approx(0.9183, abs=1e-4)
    assert out.details["candidates"] == 3
    assert out.details["truncated"] == []
    assert out.inputs == ["a@1", "b@1", "c@1"]
    assert (out.id, out.kind, out.model) == ("hub@1", "aggregate", "m")


async def test_agreement_with_a_candidate_is_reported() -> None:
    out = await SelfAggregate().aggregate(
        TASK, CANDIDATES, context({"m": replying("Answer: lyon")})
    )
    assert out.answer == "lyon" and out.details["agrees_with_candidate"] is True


async def test_usage_is_the_synthesisers_one_call() -> None:
    out = await SelfAggregate().aggregate(TASK, CANDIDATES, context({"m": replying("Answer: x")}))
    assert (out.usage.prompt_tokens, out.usage.completion_tokens, out.usage.calls) == (10, 5, 1)


async def test_a_named_model_synthesises_with_the_requested_settings() -> None:
    writers, judge = replying("unused"), replying("Answer: Paris")
    aggregator = SelfAggregate(model="judge", max_tokens=32, temperature=0.3)
    out = await aggregator.aggregate(TASK, CANDIDATES, context({"m": writers, "judge": judge}))
    assert writers.requests == []
    (request,) = judge.requests
    assert (request.model, request.max_tokens, request.temperature) == ("judge", 32, 0.3)
    assert out.details["model"] == out.model == "judge"


@pytest.mark.parametrize(
    ("models", "expected"),
    [(["b", "a", "a"], "a"), (["b", "b", "a"], "b"), (["b", "a", None], "a")],
)
async def test_without_a_name_the_most_common_writer_synthesises(
    models: list[str | None], expected: str
) -> None:
    clients = {"a": replying("Answer: x"), "b": replying("Answer: x")}
    candidates = [msg(f"w{i}", "Answer: y", "y", model=m) for i, m in enumerate(models)]
    out = await SelfAggregate().aggregate(TASK, candidates, context(clients))
    assert out.model == expected and len(clients[expected].requests) == 1


async def test_inputs_naming_no_model_need_a_named_synthesiser() -> None:
    candidates = [msg("w", "Answer: y", model=None)]
    with pytest.raises(ConfigError, match="give SelfAggregate a model"):
        await SelfAggregate().aggregate(TASK, candidates, context({}))


async def test_long_candidates_are_cut_to_share_the_budget_keeping_both_ends() -> None:
    client = replying("Answer: Paris")
    long = "Let me think. " + "blah " * 200 + "\nAnswer: Lyon"
    candidates = [msg("b-long", long, "lyon"), msg("a-short", "Answer: Lyon", "lyon")]
    out = await SelfAggregate(context_chars=100).aggregate(TASK, candidates, context({"m": client}))
    assert out.details["truncated"] == ["b-long@1"]
    shown = prompt_of(client).split("Candidate 2:\n")[1].split(f"\n\n{INSTRUCTION}")[0]
    # The short one keeps its 12 characters; the long one gets the other 88.
    assert "Candidate 1:\nAnswer: Lyon\n\n" in prompt_of(client)
    assert len(shown) <= 88 and "\n[...]\n" in shown
    assert shown.startswith("Let me think.") and shown.endswith("Answer: Lyon")


async def test_many_candidates_never_overflow_the_budget() -> None:
    client = replying("Answer: Paris")
    candidates = [msg(f"w{i:02}", "x" * 1000, "x") for i in range(40)]
    out = await SelfAggregate(context_chars=2000).aggregate(
        TASK, candidates, context({"m": client})
    )
    assert len(out.details["truncated"]) == 40
    prompt = prompt_of(client)
    assert prompt.count("x") <= 2000 and prompt.count("Candidate ") == 40


def test_a_budget_too_small_to_show_anything_is_refused() -> None:
    with pytest.raises(ConfigError, match="context_chars must be at least 100"):
        SelfAggregate(context_chars=10)


async def test_failed_and_empty_inputs_are_not_candidates() -> None:
    client = replying("Answer: Paris")
    inputs = [
        *CANDIDATES[:2],
        msg("broken", "", error="timeout"),
        msg("blank", "  \n"),
    ]
    out = await SelfAggregate().aggregate(TASK, inputs, context({"m": client}))
    assert out.details["candidates"] == 2
    assert prompt_of(client).count("Candidate ") == 2
    assert out.inputs == ["a@1", "blank@1", "broken@1", "c@1"]  # everything it was given


async def test_no_candidates_no_call() -> None:
    client = replying("Answer: Paris")
    out = await SelfAggregate().aggregate(
        TASK, [msg("x", "", error="down")], context({"m": client})
    )
    assert client.requests == [] and out.answer is None and out.usage.calls == 0


async def test_a_failed_synthesis_is_this_nodes_error_message() -> None:
    ctx = context({"m": replying(BackendError("server down", endpoint="http://m"))})
    out = await SelfAggregate().aggregate(TASK, CANDIDATES, ctx)
    assert not out.ok and out.error == "server down"
    assert out.answer is None and out.details["candidates"] == 3


async def test_multiple_choice_shows_the_options_and_extracts_a_letter() -> None:
    task = Task(prompt="Pick the capital of France.", choices=["Lyon", "Paris"])
    candidates = [msg("a", "Answer: A", "A"), msg("b", "Answer: A", "A")]
    client = replying("Answer: B")
    out = await SelfAggregate().aggregate(
        task, candidates, context({"m": client}, answer_format="letter")
    )
    prompt = prompt_of(client)
    assert prompt.startswith("Pick the capital of France.\n\nA) Lyon\nB) Paris\n\nCandidate 1:")
    assert prompt.endswith("Reply with the letter of the correct option, as: Answer: <letter>")
    assert out.answer == "B"


async def test_free_text_keeps_the_whole_new_text() -> None:
    code = "def add(a, b):\n    return a + b\n"
    candidates = [msg("a", "def add(a, b): return a - b"), msg("b", "def add(x, y): ...")]
    client = replying(code)
    out = await SelfAggregate().aggregate(
        TASK, candidates, context({"m": client}, answer_format="text")
    )
    assert out.text == code and prompt_of(client).endswith(INSTRUCTION)
    assert out.details["votes"] == {} and out.details["agrees_with_candidate"] is False


async def test_a_seed_gives_each_node_its_own_reproducible_seed() -> None:
    seeds = []
    for node, seed in [("n1", 7), ("n1", 7), ("n2", 7), ("n1", None)]:
        client = replying("Answer: x")
        ctx = AggregationContext(node=node, clients={"m": client}, seed=seed)
        await SelfAggregate().aggregate(TASK, CANDIDATES, ctx)
        seeds.append(client.requests[0].seed)
    assert seeds[0] == seeds[1] is not None
    assert seeds[2] not in (None, seeds[0])
    assert seeds[3] is None


@given(st.permutations(range(6)), st.integers(0, 3))
def test_the_request_does_not_depend_on_arrival_order(order: list[int], seed: int) -> None:
    texts = ["Answer: Lyon", "Paris\nAnswer: Paris", "x" * 300, "Answer: Nice", "", "y" * 50]
    inputs = [
        msg(f"w{i}", t, None, model="m" if i % 2 else "n", error="boom" if i == 5 else None)
        for i, t in enumerate(texts)
    ]

    def request(messages: list[Message]) -> ChatRequest:
        client = replying("Answer: x")
        ctx = AggregationContext(node="hub", clients={"m": client, "n": client}, seed=seed)
        asyncio.run(SelfAggregate(context_chars=200).aggregate(TASK, messages, ctx))
        return client.requests[0]

    assert request([inputs[i] for i in order]) == request(inputs)


# Mixture-of-agents: the layered graph.


def proposers(n: int) -> list[Agent]:
    return [Agent(name=f"p{i}", max_tokens=16) for i in range(n)]


def test_mixture_layers_read_every_node_of_the_layer_before() -> None:
    team = mixture_of_agents(proposers(3), layers=[2, 2])
    graph = team.graph
    assert graph.number_of_nodes() == 3 + 2 + 2 + 1
    assert sorted(graph.edges) == sorted(
        [(p, a) for p in ("p0", "p1", "p2") for a in ("L1-0", "L1-1")]
        + [(a, b) for a in ("L1-0", "L1-1") for b in ("L2-0", "L2-1")]
        + [("L2-0", "final"), ("L2-1", "final")]
    )
    assert team.output == "final"
    assert [n for n in graph if graph.out_degree(n) == 0] == ["final"]
    aggregates = [team.node(n) for n in graph if n.startswith("L") or n == "final"]
    assert all(
        isinstance(a, Aggregate) and isinstance(a.aggregator, SelfAggregate) for a in aggregates
    )


def test_an_int_counts_layers_as_wide_as_the_proposers() -> None:
    team = mixture_of_agents(proposers(2), Majority(), layers=3)
    layered = sorted(n for n in team.graph if n.startswith("L"))
    assert layered == [f"L{layer}-{i}" for layer in (1, 2, 3) for i in (0, 1)]
    assert team.graph.in_degree("final") == 2
    direct = mixture_of_agents(proposers(2), layers=0)
    assert sorted(direct.graph.edges) == [("p0", "final"), ("p1", "final")]


def test_a_factory_gives_each_node_its_own_aggregator() -> None:
    def pick(layer: int, index: int) -> SelfAggregate:
        return SelfAggregate(model=f"m{layer}", name=f"sa{layer}-{index}")

    team = mixture_of_agents(proposers(2), pick, layers=[3], final="top")
    names = {
        n: node.aggregator.name for n in team.graph if isinstance(node := team.node(n), Aggregate)
    }
    assert names == {"L1-0": "sa1-0", "L1-1": "sa1-1", "L1-2": "sa1-2", "top": "sa2-0"}


@pytest.mark.parametrize(
    ("agents", "layers", "error"),
    [
        ([], 1, "at least one proposer"),
        (proposers(2), -1, "layers must be 0 or more"),
        (proposers(2), [2, 0], "width of 1 or more"),
        ([Agent(name="final")], 1, "'final'"),
    ],
)
def test_mixture_refuses_shapes_that_cannot_run(
    agents: list[Agent], layers: int | list[int], error: str
) -> None:
    with pytest.raises(ConfigError, match=error):
        mixture_of_agents(agents, layers=layers)


async def test_each_layer_synthesises_from_the_layer_before_on_the_writers_model() -> None:
    def script(request: ChatRequest) -> tuple[Reply, float]:
        prompt = request.messages[-1]["content"]
        return f"Answer: {prompt.count('Candidate ')} seen", 0.0

    client = ScriptedClient(script)
    team = mixture_of_agents(proposers(3), layers=[2])
    result = await Orchestrator({"default": client}).run(team, TASK)
    by_sender = {m.sender: m for m in result.messages}
    assert by_sender["L1-0"].answer == "3 seen" and by_sender["final"].answer == "2 seen"
    assert by_sender["final"].inputs == ["L1-0@1", "L1-1@1"]
    assert by_sender["final"].model == "default"
    assert result.usage.calls == 3 + 2 + 1
