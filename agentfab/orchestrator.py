"""Runs a team on a task: every node as soon as its inputs are ready, concurrently."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from agentfab.agent import Agent
from agentfab.aggregators.base import AggregationContext, derive_seed, vote_note
from agentfab.aggregators.confidence import logprob_confidence, stated_confidence
from agentfab.aggregators.extract import FORMATS, answer_format_for, find_answer
from agentfab.aggregators.majority import plurality
from agentfab.errors import (
    AgentfabError,
    BackendError,
    BudgetExceeded,
    ConfigError,
    ModelOutputError,
    QuorumNotReached,
    first_error,
)
from agentfab.llm import ChatRequest, ChatResponse, LLMClient, ReportsServerCounters
from agentfab.messages import Message, Task, Usage
from agentfab.openai_client import counting_calls
from agentfab.prompts import build_messages
from agentfab.result import Result
from agentfab.server_metrics import difference
from agentfab.team import Aggregate, Team
from agentfab.yaml_loader import UserModel


class Budget(UserModel):
    """Limits on one run; a call is admitted only if its worst case fits."""

    max_tokens: int | None = Field(default=None, ge=1)
    """Prompt plus completion tokens of the whole run."""
    max_calls: int | None = Field(default=None, ge=1)
    """Model calls (judges and synthesisers included)."""
    max_seconds: float | None = Field(default=None, gt=0)
    """Wall-clock seconds for the whole run."""


class RunSettings(UserModel):
    """How a team is run; the same team can be run many ways."""

    rounds: int = Field(default=1, ge=1, le=20)
    """Rounds of the whole graph; from round 2 each agent also reads its peers' last answers."""
    answer_format: Literal["auto", "letter", "number", "short", "text"] = "auto"
    """`auto` (letters for multiple choice, else short), `letter`, `number`, `short`, `text`."""
    budget: Budget = Budget()
    seed: int | None = None
    stop_on_consensus: bool = False
    """End a multi-round run early once every agent of a round gives the same answer."""
    prompt_layout: Literal["shared_first", "role_first"] = "shared_first"
    """`shared_first` puts what the team shares before each agent's role, so a vLLM server's
    prefix cache serves the whole team; `role_first` (role as a system turn) is for comparison."""
    structured_choice: bool = False
    """On multiple-choice tasks, constrain each agent's reply to one option letter (vLLM's
    structured outputs; servers without them are prompted plainly). Replies then carry no
    reasoning and no stated confidence."""
    server_metrics: bool = True
    """Read each vLLM server's /metrics before and after the run into `Result.servers`."""


@dataclass
class _Ledger:
    """Spent and reserved tokens and calls of one run; enforces the budget."""

    budget: Budget
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reserved_tokens: int = 0
    stopped: BudgetExceeded | None = None
    """Set once a call was refused: no call starts after that, calls in flight finish."""

    def admit(self, worst_case_tokens: int) -> None:
        b = self.budget
        committed = self.prompt_tokens + self.completion_tokens
        committed += self.reserved_tokens + worst_case_tokens
        if self.stopped is None and b.max_calls is not None and self.calls >= b.max_calls:
            self.stopped = BudgetExceeded(f"call budget of {b.max_calls} spent")
        elif self.stopped is None and b.max_tokens is not None and committed > b.max_tokens:
            self.stopped = BudgetExceeded(f"token budget of {b.max_tokens} would be exceeded")
        if self.stopped is not None:
            raise self.stopped
        self.calls += 1
        self.reserved_tokens += worst_case_tokens

    def settle(self, worst_case_tokens: int, usage: Usage) -> None:
        self.reserved_tokens -= worst_case_tokens
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.calls += usage.calls - 1  # admitted as one; the requests re-sent add theirs

    def usage(self) -> Usage:
        """Every call admitted, cancelled ones included (their tokens are unknown), and
        every request a client re-sent for one (after a timeout, to another replica)."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            calls=self.calls,
        )


@dataclass(frozen=True)
class _Reply:
    """What one model call gave: a response and its usage, or the error instead."""

    response: ChatResponse | None
    usage: Usage
    error: str = ""
    latency_s: float = 0.0
    failure: AgentfabError | None = None
    """The error the call raised, for callers that raise it on (an aggregator's call)."""

    def sample(self, index: int) -> _Reply:
        """The `index`-th sample alone; the call's usage goes with the first sample only."""
        assert self.response is not None
        alone = ChatResponse([self.response.completions[index]], model=self.response.model)
        return _Reply(alone, self.usage if index == 0 else Usage(), latency_s=self.latency_s)

    def sent(self, calls: int) -> _Reply:
        """This reply, its call having cost `calls` requests."""
        return dataclasses.replace(self, usage=self.usage.model_copy(update={"calls": calls}))


class Orchestrator:
    """Runs teams against a set of model clients.

    `clients` maps the model names agents refer to onto backends;
    `on_message` sees every message as soon as it exists (to stream a trace). Per-endpoint
    concurrency limits live in the clients; the orchestrator starts every
    node whose inputs are ready at once.

    `record_prompts`: every message keeps the chat messages of each call behind it in
    `details["prompts"]` (an agent's one call, a judge's or writer's calls), so a decision
    can be audited from the trace alone. Off by default: a prompt repeats the task and
    every answer read, which would grow every trace by far more than its answers; the
    eval runner turns it on for its records.
    """

    def __init__(
        self,
        clients: Mapping[str, LLMClient],
        settings: RunSettings | None = None,
        *,
        on_message: Callable[[Message], None] | None = None,
        record_prompts: bool = False,
    ):
        self.clients = dict(clients)
        self.settings = settings or RunSettings()
        self.on_message = on_message
        self.record_prompts = record_prompts
        if self.settings.answer_format not in (*FORMATS, "auto"):
            raise ConfigError(
                f"answer_format {self.settings.answer_format!r} is not one of "
                f"auto, {', '.join(FORMATS)}"
            )

    async def run(self, team: Team, task: Task | str) -> Result:
        task = Task(prompt=task) if isinstance(task, str) else task
        self._check_models(team)
        counted = self._counted_clients(team)
        before = await _read_counters(counted)
        run = _Run(self, team, task)
        deadline = asyncio.timeout(self.settings.budget.max_seconds)
        try:
            async with deadline:
                result = await run.execute()
        except TimeoutError:
            if not deadline.expired():
                raise  # not the run's deadline (clients' timeouts fail their calls): a bug
            raise BudgetExceeded(
                f"time budget of {self.settings.budget.max_seconds}s spent",
                partial=run.result(complete=False),
            ) from None
        except (BudgetExceeded, QuorumNotReached) as error:
            stopped = run.ledger.stopped or error  # a budget stop explains a missed quorum
            stopped.partial = run.result(complete=False)
            raise stopped from None
        if counted:
            after = await _read_counters(counted)
            servers = [difference(url, before[url], after[url]) for url in after if url in before]
            result = result.model_copy(update={"servers": servers})
        if run.ledger.stopped is not None:
            run.ledger.stopped.partial = result.model_copy(update={"complete": False})
            raise run.ledger.stopped
        return result

    def _check_models(self, team: Team) -> None:
        """Every model an agent, a judge or a writer names has a client, before any call."""
        for who, model in team.model_uses():
            if model not in self.clients:
                known = ", ".join(sorted(self.clients)) or "none"
                raise ConfigError(
                    f"{who} uses model {model!r}, which has no client (known: {known})"
                )

    def _counted_clients(self, team: Team) -> list[ReportsServerCounters]:
        """The clients whose servers' counters this run reads (each once)."""
        if not self.settings.server_metrics:
            return []
        models = {model for _, model in team.model_uses()}
        unique = {id(c): c for m, c in self.clients.items() if m in models}
        return [c for c in unique.values() if isinstance(c, ReportsServerCounters)]


class _Run:
    """The state of one run: messages so far, the ledger, the clock."""

    def __init__(self, orchestrator: Orchestrator, team: Team, task: Task):
        self.clients = orchestrator.clients
        self.on_message = orchestrator.on_message
        self.record_prompts = orchestrator.record_prompts
        self.settings = orchestrator.settings
        self.team = team
        self.task = task
        self.format = answer_format_for(task, self.settings.answer_format)
        self.ledger = _Ledger(self.settings.budget)
        self.messages: list[Message] = []
        self.inboxes: dict[tuple[str, int], list[Message]] = {}
        self.started = time.perf_counter()
        # What the aggregators reading an agent need from it (a stated confidence, logprobs).
        self.asks_confidence = self._agents_read_by("asks_confidence")
        self.needs_logprobs = self._agents_read_by("needs_logprobs")

    def _agents_read_by(self, wish: str) -> set[str]:
        return {
            agent
            for name in self.team.order()
            if isinstance(node := self.team.node(name), Aggregate)
            and getattr(node.aggregator, wish, False)
            for agent in self.team.inputs(name)
            if isinstance(self.team.node(agent), Agent)
        }

    async def execute(self) -> Result:
        previous: dict[str, Message] = {}
        for round_no in range(1, self.settings.rounds + 1):
            previous = await self._round(round_no, previous)
            if self.ledger.stopped is not None:
                break
            if self.settings.stop_on_consensus and self._consensus(previous):
                break
        output = previous[self.team.output]
        if not output.ok:
            raise QuorumNotReached(
                f"the output node {output.sender!r} produced no answer: {output.error}"
            )
        return self.result(complete=True)

    def _consensus(self, outputs: Mapping[str, Message]) -> bool:
        answers = {m.answer for m in outputs.values() if m.kind == "agent" and m.ok}
        return len(answers) == 1 and None not in answers

    def result(self, *, complete: bool) -> Result:
        position = {name: i for i, name in enumerate(self.team.order())}
        messages = sorted(self.messages, key=lambda m: (m.round, position[m.sender]))
        final = messages[-1] if complete and messages else None
        return Result(
            team=self.team.name,
            task=self.task,
            answer=final.answer if final else None,
            text=final.text if final else "",
            messages=messages,
            usage=self.ledger.usage(),
            wall_s=time.perf_counter() - self.started,
            rounds=max((m.round for m in messages), default=0),
            complete=complete,
        )

    async def _round(self, round_no: int, previous: Mapping[str, Message]) -> dict[str, Message]:
        tasks: dict[str, asyncio.Task[Message]] = {}
        try:
            async with asyncio.TaskGroup() as group:
                for name in self.team.order():
                    coro = self._node(name, round_no, tasks, previous)
                    tasks[name] = group.create_task(coro, name=f"{name}@{round_no}")
                await tasks[self.team.output]
                # Inputs a quorum did not wait for are no longer needed.
                for pending in tasks.values():
                    pending.cancel()
        except BaseExceptionGroup as group:
            raise first_error(group) from None
        return {n: t.result() for n, t in tasks.items() if not t.cancelled()}

    async def _node(
        self,
        name: str,
        round_no: int,
        tasks: Mapping[str, asyncio.Task[Message]],
        previous: Mapping[str, Message],
    ) -> Message:
        node = self.team.node(name)
        if isinstance(node, Aggregate):
            answered, failed = await self._gather_quorum(
                node, [tasks[p] for p in self.team.inputs(name)]
            )
            message = await self._aggregate(node, answered, failed, round_no)
        else:
            inputs = await asyncio.gather(*(tasks[p] for p in self.team.inputs(name)))
            message = await self._act(node, inputs, round_no, previous)
        self._record(message)
        return message

    def _record(self, message: Message) -> None:
        self.messages.append(message)
        if self.on_message is not None:
            self.on_message(message)

    async def _gather_quorum(
        self, node: Aggregate, inputs: Sequence[asyncio.Task[Message]]
    ) -> tuple[list[Message], list[Message]]:
        """Wait until `quorum` inputs answered (all inputs by default); the answered inputs,
        and those that failed by then."""
        needed = node.quorum or len(inputs)
        answered: list[Message] = []
        failed: list[Message] = []
        # Only a quorum needs answers in arrival order; awaiting in turn is cheaper.
        arrivals = asyncio.as_completed(inputs) if node.quorum else inputs
        for next_done in arrivals:
            message = await next_done
            (answered if message.ok else failed).append(message)
            if len(answered) >= needed:
                return answered, failed
            if node.quorum and len(failed) > len(inputs) - needed:
                break  # the quorum can no longer be met
        if node.quorum is None:
            return answered, failed  # without an explicit quorum, any answers suffice, even none
        raise QuorumNotReached(
            f"node {node.name!r}: {len(answered)} of {len(inputs)} inputs answered, "
            f"quorum is {needed}" + (f"; first cause: {_cause(failed)}" if failed else ""),
        )

    async def _aggregate(
        self, node: Aggregate, inputs: list[Message], failed: list[Message], round_no: int
    ) -> Message:
        if not inputs:
            return Message(
                id=f"{node.name}@{round_no}",
                sender=node.name,
                kind="aggregate",
                round=round_no,
                inputs=sorted(m.id for m in failed),
                error=_every_input_failed(failed),
                details={"cause": _cause(failed)} if failed else {},
            )
        sent: list[list[dict[str, str]]] = []

        async def call(model: str, request: ChatRequest) -> ChatResponse:
            if (prompt := self._prompt(request)) is not None:
                sent.append(prompt)
            return await self._call_model(model, request)

        ctx = AggregationContext(
            node=node.name,
            round=round_no,
            clients=self.clients,
            answer_format=self.format,
            seed=self.settings.seed,
            call=call,
            sample=functools.partial(self._resample, node.name, round_no),
        )
        message = await node.aggregator.aggregate(self.task, inputs, ctx)
        if not self.record_prompts:
            return message
        return message.model_copy(update={"details": {**message.details, "prompts": sent}})

    async def _call_model(self, model: str, request: ChatRequest) -> ChatResponse:
        """An aggregator's own model call (judge, synthesiser), inside the budget."""
        if model not in self.clients:
            raise ConfigError(f"an aggregator asked for model {model!r}, which has no client")
        reply = await self._budgeted_chat(model, request)
        if reply.failure is not None:
            raise reply.failure
        assert reply.response is not None
        return reply.response

    async def _budgeted_chat(self, model: str, request: ChatRequest) -> _Reply:
        """Every model call of a run goes here: admitted only if its worst case fits the
        budget (else BudgetExceeded), then settled with what it really used."""
        worst_case = _estimate_tokens(request) + request.max_tokens * request.n
        self.ledger.admit(worst_case)
        with counting_calls() as sent:
            try:
                reply = await self._chat(model, request)
            except BaseException:  # cancelled: the call was made, its tokens are unknown
                self.ledger.settle(worst_case, Usage(calls=max(1, sent.calls)))
                raise
        # Clients that count nothing (in-process ones) made the one call asked of them.
        reply = reply.sent(max(1, sent.calls))
        self.ledger.settle(worst_case, reply.usage)
        return reply

    async def _chat(self, model: str, request: ChatRequest) -> _Reply:
        """One call; how a client fails becomes the reply's error here, and only here."""
        client = self.clients[model]
        started = time.perf_counter()
        try:
            response = await client.chat(request)
        except (BackendError, ModelOutputError) as error:
            return _Reply(None, Usage(calls=1), error=str(error), failure=error)
        except TimeoutError:
            # The client's own deadline (the run's cancels, it raises no TimeoutError here):
            # this call failed, not the run.
            failure = _timed_out(client, model)
            return _Reply(None, Usage(calls=1), error=str(failure), failure=failure)
        latency_s = time.perf_counter() - started
        return _Reply(response, _usage(response), latency_s=latency_s)

    async def _act(
        self, agent: Agent, inputs: list[Message], round_no: int, previous: Mapping[str, Message]
    ) -> Message:
        msg_id = f"{agent.name}@{round_no}"
        if inputs and not any(m.ok for m in inputs):
            failure = _failure(msg_id, agent, round_no, inputs, _every_input_failed(inputs))
            return failure.model_copy(update={"details": {"cause": _cause(inputs)}})
        inbox = [m for m in inputs if m.ok]
        if round_no > 1:
            inbox += [previous[p] for p in self.team.peers(agent.name) if p in previous]
            inbox = [m for m in inbox if m.ok]
        self.inboxes[agent.name, round_no] = inbox
        request = self._request(agent, inbox, round_no, agent.samples)
        reply = await self._ask(agent, request)
        prompt = self._prompt(request)
        if reply.response is None:
            return _failure(msg_id, agent, round_no, inbox, reply.error, reply.usage, prompt)
        return self._message(msg_id, agent, round_no, inbox, reply, prompt)

    def _prompt(self, request: ChatRequest) -> list[dict[str, str]] | None:
        """What a call sent, when prompts are recorded."""
        return [dict(m) for m in request.messages] if self.record_prompts else None

    async def _resample(self, node: str, round_no: int, n: int) -> list[Message]:
        """`n` more samples from the agents `node` reads, in turn, each agent's in one request.

        For first-to-ahead-by-k voting: the aggregator asks only for what it still needs.
        """
        agents = [a for a in self.team.inputs(node) if isinstance(self.team.node(a), Agent)]
        if not agents or self.ledger.stopped is not None:
            return []  # nobody to ask, or the budget admits no more calls
        drawn = sum(1 for m in self.messages if m.sender in agents and m.round == round_no)
        shares = {a: 0 for a in agents}
        for i in range(n):
            shares[agents[(drawn + i) % len(agents)]] += 1
        batches = await asyncio.gather(
            *(self._more(a, round_no, k) for a, k in shares.items() if k > 0)
        )
        return [m for batch in batches for m in batch]

    async def _more(self, name: str, round_no: int, n: int) -> list[Message]:
        agent = self.team.node(name)
        assert isinstance(agent, Agent)
        inbox = self.inboxes.get((name, round_no), [])
        first = 1 + sum(1 for m in self.messages if m.sender == name and m.round == round_no)
        request = self._request(agent, inbox, round_no, n, sample=first)
        reply = await self._ask(agent, request)
        prompt = self._prompt(request)
        ids = [f"{name}@{round_no}.{first + i}" for i in range(n)]
        if reply.response is None:
            messages = [_failure(ids[0], agent, round_no, inbox, reply.error, reply.usage, prompt)]
        else:  # one message per sample; the request's usage and prompt go with the first
            messages = [
                self._message(
                    msg_id, agent, round_no, inbox, reply.sample(i), prompt if i == 0 else None
                )
                for i, msg_id in enumerate(ids[: len(reply.response.completions)])
            ]
        for message in messages:
            self._record(message)
        return messages

    async def _ask(self, agent: Agent, request: ChatRequest) -> _Reply:
        """An agent's call: the response and its usage, or why there is none."""
        try:
            reply = await self._budgeted_chat(agent.model, request)
        except BudgetExceeded as error:
            return _Reply(None, Usage(), error=f"not run: {error}")
        if reply.response is not None and not reply.response.completions:
            empty = f"model {agent.model!r} returned no completion"
            return _Reply(None, reply.usage, error=empty)
        return reply

    def _request(
        self, agent: Agent, inbox: Sequence[Message], round_no: int, n: int, sample: int = 0
    ) -> ChatRequest:
        ask_confidence = agent.name in self.asks_confidence
        letters = None
        if self.settings.structured_choice and self.task.choices and self.format == "letter":
            letters = [chr(ord("A") + i) for i in range(len(self.task.choices))]
        return ChatRequest(
            messages=build_messages(
                self.task, inbox, agent, self.format, ask_confidence, self.settings.prompt_layout
            ),
            model=agent.model,
            temperature=agent.temperature,
            top_p=agent.top_p,
            max_tokens=agent.max_tokens,
            n=n,
            seed=_agent_seed(agent, self.settings.seed, round_no, sample),
            logprobs=agent.name in self.needs_logprobs,
            choices=letters,
        )

    def _message(
        self,
        msg_id: str,
        agent: Agent,
        round_no: int,
        inbox: Sequence[Message],
        reply: _Reply,
        prompt: list[dict[str, str]] | None = None,
    ) -> Message:
        assert reply.response is not None
        response = reply.response
        texts = [c.text for c in response.completions]
        found = [find_answer(t, self.format, self.task) for t in texts]
        answers = [f.answer for f in found]
        details: dict[str, Any] = {}
        chosen, note = 0, None
        if len(texts) > 1:  # several samples vote inside the agent
            given = [a for a in answers if a is not None]
            winner = plurality(given)
            chosen = next((i for i, a in enumerate(answers) if a == winner), 0)
            details = {"samples": texts, "sample_answers": answers}
            note = vote_note(Counter(given), winner, broken_by="sample order")
        completion = response.completions[chosen]
        if completion.logprobs:
            details["logprob_confidence"] = logprob_confidence(completion.text, completion.logprobs)
        reason = found[chosen].reason
        if answers[chosen] is None:  # said in the record, never guessed
            details["no_answer"] = reason or "no answer found"
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
            details=details,
            note=note,
        )


def _failure(
    msg_id: str,
    agent: Agent,
    round_no: int,
    inbox: Sequence[Message],
    error: str,
    usage: Usage | None = None,
    prompt: list[dict[str, str]] | None = None,
) -> Message:
    return Message(
        id=msg_id,
        sender=agent.name,
        round=round_no,
        inputs=[m.id for m in inbox],
        model=agent.model,
        usage=usage or Usage(),
        error=error,
        details={"prompts": [prompt]} if prompt is not None else {},
    )


def _cause(failed: Sequence[Message]) -> str:
    """The first failure (by message id) at the root: `worker-1@1: <its error>`. A node whose
    inputs all failed passes on its first input's cause rather than its own words."""
    first = min((m for m in failed if not m.ok), key=lambda m: m.id)
    return str(first.details.get("cause") or f"{first.id}: {first.error}")


def _every_input_failed(failed: Sequence[Message]) -> str:
    if not any(not m.ok for m in failed):
        return "every input failed"
    return f"every input failed; first cause: {_cause(failed)}"


def _agent_seed(agent: Agent, run_seed: int | None, round_no: int, sample: int) -> int | None:
    """Each agent, round and resample draws differently, reproducibly: one seed, no clones."""
    base = agent.seed if agent.seed is not None else run_seed
    return derive_seed(base, agent.name, round_no, sample)


def _timed_out(client: LLMClient, model: str) -> BackendError:
    endpoint = str(getattr(client, "endpoint", ""))
    where = endpoint or f"model {model!r}"
    return BackendError(f"{where}: the client timed out", endpoint=endpoint, retryable=True)


def _usage(response: ChatResponse) -> Usage:
    return Usage(
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        calls=1,
    )


async def _read_counters(clients: Sequence[ReportsServerCounters]) -> dict[str, dict[str, float]]:
    readings = await asyncio.gather(*(c.server_counters() for c in clients))
    return {url: counters for reading in readings for url, counters in reading.items()}


def _estimate_tokens(request: ChatRequest) -> int:
    """A generous guess of prompt tokens: about 3 characters a token, plus a chat template."""
    return sum(len(m["content"]) for m in request.messages) // 3 + 64
