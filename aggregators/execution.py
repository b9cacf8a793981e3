"""Execution consensus: programs that behave alike vote together (after CodeT and AlphaCode).

Each answer's program is run, sandboxed, on the inputs the problem's tests call
the function with; programs with the same outputs on every input form a group,
and the largest group of programs that ran wins. The tests' expected outputs
and assertions are never used, only their inputs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentfab.aggregators.base import (
    AggregationContext,
    BaseAggregator,
    canonical,
    vote_note,
    vote_stats,
)
from agentfab.aggregators.majority import plurality
from agentfab.errors import ConfigError
from agentfab.evals.code import CRASHED, behaviour, extract_code, test_inputs
from agentfab.messages import Message, Task

_NEEDED = ("prompt", "entry_point", "test")
_CRASHED = json.dumps(CRASHED)


@dataclass(frozen=True)
class ExecutionConsensus(BaseAggregator):
    """The largest group of same-behaving programs wins; its first answer (by id) is the decision.

    The task's `data` must hold a HumanEval-style problem: `prompt`, `entry_point` and
    `test`. The decision's text and answer are the winner's extracted program. Ties go
    to the group whose first member comes first by message id; when every program
    crashed, the decision has no answer.
    """

    per_input_s: float = 1.0
    """CPU seconds one input may take before it counts as `!InputTimeout`."""
    timeout_s: float = 10.0
    """Wall-clock seconds for one program's whole run."""
    concurrency: int = 4
    """Programs run at once."""
    name: str = "execution"

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.per_input_s <= 0 or self.timeout_s <= 0:
            raise ConfigError("execution: concurrency, per_input_s and timeout_s must be positive")

    async def aggregate(
        self, task: Task, messages: Sequence[Message], ctx: AggregationContext
    ) -> Message:
        missing = [key for key in _NEEDED if key not in task.data]
        if missing:
            raise ConfigError(
                f"node {ctx.node!r}: execution consensus needs task.data with "
                f"{', '.join(_NEEDED)} (missing: {', '.join(missing)})"
            )
        entry_point = str(task.data["entry_point"])
        voters = [m for m in canonical(messages) if m.ok and m.text.strip()]
        codes = [extract_code(m.text, str(task.data["prompt"]), entry_point) for m in voters]
        inputs = test_inputs(task.data)
        behaviours = await self._behaviours(codes, entry_point, inputs)
        keys = [json.dumps(behaviours[code]) for code in codes]
        winner = plurality([key for key in keys if key != _CRASHED])
        chosen = next((code for code, key in zip(codes, keys, strict=True) if key == winner), None)
        details = _details(voters, keys, winner)
        details["inputs"] = len(inputs)
        if voters and winner is None:
            details["no_answer"] = f"all {len(voters)} programs crashed on the problem's inputs"
        return ctx.decision(
            inputs=messages,
            text=chosen or "",
            answer=chosen,
            details=details,
            confidence=keys.count(winner) / len(voters) if winner is not None else None,
            note=vote_note(details["votes"], details["winner"]),
        )

    async def _behaviours(
        self, codes: Sequence[str], entry_point: str, inputs: Sequence[str]
    ) -> dict[str, tuple[str, ...]]:
        """Each distinct program's behaviour, at most `concurrency` sandboxes at a time."""
        limit = asyncio.Semaphore(self.concurrency)

        async def run(code: str) -> tuple[str, ...]:
            async with limit:
                return await behaviour(
                    code,
                    entry_point,
                    inputs,
                    per_input_s=self.per_input_s,
                    timeout_s=self.timeout_s,
                )

        async with asyncio.TaskGroup() as group:
            runs = {code: group.create_task(run(code)) for code in dict.fromkeys(codes)}
        return {code: done.result() for code, done in runs.items()}


def _details(voters: Sequence[Message], keys: Sequence[str], winner: str | None) -> dict[str, Any]:
    """The groups, largest first (ties: first by message id), labelled g1, g2, ..."""
    members: dict[str, list[str]] = {}
    for message, key in zip(voters, keys, strict=True):
        members.setdefault(key, []).append(message.sender)
    ranked = sorted(members.items(), key=lambda item: -len(item[1]))  # stable: first seen first
    labels = {key: f"g{rank}" for rank, (key, _) in enumerate(ranked, start=1)}
    working = [labels[key] for key in keys if key != _CRASHED]
    stats = vote_stats(working)  # agreement, entropy and margin among the programs that ran
    stats.update(
        groups=[
            {
                "label": labels[key],
                "size": len(senders),
                "senders": senders,
                "crashed": key == _CRASHED,
            }
            for key, senders in ranked
        ],
        winner=labels[winner] if winner is not None else None,
        crashed=keys.count(_CRASHED),
        voters=len(voters),
    )
    return stats
