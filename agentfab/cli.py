"""The `agentfab` command: run, validate, graph, serve and schema for YAML pipelines; eval
a pipeline on a benchmark suite, and report on eval runs side by side.

Each subcommand imports what it needs when it runs, so `--help` and `validate` never load
the HTTP clients, the engine or the eval code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agentfab.errors import AgentfabError, BudgetExceeded, ConfigError, QuorumNotReached

if TYPE_CHECKING:
    from agentfab.llm import LLMClient
    from agentfab.messages import Message, Task
    from agentfab.pipeline import Pipeline, ServeConfig
    from agentfab.result import Result
    from agentfab.trace import TraceWriter

EXIT_USER_ERROR = 2
_CACHE_HELP = "keep every model call's response in DIR; a rerun answers from it (run.cache)"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except AgentfabError as error:
        print(f"agentfab: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("agentfab: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentfab", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a pipeline on a task")
    run.add_argument("pipeline", type=Path)
    run.add_argument("--task", help="the task text (default: the pipeline's own task)")
    run.add_argument("--json", action="store_true", help="print the whole result as JSON")
    run.add_argument("--trace", type=Path, help="write every message to this JSON-lines file")
    run.add_argument("--cache", type=Path, metavar="DIR", help=_CACHE_HELP)
    run.set_defaults(handler=_run)

    validate = commands.add_parser("validate", help="check a pipeline without running it")
    validate.add_argument("pipeline", type=Path)
    validate.set_defaults(handler=_validate)

    graph = commands.add_parser("graph", help="draw a pipeline's team")
    graph.add_argument("pipeline", type=Path)
    graph.add_argument("--format", choices=["text", "mermaid", "png"], default="text")
    graph.add_argument("--out", type=Path, help="output file (required for png)")
    graph.set_defaults(handler=_graph)

    serve = commands.add_parser("serve", help="start vLLM servers and keep them up")
    serve.add_argument("config", type=Path)
    serve.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="place every replica in a Ray actor on the cluster at ADDRESS (default: auto)",
    )
    serve.set_defaults(handler=_serve)

    schema = commands.add_parser("schema", help="print the pipeline JSON Schema")
    schema.set_defaults(handler=_schema)

    _add_eval_commands(commands)
    return parser


def _add_eval_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = commands.add_parser("eval", help="run a pipeline on a benchmark suite")
    evaluate.add_argument("pipeline", type=Path)
    evaluate.add_argument(
        "--suite",
        required=True,
        help="a known suite, a .csv/.jsonl file, or package.module:function of your own",
    )
    evaluate.add_argument("--limit", type=_count, help="only the first N items")
    evaluate.add_argument("--samples", type=_positive, default=1, help="team runs per item")
    evaluate.add_argument("--out", type=Path, help="run folder (default: runs/NAME-SUITE-TIME)")
    evaluate.add_argument("--resume", action="store_true", help="continue the run in --out")
    evaluate.add_argument("--concurrency", type=_positive, default=8, help="items at once")
    evaluate.add_argument("--seed", type=int, help="default: the pipeline's seed, else 0")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument("--cache", type=Path, metavar="DIR", help=_CACHE_HELP)
    evaluate.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        metavar="ADDRESS",
        help="run the items on Ray workers: the cluster at ADDRESS (HOST:PORT), this machine's "
        "(auto, the default), or one started for the run (local)",
    )
    evaluate.add_argument(
        "--workers", type=_positive, help="Ray workers (with --ray; default 2)"
    )
    evaluate.set_defaults(handler=_eval)

    report = commands.add_parser("report", help="eval runs side by side, as Markdown")
    report.add_argument("runs", type=Path, nargs="+", metavar="DIR")
    report.add_argument("--out", type=Path, help="also write the table to this file")
    report.set_defaults(handler=_report_runs)

    view = commands.add_parser("view", help="a trace or an eval run as one HTML page")
    view.add_argument("source", type=Path, metavar="TRACE_OR_RUN_DIR")
    view.add_argument(
        "--out", type=Path, help="the page (default: DIR/view.html, or the trace's name .html)"
    )
    view.set_defaults(handler=_view)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _eval(args: argparse.Namespace) -> int:
    from agentfab.evals.report import cache_line, rate_table, where_ran
    from agentfab.evals.runner import EvalOptions, plan_eval, resume_hint, run_eval

    options = EvalOptions(
        pipeline=args.pipeline,
        suite=args.suite,
        limit=args.limit,
        samples=args.samples,
        out=args.out,
        resume=args.resume,
        concurrency=args.concurrency,
        seed=args.seed,
        progress=not args.no_progress,
        ray=args.ray,
        workers=args.workers,
        cache=args.cache,
    )
    plan = plan_eval(options)
    _report(f"eval: {len(plan.units)} to run, {len(plan.done)} done before; in {plan.folder}")
    try:
        outcome = asyncio.run(run_eval(plan))
    except KeyboardInterrupt:
        print(f"agentfab: interrupted; {resume_hint(plan)}", file=sys.stderr)
        return 130
    if outcome.summary is None:
        print(f"no items to run; nothing written to {plan.results}")
        return 0
    print(rate_table(outcome.summary))
    if where := where_ran(outcome.summary):
        print(f"\n{where}")
    if cached := cache_line(outcome.summary):
        print(f"\n{cached}")
    print(f"\nreport: {outcome.folder / 'report.md'}")
    return 0


def _view(args: argparse.Namespace) -> int:
    from agentfab.viewer import view

    print(f"wrote {view(args.source, args.out)}")
    return 0


def _report_runs(args: argparse.Namespace) -> int:
    from agentfab.evals.report import compare_runs

    table = compare_runs(args.runs)
    if args.out is not None:
        try:
            args.out.write_text(table, encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"--out {args.out}: cannot write ({error.strerror})") from None
    print(table, end="")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from agentfab.pipeline import load_pipeline

    pipeline = load_pipeline(args.pipeline, warn=_warn)
    team = pipeline.build_team()
    print(
        f"{args.pipeline}: ok: team {team.name!r}, {len(team.agents())} agents, "
        f"{team.graph.number_of_edges()} edges, output {team.output!r}"
    )
    return 0


def _graph(args: argparse.Namespace) -> int:
    from agentfab import drawing
    from agentfab.pipeline import load_pipeline

    team = load_pipeline(args.pipeline).build_team()
    if args.format == "png" and args.out is None:
        raise ConfigError("graph --format png needs --out FILE")
    try:
        if args.format == "png":
            drawing.to_png(team, args.out)
            print(f"wrote {args.out}")
            return 0
        text = drawing.to_text(team) if args.format == "text" else drawing.to_mermaid(team)
        if args.out:
            args.out.write_text(text + "\n")
        else:
            print(text)
    except OSError as error:
        raise ConfigError(f"--out {args.out}: cannot write ({error.strerror})") from None
    return 0


def _serve(args: argparse.Namespace) -> int:
    from agentfab.pipeline import load_serve_config
    from agentfab.serving.supervisor import Supervisor

    config = load_serve_config(args.config)
    if args.ray is not None:
        from agentfab.serving.ray_replicas import with_placement

        config = with_placement(config, args.ray)
    if config.placed("ray") is None:
        supervisor = Supervisor(
            config.specs(), Path(config.log_dir), report=lambda line: print(line, flush=True)
        )
        asyncio.run(_until_signalled(supervisor.run()))
    else:
        asyncio.run(_until_signalled(_serve_until_stopped(config)))
    return 0


async def _serve_until_stopped(config: ServeConfig) -> None:
    from agentfab.serving.supervisor import servers_up

    async with servers_up(config, report=lambda line: print(line, flush=True)):
        await asyncio.Event().wait()


async def _until_signalled(work: Coroutine[object, object, None]) -> None:
    """Run `work`; SIGTERM or SIGINT cancels it, so it cleans up and returns."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    print("stopped", flush=True)


def _schema(args: argparse.Namespace) -> int:
    from agentfab.pipeline import Pipeline

    print(json.dumps(Pipeline.model_json_schema(), indent=2))
    return 0


def _warn(line: str) -> None:
    print(f"agentfab: warning: {line}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from agentfab.messages import Task
    from agentfab.pipeline import load_pipeline
    from agentfab.trace import TraceWriter

    pipeline = load_pipeline(args.pipeline, warn=_warn)
    if args.cache is not None:
        pipeline = pipeline.with_run(cache=args.cache)
    if pipeline.run.cache is not None:
        from agentfab.cache import open_cache

        open_cache(pipeline.run.cache)  # a folder it cannot use: one line, before any call
    task = Task(prompt=args.task) if args.task else pipeline.default_task()
    if task is None:
        raise ConfigError(f"{args.pipeline}: no task: pass --task TEXT or set `task:` in the file")
    trace = TraceWriter(args.trace) if args.trace else None
    try:
        result = asyncio.run(_run_async(pipeline, task, trace))
    except (BudgetExceeded, QuorumNotReached) as error:
        if error.partial is not None and trace is not None:
            trace.result(error.partial)
        raise
    finally:
        if trace is not None:
            trace.close()
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        _print_summary(result)
    return 0


async def _run_async(pipeline: Pipeline, task: Task, trace: TraceWriter | None) -> Result:
    from agentfab.serving.supervisor import servers_up

    async with servers_up(pipeline.serving, report=_report) as served:
        return await _run_team(pipeline.with_urls(served.placed), task, trace)


def _report(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _run_team(pipeline: Pipeline, task: Task, trace: TraceWriter | None) -> Result:
    from agentfab.orchestrator import Orchestrator
    from agentfab.pipeline import build_clients, close_clients

    clients = build_clients(pipeline)
    try:
        await _check_endpoints(pipeline, clients)
        orchestrator = Orchestrator(
            clients, pipeline.run, on_message=lambda message: _on_message(message, trace)
        )
        team = pipeline.build_team()
        if trace is not None:
            from agentfab.drawing import TeamShape

            trace.team(TeamShape.of(team))
        result = await orchestrator.run(team, task)
        if trace is not None:
            trace.result(result)
        return result
    finally:
        await close_clients(clients)


async def _check_endpoints(pipeline: Pipeline, clients: Mapping[str, LLMClient]) -> None:
    """Fail early, naming the endpoint, when a server does not answer."""
    from agentfab.openai_client import OpenAIClient
    from agentfab.pipeline import OpenAIModel
    from agentfab.replicas import ReplicaPool

    for name, spec in pipeline.models.items():
        client = clients[name]
        if isinstance(spec, OpenAIModel) and isinstance(client, OpenAIClient | ReplicaPool):
            served = await client.list_models()
            if spec.served_name not in served:
                raise ConfigError(
                    f"models.{name}: {client.endpoint} serves {', '.join(served) or 'nothing'}, "
                    f"not {spec.served_name!r}"
                )


def _on_message(message: Message, trace: TraceWriter | None) -> None:
    """Progress on stderr; the trace written as each message arrives, so an interrupted run
    keeps its work."""
    status = f"error: {message.error}" if message.error else f"answer: {message.answer}"
    cost = f"{message.usage.total_tokens} tokens, {message.latency_s:.1f}s"
    print(f"  {message.id:<16} {message.kind:<9} {status}  ({cost})", file=sys.stderr)
    if trace is not None:
        trace.message(message)


def _print_summary(result: Result) -> None:
    usage = result.usage
    print(f"answer: {result.shown_answer}")  # with its note: a tie, a small share, none
    print(
        f"tokens: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion "
        f"in {usage.calls} calls, {result.wall_s:.1f}s"
    )
    if result.cache is not None:
        print(f"cache: {result.cache.hits} calls answered from it, {result.cache.misses} sent")
    for server in result.servers:
        rate = server.prefix_cache_hit_rate
        queue = server.mean_queue_time_s
        print(
            f"server {server.endpoint}: prefix-cache hits "
            f"{'n/a' if rate is None else f'{rate:.0%}'}, {server.prompt_tokens:.0f} prompt + "
            f"{server.generation_tokens:.0f} generated tokens, queue "
            f"{'n/a' if queue is None else f'{queue * 1000:.0f} ms'} per request"
        )


if __name__ == "__main__":
    sys.exit(main())
