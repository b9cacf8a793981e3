"""Runs a team on a task: every node as soon as its inputs are ready, concurrently.

This module keeps the schedule: rounds, nodes, quorums, each agent's request (its prompt,
its seed, what the aggregators reading it need). What a call costs is the ledger's
(`budget.py`), what a reply says is `replies.py`'s and `answers.py`'s, and who gives the
extra samples first-to-ahead-by-k asks for is `resampling.py`'s; no reply is parsed and no
token counted here.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from agentfab import telemetry
from agentfab.agent import Agent
from agentfab.aggregators.base import AggregationContext, derive_seed
from agentfab.answers import FORMATS, answer_format_for
from agentfab.budget import Budget, Ledger, worst_case_tokens
from agentfab.cache import cached_clients, stats_of, tally
from agentfab.errors import BudgetExceeded, ConfigError, QuorumNotReached, first_error
from agentfab.executors import Executor, LocalExecutor
from agentfab.llm import ChatRequest, ChatResponse, LLMClient, ReportsServerCounters
from agentfab.messages import Message, Task, Usage
from agentfab.openai_client import counting_calls
from agentfab.prompts import build_messages
from agentfab.replies import (
    Prompt,
    Reply,
    agent_message,
    call,
    every_input_failed,
    failed_message,
    first_cause,
)
from agentfab.resampling import Draw, resample, sample_ids
from agentfab.result import Result
from agentfab.server_metrics import difference
from agentfab.team import Aggregate, Team
from agentfab.yaml_loader import UserModel


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
    cache: Path | None = None
    """A folder where every model call's response is kept (SQLite), so a rerun, or another
    aggregator over the same samples, costs no calls; `Result.cache` counts hits and misses.
    Off by default."""
    executor: Executor = LocalExecutor()
    """Where many tasks run (`run_many`, `agentfab eval`): in this process (`{kind: local}`),
    or over a pool of Ray workers (`{kind: ray, address, workers, concurrency_per_worker}`).
    A single run ignores it."""


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
            with telemetry.run_span(team.name) as span:
                result = await self._finish(run, counted, before, deadline)
                telemetry.record_result(span, result)
                return result
        finally:
            tally(stats_of(run.clients))

    async def _finish(
        self,
        run: _Run,
        counted: list[ReportsServerCounters],
        before: dict[str, dict[str, float]],
        deadline: asyncio.Timeout,
    ) -> Result:
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
        settings = orchestrator.settings
        self.clients: Mapping[str, LLMClient] = (
            orchestrator.clients
            if settings.cache is None
            else cached_clients(orchestrator.clients, settings.cache)
        )
        self.on_message = orchestrator.on_message
        self.record_prompts = orchestrator.record_prompts
        self.settings = orchestrator.settings
        self.team = team
        self.task = task
        self.format = answer_format_for(task, self.settings.answer_format)
        self.ledger = Ledger(self.settings.budget)
        self.messages: list[Message] = []
        self.inboxes: dict[tuple[str, int], list[Message]] = {}
        self.started = time.perf_counter()
        self.needs = team.agent_needs()

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
            cache=stats_of(self.clients),
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
            with telemetry.node_span(name, "aggregate", round_no) as span:
                message = await self._aggregate(node, answered, failed, round_no)
                telemetry.record_message(span, message)
        else:
            inputs = await asyncio.gather(*(tasks[p] for p in self.team.inputs(name)))
            with telemetry.node_span(name, "agent", round_no) as span:
                message = await self._act(node, inputs, round_no, previous)
                telemetry.record_message(span, message)
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
            f"quorum is {needed}" + (f"; first cause: {first_cause(failed)}" if failed else ""),
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
                error=every_input_failed(failed),
                details={"cause": first_cause(failed)} if failed else {},
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
        began, clock = time.time(), time.perf_counter()
        message = await node.aggregator.aggregate(self.task, inputs, ctx)
        timing = {"started": began, "latency_s": time.perf_counter() - clock}
        if not self.record_prompts:
            return message.model_copy(update=timing)
        return message.model_copy(
            update={**timing, "details": {**message.details, "prompts": sent}}
        )

    async def _call_model(self, model: str, request: ChatRequest) -> ChatResponse:
        """An aggregator's own model call (judge, synthesiser), inside the budget."""
        if model not in self.clients:
            raise ConfigError(f"an aggregator asked for model {model!r}, which has no client")
        reply = await self._budgeted_chat(model, request)
        if reply.failure is not None:
            raise reply.failure
        assert reply.response is not None
        return reply.response

    async def _budgeted_chat(self, model: str, request: ChatRequest) -> Reply:
        """Every model call of a run goes here: admitted only if its worst case fits the
        budget (else BudgetExceeded), then settled with what it really used."""
        worst_case = worst_case_tokens(request)
        self.ledger.admit(worst_case)
        client = self.clients[model]
        with counting_calls() as sent, telemetry.call_span(model, client, request) as span:
            try:
                reply = await call(client, model, request)
            except BaseException:  # cancelled: the call was made, its tokens are unknown
                self.ledger.settle(worst_case, Usage(calls=max(1, sent.calls)))
                raise
            # Clients that count nothing (in-process ones) made the one call asked of them.
            reply = reply.sent(max(1, sent.calls))
            telemetry.record_call(span, reply.response, reply.usage, reply.error)
        self.ledger.settle(worst_case, reply.usage)
        return reply

    async def _act(
        self, agent: Agent, inputs: list[Message], round_no: int, previous: Mapping[str, Message]
    ) -> Message:
        msg_id = f"{agent.name}@{round_no}"
        if inputs and not any(m.ok for m in inputs):
            error = every_input_failed(inputs)
            failure = failed_message(
                error, msg_id=msg_id, agent=agent, round_no=round_no, inbox=inputs
            )
            return failure.model_copy(update={"details": {"cause": first_cause(inputs)}})
        inbox = [m for m in inputs if m.ok]
        if round_no > 1:
            inbox += [previous[p] for p in self.team.peers(agent.name) if p in previous]
            inbox = [m for m in inbox if m.ok]
        self.inboxes[agent.name, round_no] = inbox
        request = self._request(agent, inbox, round_no, agent.samples)
        reply = await self._ask(agent, request)
        prompt = self._prompt(request)
        return self._read(reply, msg_id, agent, round_no, inbox, prompt)

    def _prompt(self, request: ChatRequest) -> list[dict[str, str]] | None:
        """What a call sent, when prompts are recorded."""
        return [dict(m) for m in request.messages] if self.record_prompts else None

    async def _resample(self, node: str, round_no: int, n: int) -> list[Message]:
        """`n` more samples from the agents `node` reads (first-to-ahead-by-k asks only for
        what it still needs); none once the budget admits no more calls."""
        if self.ledger.stopped is not None:
            return []
        return await resample(self.team, node, round_no, n, self.messages, self._draw(round_no))

    def _draw(self, round_no: int) -> Draw:
        async def draw(agent: Agent, n: int, first: int) -> list[Message]:
            inbox = self.inboxes.get((agent.name, round_no), [])
            request = self._request(agent, inbox, round_no, n, sample=first)
            reply = await self._ask(agent, request)
            prompt = self._prompt(request)
            ids = sample_ids(agent.name, round_no, first, n)
            if reply.response is None:
                messages = [self._read(reply, ids[0], agent, round_no, inbox, prompt)]
            else:  # one message per sample; the request's usage and prompt go with the first
                messages = [
                    self._read(
                        reply.sample(i), msg_id, agent, round_no, inbox, prompt if i == 0 else None
                    )
                    for i, msg_id in enumerate(ids[: len(reply.response.completions)])
                ]
            for message in messages:
                self._record(message)
            return messages

        return draw

    async def _ask(self, agent: Agent, request: ChatRequest) -> Reply:
        """An agent's call: the response and its usage, or why there is none."""
        try:
            reply = await self._budgeted_chat(agent.model, request)
        except BudgetExceeded as error:
            return Reply(None, Usage(), error=f"not run: {error}")
        if reply.response is not None and not reply.response.completions:
            empty = f"model {agent.model!r} returned no completion"
            return Reply(None, reply.usage, error=empty)
        return reply

    def _request(
        self, agent: Agent, inbox: Sequence[Message], round_no: int, n: int, sample: int = 0
    ) -> ChatRequest:
        needs = self.needs[agent.name]
        letters = None
        if self.settings.structured_choice and self.task.choices and self.format == "letter":
            letters = [chr(ord("A") + i) for i in range(len(self.task.choices))]
        return ChatRequest(
            messages=build_messages(
                self.task,
                inbox,
                agent,
                self.format,
                needs.stated_confidence,
                self.settings.prompt_layout,
            ),
            model=agent.model,
            temperature=agent.temperature,
            top_p=agent.top_p,
            max_tokens=agent.max_tokens,
            n=n,
            seed=_agent_seed(agent, self.settings.seed, round_no, sample),
            logprobs=needs.logprobs,
            choices=letters,
        )

    def _read(
        self,
        reply: Reply,
        msg_id: str,
        agent: Agent,
        round_no: int,
        inbox: Sequence[Message],
        prompt: Prompt | None,
    ) -> Message:
        """An agent's reply as its message: its answer read, or the call's error."""
        if reply.response is None:
            return failed_message(
                reply.error,
                msg_id=msg_id,
                agent=agent,
                round_no=round_no,
                inbox=inbox,
                usage=reply.usage,
                prompt=prompt,
                started=reply.started,
            )
        return agent_message(
            reply,
            msg_id=msg_id,
            agent=agent,
            round_no=round_no,
            inbox=inbox,
            task=self.task,
            answer_format=self.format,
            prompt=prompt,
        )


def _agent_seed(agent: Agent, run_seed: int | None, round_no: int, sample: int) -> int | None:
    """Each agent, round and resample draws differently, reproducibly: one seed, no clones."""
    base = agent.seed if agent.seed is not None else run_seed
    return derive_seed(base, agent.name, round_no, sample)


async def _read_counters(clients: Sequence[ReportsServerCounters]) -> dict[str, dict[str, float]]:
    readings = await asyncio.gather(*(c.server_counters() for c in clients))
    return {url: counters for reading in readings for url, counters in reading.items()}
