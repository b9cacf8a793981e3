"""The embedded default model (SmolLM2-135M-Instruct), for real: batching, limits, samples,
determinism, logprobs and structured choice. The model is weak; only mechanics are checked."""

from __future__ import annotations

import asyncio

import pytest

from agentfab.errors import ConfigError
from agentfab.llm import ChatRequest, ChatResponse
from agentfab.serving.embedded import EmbeddedClient

pytestmark = pytest.mark.slow


def ask(question: str, **settings: object) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": question}],
        model="smollm2-135m",
        **settings,  # type: ignore[arg-type]
    )


@pytest.fixture
def client(embedded: EmbeddedClient) -> EmbeddedClient:
    return embedded  # the session's model (tests/conftest.py), loaded once


async def test_concurrent_requests_share_a_forward_pass(client: EmbeddedClient) -> None:
    batches_before = client.stats.batches
    questions = [f"Name a fruit that starts with the letter {c}." for c in "ABCDEFGP"]
    responses = await asyncio.gather(
        *(client.chat(ask(q, max_tokens=12, temperature=0.7)) for q in questions)
    )
    batches = client.stats.batches - batches_before
    assert batches < len(questions)
    assert max(list(client.stats.rows_per_batch)[-batches:]) > 1
    assert all(r.completions[0].text.strip() for r in responses)


async def test_each_request_keeps_its_own_max_tokens(client: EmbeddedClient) -> None:
    story = "Write a long story about a dragon who learns to cook."
    limits = [3, 9, 20]
    responses = await asyncio.gather(
        *(client.chat(ask(story, max_tokens=m, temperature=0)) for m in limits)
    )
    for limit, response in zip(limits, responses, strict=True):
        assert 0 < response.completion_tokens <= limit
    shortest = responses[0]
    assert shortest.completion_tokens == 3
    assert shortest.completions[0].finish_reason == "length"
    assert len(responses[2].completions[0].text) > len(shortest.completions[0].text)


async def test_n_samples_share_one_prompt(client: EmbeddedClient) -> None:
    question = "Suggest a name for a cat."
    one, three = await asyncio.gather(
        client.chat(ask(question, max_tokens=10, temperature=1.0)),
        client.chat(ask(question, max_tokens=10, temperature=1.0, n=3)),
    )
    assert len(three.completions) == 3
    assert three.prompt_tokens == one.prompt_tokens > 0
    assert 3 <= three.completion_tokens <= 30


async def test_greedy_is_deterministic(client: EmbeddedClient) -> None:
    request = ask("What is the capital of France?", max_tokens=16, temperature=0)
    first = await client.chat(request)
    second = await client.chat(request)
    assert first.completions[0].text == second.completions[0].text
    assert first.completions[0].text


async def test_request_seed_reproduces_samples(client: EmbeddedClient) -> None:
    request = ask("Invent a word and define it.", max_tokens=12, temperature=1.0, seed=1234)
    alone = await client.chat(request)
    batched, _ = await asyncio.gather(
        client.chat(request), client.chat(ask("Say hi.", max_tokens=12, temperature=1.0))
    )
    assert batched.completions[0].text == alone.completions[0].text


async def test_logprobs_are_raw_token_logprobs(client: EmbeddedClient) -> None:
    response = await client.chat(
        ask("What colour is the sky?", max_tokens=12, temperature=0, logprobs=True, top_logprobs=3)
    )
    logprobs = response.completions[0].logprobs
    assert logprobs is not None
    assert len(logprobs) == response.completion_tokens > 0
    for entry in logprobs:
        assert entry.logprob <= 0
        assert 1 <= len(entry.top) <= 3
        assert all(value <= 0 for value in entry.top.values())
        # Greedy picks the most likely token, so it heads its own alternatives.
        assert entry.logprob == pytest.approx(max(entry.top.values()), abs=1e-4)


async def test_choices_return_one_of_the_choices(client: EmbeddedClient) -> None:
    choices = ["Paris", "London", "Berlin", "Madrid"]
    question = "What is the capital of France? Answer with the city only."
    sampled, greedy = await asyncio.gather(
        client.chat(ask(question, choices=choices, temperature=1.0, n=6)),
        client.chat(ask(question, choices=choices, temperature=0, logprobs=True)),
    )
    assert len(sampled.completions) == 6
    assert all(c.text in choices for c in sampled.completions)
    assert greedy.completions[0].text in choices
    assert greedy.completions[0].logprobs
    assert sampled.prompt_tokens > 0 and sampled.completion_tokens >= 6


async def test_stop_strings_cut_the_text(client: EmbeddedClient) -> None:
    response = await client.chat(
        ask("Count from 1 to 20, separated by commas.", max_tokens=24, temperature=0, stop=["5"])
    )
    completion = response.completions[0]
    assert "5" not in completion.text
    assert completion.finish_reason == "stop"
    assert 0 < response.completion_tokens < 24


async def test_usage_is_counted(client: EmbeddedClient) -> None:
    generated_before = client.stats.tokens_generated
    response = await client.chat(ask("Say hello.", max_tokens=8, temperature=0.7))
    assert response.prompt_tokens > 0
    assert 0 < response.completion_tokens <= 8
    assert client.stats.tokens_generated - generated_before == response.completion_tokens


async def test_event_loop_stays_free_while_generating(client: EmbeddedClient) -> None:
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(heartbeat())
    try:
        await client.chat(ask("Describe the sea.", max_tokens=16, temperature=0))
    finally:
        beat.cancel()
    assert ticks >= 5


async def test_a_cancelled_request_leaves_the_others_served(client: EmbeddedClient) -> None:
    doomed = asyncio.create_task(client.chat(ask("Tell a story.", max_tokens=24)))
    kept = asyncio.create_task(client.chat(ask("Say yes.", max_tokens=6)))
    await asyncio.sleep(0.05)
    doomed.cancel()
    response: ChatResponse = await kept
    assert response.completions[0].text
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_bad_settings_are_refused_before_queueing(client: EmbeddedClient) -> None:
    with pytest.raises(ConfigError, match="top_p"):
        await client.chat(ask("Hi.", top_p=0.0))
