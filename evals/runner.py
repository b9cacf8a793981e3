"""The benchmark runner: a pipeline's team on every item of a suite, beside honest baselines.

For each item (and each of `samples` independent team runs of it) the runner records
the team's decision and every agent's answer, and three baselines from the team's
first agent: one sample alone; self-consistency, the same agent sampled until its
tokens come as close as they can to what the team spent on that item, then a vote
(plurality for multiple choice, execution consensus for code); and oracle@k, whether
some agent of the team was right. Code is judged by the problem's tests in the sandbox.

Each record is appended to `results.jsonl` and synced to disk as soon as its item
finishes, so a run killed at any moment keeps its work; `resume` continues it without
asking a finished item again. Items run concurrently (the embedded model batches them),
in this process or on Ray workers (`run.executor`, `--ray`): the executor streams each
record back and this process alone writes it, so a run reads the same either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, Field

from agentfab.agent import Agent
from agentfab.aggregators.base import AggregationContext, derive_seed, vote_note, vote_stats
from agentfab.aggregators.execution import ExecutionConsensus
from agentfab.aggregators.majority import plurality
from agentfab.budget import Budget
from agentfab.cache import counting_cache, open_cache
from agentfab.drawing import TeamShape
from agentfab.errors import (
    AgentfabError,
    BackendError,
    BudgetExceeded,
    ConfigError,
    ModelOutputError,
    QuorumNotReached,
)
from agentfab.evals.code import extract_code, humaneval_program
from agentfab.evals.records import (
    RESULTS_FILE,
    RUN_FILE,
    AgentAttempt,
    Attempt,
    Call,
    Decision,
    ErrorKind,
    ItemRecord,
    RunConfig,
    Sampled,
    read_results,
    read_run,
    replace_text,
)
from agentfab.evals.report import Summary, write_report
from agentfab.evals.sandbox import run_python_async
from agentfab.evals.suites import Item, Suite, load_suite
from agentfab.executors import Executor, LocalExecutor, RayExecutor
from agentfab.llm import LLMClient
from agentfab.messages import Message, Task, Usage
from agentfab.orchestrator import Orchestrator, RunSettings
from agentfab.pipeline import Pipeline, build_clients, close_clients, load_pipeline
from agentfab.result import Result
from agentfab.team import Aggregate, Team

__all__ = ["EvalOptions", "EvalOutcome", "EvalPlan", "evaluate", "plan_eval", "run_eval"]

_MAX_SC_REQUESTS = 8
# Stop a run whose model calls keep failing: this many items with no answer at all, and
# more than half of those finished in this session.
_MAX_BACKEND_FAILURES = 5
_SANDBOXES = 4
# How each kind of suite is scored, and the answer formats that can be (a letter or a
# number is never a program).
_SCORING = {
    "choice": ("multiple choice, scored by the letter of the option", ("auto", "letter")),
    "code": ("code, scored by running the program in the reply", ("auto", "text", "short")),
}


class EvalOptions(BaseModel):
    """Everything `agentfab eval` is told."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: Path
    suite: str
    """A known suite name or a .csv / .jsonl file."""
    limit: int | None = Field(default=None, ge=0)
    """Only the first N items."""
    samples: int = Field(default=1, ge=1)
    """Independent team runs per item (different seeds), for pass@k."""
    out: Path | None = None
    """The run's folder; default `runs/<pipeline-name>-<suite>-<timestamp>`."""
    resume: bool = False
    """Continue the run in `out`, skipping what it finished."""
    concurrency: int = Field(default=8, ge=1)
    """Items in flight at once."""
    seed: int | None = None
    """Default: the pipeline's run seed, else 0."""
    cache: Path | None = None
    """The call cache's folder (default: the pipeline's `run.cache`, else none)."""
    max_sc_samples: int = Field(default=32, ge=1)
    """At most this many self-consistency samples per item, whatever the team spent."""
    test_timeout_s: float = Field(default=10.0, gt=0)
    """Wall-clock limit of one code problem's tests."""
    progress: bool = True
    """A progress bar on stderr."""
    ray: str | None = None
    """Run the items on Ray workers at this address (`RayExecutor.address`), whatever the
    pipeline's `run.executor` says."""
    workers: int | None = Field(default=None, ge=1)
    """Ray workers; default: the pipeline's `run.executor.workers`, else 2."""


@dataclass(frozen=True)
class EvalPlan:
    """A prepared run: its folder exists with run.json, and what is left to do is known."""

    options: EvalOptions
    pipeline: Pipeline
    team: Team
    suite: Suite
    config: RunConfig
    folder: Path
    done: list[ItemRecord]
    """Records kept from an earlier, interrupted run of the same folder."""
    units: list[tuple[Item, int]]
    """(item, sample) pairs still to run, in suite order."""

    @property
    def results(self) -> Path:
        return self.folder / RESULTS_FILE

    def resume_command(self) -> str:
        """The command that continues this run."""
        o = self.options
        parts = ["agentfab eval", str(o.pipeline), "--suite", o.suite, "--out", str(self.folder)]
        if o.limit is not None:
            parts += ["--limit", str(o.limit)]
        if o.samples != 1:
            parts += ["--samples", str(o.samples)]
        if o.seed is not None:
            parts += ["--seed", str(o.seed)]
        return " ".join([*parts, "--resume"])


@dataclass(frozen=True)
class EvalOutcome:
    folder: Path
    summary: Summary | None
    """None when no item has a result (an empty suite or `limit` 0)."""
    written: int
    """Records written by this call."""
    skipped: int
    """Records an earlier run had finished."""


async def evaluate(
    options: EvalOptions, *, clients: Mapping[str, LLMClient] | None = None
) -> EvalOutcome:
    """Plan and run an eval; see `plan_eval` and `run_eval`."""
    return await run_eval(plan_eval(options), clients=clients)


# ---- planning: the folder, run.json and what is left -------------------------------------


def plan_eval(options: EvalOptions) -> EvalPlan:
    """Load the pipeline and suite, prepare the folder (refusing to mix runs) and work out
    what is left. Every problem is a one-line ConfigError."""
    pipeline = _with_executor(load_pipeline(options.pipeline), options)
    if options.cache is not None:
        pipeline = pipeline.with_run(cache=options.cache)
    if pipeline.run.cache is not None:
        open_cache(pipeline.run.cache)  # a folder it cannot use: one line, before any call
    seed = options.seed if options.seed is not None else pipeline.run.seed
    seed = seed if seed is not None else 0
    suite = load_suite(options.suite, seed=seed, limit=options.limit)
    _check_scorable(options.pipeline, pipeline, suite)
    team = pipeline.build_team()
    config = _run_config(options, pipeline, team, suite, seed)
    folder = options.out or _default_folder(pipeline, suite)
    done = _prepare(folder, config, options.resume)
    finished = {record.key for record in done}
    units = [
        (item, sample)
        for item in suite.items
        for sample in range(options.samples)
        if (item.id, sample) not in finished
    ]
    return EvalPlan(options, pipeline, team, suite, config, folder, done, units)


def _with_executor(pipeline: Pipeline, options: EvalOptions) -> Pipeline:
    """The pipeline with `--ray` / `--workers` applied to its `run.executor`."""
    executor = pipeline.run.executor
    if options.workers is not None and options.ray is None and executor.kind != "ray":
        raise ConfigError("--workers: only with --ray (or a pipeline whose run.executor is ray)")
    if options.ray is None and options.workers is None:
        return pipeline
    settings = executor.model_dump(exclude={"kind"}) if isinstance(executor, RayExecutor) else {}
    if options.ray is not None:
        settings["address"] = options.ray
    if options.workers is not None:
        settings["workers"] = options.workers
    return pipeline.with_run(executor=RayExecutor(**settings))


def _check_scorable(path: Path, pipeline: Pipeline, suite: Suite) -> None:
    """Refuse, before any model is asked, a format whose answers the suite cannot score."""
    fmt, (what, fits) = pipeline.run.answer_format, _SCORING[suite.kind]
    if fmt not in fits:
        raise ConfigError(
            f"{path}: run.answer_format is {fmt!r}, but suite {suite.name!r} is {what}; "
            f"set answer_format to {' or '.join(repr(f) for f in fits)}"
        )


def _run_config(
    options: EvalOptions, pipeline: Pipeline, team: Team, suite: Suite, seed: int
) -> RunConfig:
    from agentfab import __version__

    try:
        digest = hashlib.sha256(options.pipeline.read_bytes()).hexdigest()
    except OSError as error:
        raise ConfigError(f"{options.pipeline}: cannot read ({error.strerror})") from None
    return RunConfig(
        pipeline=str(options.pipeline),
        pipeline_name=pipeline.name,
        pipeline_sha256=digest,
        team=_describe_team(pipeline, team),
        suite=suite.name,
        suite_kind=suite.kind,
        suite_source=suite.source,
        suite_sha256=suite.sha256,
        seed=seed,
        limit=options.limit,
        samples=options.samples,
        concurrency=options.concurrency,
        started=_now(),
        agentfab=__version__,
        shape=TeamShape.of(team),
    )


def _describe_team(pipeline: Pipeline, team: Team) -> str:
    output = team.node(team.output)
    decided = f", {output.aggregator.name}" if isinstance(output, Aggregate) else ""
    count = len(team.agents())
    return f"{pipeline.topology.kind}{decided}, {count} agent{'s' * (count != 1)}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _default_folder(pipeline: Pipeline, suite: Suite) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{_safe(pipeline.name)}-{_safe(suite.name)}-{stamp}"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _prepare(folder: Path, config: RunConfig, resume: bool) -> list[ItemRecord]:
    """The records to keep; run.json written. Without `resume`, results are never mixed."""
    results = folder / RESULTS_FILE
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--out {folder}: exists and is not a folder")
    has_results = results.is_file() and results.stat().st_size > 0
    kept: list[ItemRecord] = []
    if has_results and not resume:
        raise ConfigError(f"{folder} has results; pass --resume or another --out")
    if resume:
        previous = _run_to_resume(folder)
        _check_same_run(folder, previous, config)
        config = config.model_copy(update={"started": previous.started})
    if resume and has_results:
        loaded = read_results(results)
        # Items no model answered (a server down) are asked again; others are final.
        kept = [r for r in loaded.records if r.error_kind != "backend"]
        if not loaded.tidy or len(kept) < len(loaded.records):
            _rewrite(results, kept)  # what is appended next starts a line of its own
    try:
        folder.mkdir(parents=True, exist_ok=True)
        replace_text(folder / RUN_FILE, config.model_dump_json(indent=2) + "\n")
    except OSError as error:
        raise ConfigError(f"--out {folder}: cannot write ({error.strerror})") from None
    return kept


def _run_to_resume(folder: Path) -> RunConfig:
    """The run `--resume` continues: one must be there, or it would silently start afresh."""
    if not (folder / RUN_FILE).is_file():
        raise ConfigError(
            f"--resume: {folder} holds no run to resume (no {RUN_FILE}); "
            "pass the --out of an earlier run, or drop --resume to start one"
        )
    return read_run(folder)


def _check_same_run(folder: Path, previous: RunConfig, config: RunConfig) -> None:
    difference = next(_differences(previous, config), None)
    if difference is not None:
        what, flag, old, new = difference
        raise ConfigError(
            f"{folder} holds a run with another {what}: {old}, not {new}; "
            f"resume it with the same {flag}, or pass another --out"
        )


def _differences(previous: RunConfig, config: RunConfig) -> Iterator[tuple[str, str, str, str]]:
    """What differs from the run in the folder: (what, its flag, theirs, ours)."""
    if previous.pipeline_sha256 != config.pipeline_sha256:
        old, new = previous.pipeline_sha256, config.pipeline_sha256
        yield "pipeline file (its content changed)", "pipeline file", repr(old), repr(new)
    if not _same_suite(previous, config):
        old, new = _suite_shown(previous), _suite_shown(config)
        yield "suite (its content differs)", "--suite", old, new
    if previous.seed != config.seed:
        yield "--seed", "--seed", repr(previous.seed), repr(config.seed)


def _same_suite(previous: RunConfig, config: RunConfig) -> bool:
    """By content, whatever the name; runs from before suites were hashed by name and file."""
    if previous.suite_sha256 is None:
        return (previous.suite, previous.suite_source) == (config.suite, config.suite_source)
    return previous.suite_sha256 == config.suite_sha256


def _suite_shown(config: RunConfig) -> str:
    digest = f" (sha256 {config.suite_sha256[:12]})" if config.suite_sha256 else ""
    return f"{config.suite!r} from {config.suite_source}{digest}"


def _rewrite(path: Path, records: Sequence[ItemRecord]) -> None:
    """The results file with only `records`, replaced in one step."""
    replace_text(path, "".join(r.model_dump_json() + "\n" for r in records))


# ---- running -------------------------------------------------------------------------------


async def run_eval(
    plan: EvalPlan, *, clients: Mapping[str, LLMClient] | None = None
) -> EvalOutcome:
    """Run what `plan` left to do, then write summary.json and the report.

    Without `clients`, the pipeline's servers are brought up (its `serving` section) and
    its clients built and closed where the items run (here, or in each Ray worker).
    Cancelling keeps every record already written.
    """
    written = 0
    if plan.units:
        executor = plan.pipeline.run.executor
        if clients is not None and not isinstance(executor, LocalExecutor):
            raise ConfigError(
                f"{plan.options.pipeline}: run.executor is {executor.kind}, which runs items "
                "with clients of its own; pass no clients"
            )
        from agentfab.serving.supervisor import servers_up

        with _ResultsFile(plan.results) as results:
            serving = plan.pipeline.serving if clients is None else None
            async with servers_up(serving, report=_say) as served:
                work = _EvalWork.of(plan, clients, plan.pipeline.with_urls(served.placed))
                written = await _run_units(plan, executor, work, results)
    everything = written + len(plan.done)
    summary = write_report(plan.folder) if everything else None
    return EvalOutcome(plan.folder, summary, written, len(plan.done))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class _ResultsFile:
    """results.jsonl, appended one synced line per finished item."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: TextIO | None = None

    def __enter__(self) -> _ResultsFile:
        try:
            self.file = self.path.open("a", encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{self.path}: cannot write ({error.strerror})") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()

    def write(self, record: ItemRecord) -> None:
        assert self.file is not None
        self.file.write(record.model_dump_json() + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


async def _run_units(
    plan: EvalPlan, executor: Executor, work: _EvalWork, results: _ResultsFile
) -> int:
    """Every unit through the executor; the driver alone writes each record as it lands."""
    progress = _Progress(plan)
    written = 0
    keys = [(item.id, sample) for item, sample in plan.units]
    try:
        stream = executor.map(work, keys, concurrency=plan.options.concurrency)
        async with contextlib.aclosing(stream) as finished:
            async for outcome in finished:
                record = outcome.value.model_copy(
                    update={"worker": outcome.worker, "node": outcome.node, "lost": outcome.lost}
                )
                results.write(record)
                written += 1
                progress.add(record)
                progress.check_failures(plan)
    finally:
        progress.close()
    return written


class _Progress:
    """A tqdm bar on stderr with the running accuracy and tokens; counts failures."""

    def __init__(self, plan: EvalPlan) -> None:
        from tqdm import tqdm

        self.lines = self.team_right = self.single_right = self.tokens = 0
        self.finished = self.backend_failures = 0
        self.last_error = ""
        self.bar = tqdm(
            total=len(plan.done) + len(plan.units),
            desc=f"{plan.config.pipeline_name} on {plan.suite.name}",
            unit="item",
            file=sys.stderr,
            dynamic_ncols=True,
            disable=not plan.options.progress,
        )
        for record in plan.done:
            self._count(record)
        self.bar.update(len(plan.done))
        self._show()

    def add(self, record: ItemRecord) -> None:
        self._count(record)
        self.finished += 1
        if record.error_kind == "backend":
            self.backend_failures += 1
            self.last_error = record.error or ""
        self.bar.update(1)
        self._show()

    def _count(self, record: ItemRecord) -> None:
        self.lines += 1
        self.team_right += record.team.correct
        self.single_right += record.single.correct
        self.tokens += sum(
            a.usage.total_tokens for a in (record.team, record.single, record.self_consistency)
        )

    def _show(self) -> None:
        if self.lines:
            self.bar.set_postfix_str(
                f"team {self.team_right / self.lines:.0%} single "
                f"{self.single_right / self.lines:.0%} tokens {self.tokens / 1000:.1f}k"
            )

    def check_failures(self, plan: EvalPlan) -> None:
        failures = self.backend_failures
        if failures >= _MAX_BACKEND_FAILURES and failures * 2 > self.finished:
            raise BackendError(
                f"stopping: {failures} of the {self.finished} items finished so far got no "
                f"answer from any model (last: {self.last_error}); finished items are in "
                f"{plan.results}; fix the cause, then: {plan.resume_command()}"
            )

    def close(self) -> None:
        self.bar.close()


# ---- one item -------------------------------------------------------------------------------


@dataclass
class _EvalWork:
    """One (item, sample) unit of a run: the team on it, its baselines, all scored. Runs
    where the executor puts it, so it carries the run's descriptions, not open clients
    (unless the caller gave clients, which only run in this process)."""

    pipeline: Pipeline
    team: Team
    items: dict[str, Item]
    seed: int
    max_sc_samples: int
    test_timeout_s: float
    given: Mapping[str, LLMClient] | None = None
    clients: Mapping[str, LLMClient] = field(default_factory=dict)
    sandboxes: asyncio.Semaphore | None = None

    @classmethod
    def of(
        cls, plan: EvalPlan, clients: Mapping[str, LLMClient] | None, pipeline: Pipeline
    ) -> _EvalWork:
        wanted = {item.id for item, _ in plan.units}
        return cls(
            pipeline=pipeline,
            team=plan.team,
            items={item.id: item for item in plan.suite.items if item.id in wanted},
            seed=plan.config.seed,
            max_sc_samples=plan.options.max_sc_samples,
            test_timeout_s=plan.options.test_timeout_s,
            given=clients,
        )

    async def open(self) -> None:
        self.sandboxes = asyncio.Semaphore(_SANDBOXES)
        self.clients = self.given if self.given is not None else build_clients(self.pipeline)

    async def close(self) -> None:
        if self.given is None:
            await close_clients(self.clients)

    async def run(self, key: tuple[str, int]) -> ItemRecord:
        item_id, sample = key
        return await self.unit(self.items[item_id], sample)

    @property
    def agent(self) -> Agent:
        """The team's first agent: the baselines' single agent."""
        return self.team.agents()[0]

    async def unit(self, item: Item, sample: int) -> ItemRecord:
        """The team on one item, its baselines, all scored."""
        started = time.perf_counter()
        task = item.task()
        assert self.sandboxes is not None, "opened"
        judge = _Judge(item, self.sandboxes, self.test_timeout_s)
        with counting_cache() as cached:
            (result, error, kind), first = await asyncio.gather(
                self._team(task, item, sample), self._alone(task, item, sample, 1, 0)
            )
            consistency = await self._self_consistency(task, item, sample, first, result, judge)
        agents = await self._agents(result, judge)
        decisions = _decisions(result)
        team = await self._decision(result, error, judge)
        single = await _single_attempt(first, judge)
        last_round = max((a.round for a in agents), default=0)
        looked = [a for a in agents if a.round == last_round and a.error is None]
        return ItemRecord(
            item=item.id,
            sample=sample,
            kind=item.kind,
            question=task.prompt,
            choices=task.choices,
            reference=item.answer or None,
            team=team,
            agents=agents,
            decisions=decisions,
            single=single,
            self_consistency=consistency,
            oracle=any(a.correct for a in looked),
            oracle_k=len(looked),
            error=error,
            error_kind=kind,
            cache=cached.stats() if self.pipeline.run.cache is not None else None,
            wall_s=time.perf_counter() - started,
            finished=_now(),
        )

    def _orchestrator(self, settings: RunSettings) -> Orchestrator:
        # Every call's prompt goes into the record, so a score can be audited from it alone.
        return Orchestrator(self.clients, settings, record_prompts=True)

    def _seed(self, *parts: object) -> int | None:
        return derive_seed(self.seed, *parts)

    async def _team(
        self, task: Task, item: Item, sample: int
    ) -> tuple[Result | None, str | None, ErrorKind | None]:
        """The team's result (partial when it failed), why it failed, and how."""
        settings = self.pipeline.run.model_copy(
            update={"seed": self._seed("team", item.id, sample), "server_metrics": False}
        )
        try:
            result = await self._orchestrator(settings).run(self.team, task)
        except BudgetExceeded as stopped:
            return stopped.partial, str(stopped), "budget"
        except QuorumNotReached as missed:
            kind: ErrorKind = "quorum" if _anyone_answered(missed.partial) else "backend"
            return missed.partial, str(missed), kind
        except (BackendError, ModelOutputError) as failed:
            return None, str(failed), "backend"
        return result, None, None

    async def _alone(
        self, task: Task, item: Item, sample: int, n: int, request: int
    ) -> Result | AgentfabError:
        """The first agent alone, `n` samples in one request, as the team would run it."""
        agent = self.agent.model_copy(update={"samples": n})
        team = Team.from_edges([agent], [], name=f"{agent.name}-alone")
        settings = self.pipeline.run.model_copy(
            update={
                "seed": self._seed("single", item.id, sample, request),
                "rounds": 1,
                "budget": Budget(),
                "server_metrics": False,
            }
        )
        try:
            return await self._orchestrator(settings).run(team, task)
        except ConfigError:
            raise
        except AgentfabError as error:
            return error

    async def _agents(self, result: Result | None, judge: _Judge) -> list[AgentAttempt]:
        messages = [m for m in result.messages if m.kind == "agent"] if result else []
        verdicts = await judge.many(
            [m.text if m.ok else "" for m in messages], [m.answer for m in messages]
        )
        return [
            AgentAttempt(
                **_said(m),
                answer=verdict.answer,
                correct=verdict.correct,
                check=verdict.check,
                prompts=_calls(m),
                server=m.server,
            )
            for m, verdict in zip(messages, verdicts, strict=True)
        ]

    async def _decision(self, result: Result | None, error: str | None, judge: _Judge) -> Attempt:
        usage = result.usage if result is not None else Usage()
        wall = result.wall_s if result is not None else 0.0
        output = result.output if result is not None and error is None else None
        # The judges' and writers' calls (agents' are with each agent's attempt).
        calls = (
            [c for m in result.messages if m.kind == "aggregate" for c in _calls(m)]
            if result
            else []
        )
        if output is None:
            return Attempt(usage=usage, latency_s=wall, error=error or "no answer", prompts=calls)
        (verdict,) = await judge.many([output.text], [output.answer])
        details = output.details if output.kind == "aggregate" else {}
        return Attempt(
            answer=verdict.answer,
            text=output.text,
            correct=verdict.correct,
            usage=usage,
            latency_s=wall,
            check=verdict.check,
            details={k: v for k, v in details.items() if k != "prompts"},
            note=output.note,
            prompts=calls,
        )

    async def _self_consistency(
        self,
        task: Task,
        item: Item,
        sample: int,
        first: Result | AgentfabError,
        team: Result | None,
        judge: _Judge,
    ) -> Sampled:
        budget = team.usage.total_tokens if team is not None else 0
        prior = _completions(team)
        if isinstance(first, AgentfabError):
            return Sampled(error=str(first), budget=budget)
        draws = _Draws(budget, self.max_sc_samples, prior=prior)
        draws.add(first)
        error: str | None = None
        while (n := draws.next_n()) > 0:
            more = await self._alone(task, item, sample, n, draws.requests)
            if isinstance(more, AgentfabError):
                error = str(more)  # vote on what was drawn
                break
            draws.add(more)
        return await _vote(draws, task, judge, error)


def _decisions(result: Result | None) -> list[Decision]:
    """The aggregate nodes' decisions, their prompts left to `Attempt.prompts`."""
    messages = [m for m in result.messages if m.kind == "aggregate"] if result else []
    return [
        Decision(
            **_said(m),
            answer=m.answer,
            details={k: v for k, v in m.details.items() if k != "prompts"},
        )
        for m in messages
    ]


def _said(m: Message) -> dict[str, Any]:
    """What an agent's or an aggregate's record keeps of its message as it is."""
    return {
        "id": m.id,
        "name": m.sender,
        "round": m.round,
        "text": m.text,
        "confidence": m.confidence,
        "inputs": m.inputs,
        "usage": m.usage,
        "started": m.started,
        "latency_s": m.latency_s,
        "error": m.error,
        "note": m.note,
    }


def _completions(result: Result | None) -> tuple[int, int]:
    """Completion tokens and completions of a run's agents (an n-sample request's usage
    rides on its first message)."""
    calls = [m for m in result.messages if m.kind == "agent" and m.usage.calls] if result else []
    count = sum(len(m.details.get("samples", [m.text])) for m in calls)
    return sum(m.usage.completion_tokens for m in calls), count


def _calls(message: Message) -> list[Call]:
    """The prompts recorded with a message (`Orchestrator(record_prompts=True)`)."""
    return [Call(by=message.id, messages=p) for p in message.details.get("prompts", [])]


def _anyone_answered(partial: Result | None) -> bool:
    return partial is not None and any(m.ok for m in partial.messages if m.kind == "agent")


async def _single_attempt(first: Result | AgentfabError, judge: _Judge) -> Attempt:
    if isinstance(first, AgentfabError):
        return Attempt(error=str(first))
    message = first.messages[0]
    (verdict,) = await judge.many([message.text], [message.answer])
    return Attempt(
        answer=verdict.answer,
        text=message.text,
        correct=verdict.correct,
        usage=first.usage,
        latency_s=first.wall_s,
        check=verdict.check,
        note=message.note,
        prompts=_calls(message),
    )


@dataclass
class _Draws:
    """Self-consistency's samples so far, and how many more come closest to the budget."""

    budget: int
    cap: int
    texts: list[str] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    requests: int = 0
    calls: list[Call] = field(default_factory=list)
    prompt_tokens: int = 0
    """Of one request: every request of the agent reads the same prompt."""
    prior: tuple[int, int] = (0, 0)
    """Completion tokens and completions of the team's agents on this item: with them, one
    short first sample does not make every sample look short."""

    def add(self, result: Result) -> None:
        message = result.messages[0]
        self.texts += message.details.get("samples", [message.text])
        self.answers += message.details.get("sample_answers", [message.answer])
        self.usage += result.usage
        self.latency_s += result.wall_s
        self.requests += 1
        self.calls += _calls(message)
        self.prompt_tokens = max(self.prompt_tokens, result.usage.prompt_tokens)

    def next_n(self) -> int:
        """Samples for one more request (n > 1 share its prompt): the count that brings the
        total nearest the budget, 0 when stopping is nearer."""
        if not self.texts or len(self.texts) >= self.cap or self.requests >= _MAX_SC_REQUESTS:
            return 0
        tokens, count = self.prior
        per_sample = (tokens + self.usage.completion_tokens) / (count + len(self.texts))
        per_sample = max(1.0, per_sample)
        left = self.budget - self.usage.total_tokens - self.prompt_tokens
        return max(0, min(round(left / per_sample), self.cap - len(self.texts)))


async def _vote(draws: _Draws, task: Task, judge: _Judge, error: str | None) -> Sampled:
    """Plurality of the letters (choice), execution consensus of the programs (code)."""
    text, answer, details, note = "", None, {}, None
    if judge.item.kind == "code":
        voters = [
            Message(id=f"sample-{i:03d}", sender=f"sample-{i:03d}", text=t)
            for i, t in enumerate(draws.texts)
        ]
        ctx = AggregationContext(node="self-consistency", answer_format="text")
        decision = await ExecutionConsensus().aggregate(task, voters, ctx)
        text, answer, details = decision.text, decision.answer, decision.details
        note = decision.note
    else:
        answers = [a for a in draws.answers if a is not None]
        answer = plurality(answers)
        text = next((t for t, a in zip(draws.texts, draws.answers, strict=True) if a == answer), "")
        details = vote_stats(answers)
        note = vote_note(details["votes"], answer, broken_by="sample order")
        if answer is None:
            details |= {"agreement": None, "margin": None}
            note = f"no answer: none of the {len(draws.texts)} samples gave one"
    (verdict,) = await judge.many([text], [answer])
    return Sampled(
        answer=verdict.answer,
        text=text,
        correct=verdict.correct,
        usage=draws.usage,
        latency_s=draws.latency_s,
        error=error,
        check=verdict.check,
        details=details,
        samples=len(draws.texts),
        requests=draws.requests,
        budget=draws.budget,
        answers=draws.answers,
        texts=draws.texts,
        note=note,
        prompts=draws.calls,
    )


# ---- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    answer: str | None
    """The letter, or the program that was tested."""
    correct: bool
    check: str | None = None


@dataclass
class _Judge:
    """Scores answers to one item: letters against the key, programs by the tests.

    Programs are run once each per item, however many answers share them.
    """

    item: Item
    sandboxes: asyncio.Semaphore
    timeout_s: float
    outcomes: dict[str, tuple[bool, str]] = field(default_factory=dict)

    async def many(self, texts: Sequence[str], answers: Sequence[str | None]) -> list[_Verdict]:
        if self.item.kind == "choice":
            return [_Verdict(a, a is not None and a == self.item.answer) for a in answers]
        programs = [self._program(text) for text in texts]
        todo = {p for p in programs if p and p not in self.outcomes}
        async with asyncio.TaskGroup() as group:
            runs = {p: group.create_task(self._test(p)) for p in sorted(todo)}
        self.outcomes.update({p: run.result() for p, run in runs.items()})
        return [self._verdict(program) for program in programs]

    def _program(self, text: str) -> str:
        if not text.strip():
            return ""
        problem = self.item.data
        return extract_code(text, str(problem["prompt"]), str(problem["entry_point"]))

    def _verdict(self, program: str) -> _Verdict:
        if not program:
            return _Verdict(None, False, "no code")
        passed, check = self.outcomes[program]
        return _Verdict(program, passed, check)

    async def _test(self, program: str) -> tuple[bool, str]:
        source = humaneval_program(self.item.data, program)
        async with self.sandboxes:
            outcome = await run_python_async(source, timeout_s=self.timeout_s, cpu_s=self.timeout_s)
        check = outcome.status + (f": {outcome.detail}" if outcome.detail else "")
        return outcome.passed, check


def resume_hint(plan: EvalPlan) -> str:
    """What to tell someone who stopped a run."""
    return f"finished items are in {plan.results}; continue with: {plan.resume_command()}"
