"""The synchronous entry point: `agentfab.run(team, task)`.

`import agentfab` binds `run` from here at once (a lazy name would be shadowed by this
module once anything imported it), so this module imports the engine only when it runs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfab.llm import LLMClient
    from agentfab.messages import Task
    from agentfab.result import Result
    from agentfab.serving.embedded import EmbeddedClient
    from agentfab.team import Team

# The embedded model of runs without clients: loaded by the first such run, kept for the
# next ones (loading costs seconds, a run on a small team less). Its batching queue belongs
# to one event loop at a time, so such runs take turns.
_embedded: EmbeddedClient | None = None
_embedded_turn = threading.Lock()


def run(
    team: Team,
    task: Task | str,
    *,
    clients: Mapping[str, LLMClient] | None = None,
    **settings: Any,
) -> Result:
    """Run `team` on `task` and wait for the result.

    Without `clients`, every model the team names (its agents', judges' and writers') is
    the embedded default model, loaded in this process once and reused by later calls.
    Keyword arguments are `RunSettings` fields; a mistake in them is a `ConfigError`.
    """
    import asyncio

    from agentfab.orchestrator import Orchestrator, RunSettings

    run_settings = RunSettings(**settings)
    if clients is not None:
        return asyncio.run(Orchestrator(clients, run_settings).run(team, task))
    with embedded_turn(True):
        model = embedded_model()
        served = dict.fromkeys((m for _, m in team.model_uses()), model)
        return asyncio.run(Orchestrator(served, run_settings).run(team, task))


@contextlib.contextmanager
def embedded_turn(needed: bool) -> Iterator[None]:
    """This thread's turn with the embedded model, when `needed` (runs on it take turns)."""
    if not needed:
        yield
        return
    with _embedded_turn:
        yield


def embedded_model() -> LLMClient:
    """The embedded default model of this process, loaded on first use."""
    global _embedded
    if _embedded is None:
        from agentfab.serving.embedded import EmbeddedClient

        # Agents' requests carry seeds derived from the run's seed, so one client serves
        # runs of any seed; requests without one (no run seed) sample unseeded, not as seed 0.
        _embedded = EmbeddedClient()
    return _embedded
