"""Generated tokens/s of the embedded default model: one agent alone vs a team of agents.

A team sends its agents' calls at once; the embedded client batches them into
one forward pass. This prints tokens/s for one agent asking one question after
another, then for `--agents` agents asking together, and a last line

    RESULT tokens_per_s_1=<x> tokens_per_s_8=<y> speedup=<y/x>

Run: python benchmarks/embedded_throughput.py [--rounds 3] [--agents 8] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from agentfab.llm import ChatRequest
from agentfab.serving.embedded import EmbeddedClient

QUESTIONS = [
    "What is the largest planet in the solar system?",
    "Who wrote Romeo and Juliet?",
    "What gas do plants take in from the air?",
    "How many legs does a spider have?",
]
MAX_TOKENS = 32
TEMPERATURE = 0.7


def agent_request(question: str, agent: int) -> ChatRequest:
    # Team layout: the shared question first, the agent's own line after it.
    content = f"{question}\n\nYou are agent {agent + 1} of a team. Answer in one sentence."
    return ChatRequest(
        messages=[{"role": "user", "content": content}],
        model="smollm2-135m",
        max_tokens=MAX_TOKENS,
        temperature=TEMPERATURE,
    )


async def tokens_per_s(client: EmbeddedClient, agents: int, rounds: int) -> float:
    """Ask every question `rounds` times, `agents` agents at once; return tokens/s."""
    tokens = answers = 0
    started = time.perf_counter()
    for _ in range(rounds):
        for question in QUESTIONS:
            calls = [client.chat(agent_request(question, a)) for a in range(agents)]
            responses = await asyncio.gather(*calls)
            tokens += sum(r.completion_tokens for r in responses)
            answers += len(responses)
    rate = tokens / (time.perf_counter() - started)
    # A batch runs until its longest answer ends, so short answers leave rows idle.
    print(f"  {agents} agent(s): {answers} answers, {tokens / answers:.1f} tokens each on average")
    return rate


async def main(rounds: int, agents: int, threads: int | None) -> None:
    client = EmbeddedClient(seed=0, num_threads=threads)
    started = time.perf_counter()
    await client.load()
    print(f"load: {time.perf_counter() - started:.1f} s")
    try:
        await client.chat(agent_request(QUESTIONS[0], 0))  # warm-up: first-call setup
        single = await tokens_per_s(client, 1, rounds)
        print(f"1 agent: {single:.1f} tokens/s")
        team = await tokens_per_s(client, agents, rounds)
        print(
            f"{agents} concurrent agents: {team:.1f} tokens/s (max rows in a batch: "
            f"{client.stats.max_rows})"
        )
    finally:
        await client.aclose()
    print(
        f"RESULT tokens_per_s_1={single:.1f} tokens_per_s_{agents}={team:.1f} "
        f"speedup={team / single:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the questions")
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.agents, args.threads))
