"""One model call's reply, and the message an agent's reply becomes.

`call` turns how a client fails into the reply's error (and only there); `agent_message`
reads a reply: the answer of each sample, the vote among an agent's samples, the stated and
logprob confidences, and why there is no answer when there is none (never guessed).
Nothing here schedules, budgets or decides for a team.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentfab.agent import Agent
from agentfab.aggregators.base import vote_note
from agentfab.aggregators.majority import plurality
from agentfab.answers import find_answer, logprob_confidence, stated_confidence
from agentfab.errors import AgentfabError, BackendError, ModelOutputError
from agentfab.llm import ChatRequest, ChatResponse, LLMClient
from agentfab.messages import Message, Task, Usage

Prompt = list[dict[str, str]]
"""The chat messages one call sent."""


@dataclass(frozen=True)
class Reply:
    """What one model call gave: a response and its usage, or the error instead."""

    response: ChatResponse | None
    usage: Usage
    error: str = ""
    latency_s: float = 0.0
    started: float | None = None
    """Unix time the call was sent."""
    failure: AgentfabError | None = None
    """The error the call raised, for callers that raise it on (an aggregator's call)."""

    def sample(self, index: int) -> Reply:
        """The `index`-th sample alone; the call's usage goes with the first sample only."""
        assert self.response is not None
        alone = ChatResponse([self.response.completions[index]], model=self.response.model)
        usage = self.usage if index == 0 else Usage()
        return Reply(alone, usage, latency_s=self.latency_s, started=self.started)

    def sent(self, calls: int) -> Reply:
        """This reply, its call having cost `calls` requests."""
        return dataclasses.replace(self, usage=self.usage.model_copy(update={"calls": calls}))


async def call(client: LLMClient, model: str, request: ChatRequest) -> Reply:
    """One call to `client`; a backend's or a model's failure becomes the reply's error."""
    started, sent = time.perf_counter(), time.time()
    try:
        response = await client.chat(request)
    except (BackendError, ModelOutputError) as error:
        return Reply(None, Usage(calls=1), error=str(error), failure=error, started=sent)
    except TimeoutError:
        # The client's own deadline (the run's cancels, it raises no TimeoutError here):
        # this call failed, not the run.
        failure = _timed_out(client, model)
        return Reply(None, Usage(calls=1), error=str(failure), failure=failure, started=sent)
    latency = time.perf_counter() - started
    return Reply(response, response.usage, latency_s=latency, started=sent)


def agent_message(
    reply: Reply,
    *,
    msg_id: str,
    agent: Agent,
    round_no: int,
    inbox: Sequence[Message],
    task: Task,
    answer_format: str,
    prompt: Prompt | None = None,
) -> Message:
    """The message an agent's reply becomes; several samples vote inside the agent."""
    assert reply.response is not None
    completions = reply.response.completions
    found = [find_answer(c.text, answer_format, task) for c in completions]
    answers = [f.answer for f in found]
    details: dict[str, Any] = {}
    chosen, note = 0, None
    if len(completions) > 1:
        given = [a for a in answers if a is not None]
        winner = plurality(given)
        chosen = next((i for i, a in enumerate(answers) if a == winner), 0)
        details = {"samples": [c.text for c in completions], "sample_answers": answers}
        note = vote_note(Counter(given), winner, broken_by="sample order")
    completion = completions[chosen]
    if completion.logprobs:
        details["logprob_confidence"] = logprob_confidence(completion.text, completion.logprobs)
    if answers[chosen] is None:  # said in the record, never guessed
        details["no_answer"] = found[chosen].reason or "no answer found"
        note = f"no answer: {details['no_answer']}"
    if prompt is not None:
        details["prompts"] = [prompt]
    return Message(
        id=msg_id,
        sender=agent.name,
        round=round_no,
        text=completion.text,
        answer=answers[chosen],
        confidence=stated_confidence(completion.text),
        inputs=[m.id for m in inbox],
        model=agent.model,
        usage=reply.usage,
        latency_s=reply.latency_s,
        started=reply.started,
        server=reply.response.server or None,
        details=details,
        note=note,
    )


def failed_message(
    error: str,
    *,
    msg_id: str,
    agent: Agent,
    round_no: int,
    inbox: Sequence[Message],
    usage: Usage | None = None,
    prompt: Prompt | None = None,
    started: float | None = None,
) -> Message:
    """An agent's message when its call failed or was not made."""
    return Message(
        id=msg_id,
        sender=agent.name,
        round=round_no,
        inputs=[m.id for m in inbox],
        model=agent.model,
        usage=usage or Usage(),
        started=started,
        error=error,
        details={"prompts": [prompt]} if prompt is not None else {},
    )


def first_cause(failed: Sequence[Message]) -> str:
    """The first failure (by message id) at the root: `worker-1@1: <its error>`. A node whose
    inputs all failed passes on its first input's cause rather than its own words."""
    first = min((m for m in failed if not m.ok), key=lambda m: m.id)
    return str(first.details.get("cause") or f"{first.id}: {first.error}")


def every_input_failed(failed: Sequence[Message]) -> str:
    if not any(not m.ok for m in failed):
        return "every input failed"
    return f"every input failed; first cause: {first_cause(failed)}"


def _timed_out(client: LLMClient, model: str) -> BackendError:
    endpoint = str(getattr(client, "endpoint", ""))
    where = endpoint or f"model {model!r}"
    return BackendError(f"{where}: the client timed out", endpoint=endpoint, retryable=True)
