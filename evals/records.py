"""The records an eval run writes, and reading them back.

A run's folder holds `run.json` (a `RunConfig`: how it was run) and `results.jsonl` (one
`ItemRecord` per item and sample, appended as each finished, one synced line each). Reading
tolerates exactly what a cut can leave (a last line cut short, or complete but without its
newline) and refuses anything else with the file and line. Nothing here summarises or
scores: that is `report.py`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from agentfab.cache import CacheStats
from agentfab.drawing import TeamShape
from agentfab.errors import ConfigError
from agentfab.messages import Usage

__all__ = [
    "RESULTS_FILE",
    "RUN_FILE",
    "AgentAttempt",
    "Attempt",
    "Call",
    "Decision",
    "ItemRecord",
    "Loaded",
    "Record",
    "RunConfig",
    "Sampled",
    "read_results",
    "read_run",
    "replace_text",
]

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"

ErrorKind = Literal["budget", "quorum", "backend"]


class Record(BaseModel):
    """Everything a run writes: frozen once made."""

    model_config = ConfigDict(frozen=True)


class RunConfig(Record):
    """`run.json`: what was run. A resumed run must match it in pipeline, suite and seed."""

    pipeline: str
    """The pipeline file as given."""
    pipeline_name: str
    pipeline_sha256: str
    """Of the file's bytes: an edited pipeline is a different run."""
    team: str
    """The team in words: topology, output aggregator, agents."""
    suite: str
    suite_kind: Literal["choice", "code"]
    suite_source: str
    suite_sha256: str | None = None
    """Of the suite's content: what identifies the suite (None in runs from before it)."""
    seed: int
    """Shuffles the options and seeds every team run and baseline."""
    limit: int | None
    samples: int
    """Independent team runs per item."""
    concurrency: int
    started: str
    agentfab: str
    """The agentfab version."""
    shape: TeamShape | None = None
    """The team's graph, for drawing it (None in runs from before it was recorded)."""


class Call(Record):
    """One model call's prompt, exactly as sent."""

    by: str
    """The message the call is behind: an agent's (`worker-1@1`), or the node whose judge or
    writer it was (`hub@1`)."""
    messages: list[dict[str, str]]
    """The chat messages: `{"role": ..., "content": ...}`."""


class Attempt(Record):
    """One configuration's answer to one item."""

    answer: str | None = None
    """The extracted answer: a letter, or for code the program the decision chose."""
    text: str = ""
    correct: bool = False
    usage: Usage = Usage()
    latency_s: float = 0.0
    error: str | None = None
    check: str | None = None
    """Code: how the problem's tests ended (`passed`, `failed: ...`, `timeout: ...`)."""
    details: dict[str, Any] = {}
    """The decision's diagnostics (votes, agreement, entropy, groups, ...)."""
    note: str | None = None
    """How the answer was reached, when that must be said: a tie broken by agent order, a
    decision carried by a small share, or why there is no answer (`Message.note`)."""
    prompts: list[Call] = []
    """The prompt of every call behind this answer: an agent's one call; for the team, its
    judges' and writers' (each agent's is in `ItemRecord.agents`); every baseline request."""


class AgentAttempt(Attempt):
    """One agent message of the team's run."""

    id: str
    name: str
    round: int
    confidence: float | None = None
    inputs: list[str] = []
    """The ids of the messages it read."""
    started: float | None = None
    """Unix time its call was sent."""
    server: str | None = None
    """Who answered: a server's URL, `embedded`, or `cache`."""


class Decision(Record):
    """One aggregate node's decision in the team's run (the output's is also `team`)."""

    id: str
    name: str
    round: int
    answer: str | None = None
    text: str = ""
    confidence: float | None = None
    inputs: list[str] = []
    usage: Usage = Usage()
    """Its judges' or writer's tokens."""
    started: float | None = None
    latency_s: float = 0.0
    error: str | None = None
    details: dict[str, Any] = {}
    """Votes, Bradley-Terry scores and wins, weights, the writer's candidates, ..."""
    note: str | None = None


class Sampled(Attempt):
    """Self-consistency: one agent sampled up to the team's tokens, then a vote."""

    samples: int = 0
    requests: int = 0
    budget: int = 0
    """The team's tokens on this item, which the samples were matched to."""
    answers: list[str | None] = []
    texts: list[str] = []


class ItemRecord(Record):
    """One line of `results.jsonl`: one item, one team sample, and its baselines."""

    item: str
    sample: int = 0
    kind: Literal["choice", "code"]
    question: str = ""
    """The question as every agent was asked it (code: with the instruction before it)."""
    choices: list[str] | None = None
    """The options in the order shown, lettered A, B, C, ... (choice)."""
    reference: str | None = None
    """The correct letter (choice); None for code, which its tests judge."""
    team: Attempt
    agents: list[AgentAttempt] = []
    """Every agent message of the team's run, in the run's order."""
    decisions: list[Decision] = []
    """Every aggregate node's decision, in the run's order (empty in files from before)."""
    single: Attempt
    """The team's first agent alone, one sample."""
    self_consistency: Sampled
    oracle: bool = False
    """Whether some agent of the team's last round was right."""
    oracle_k: int | None = None
    """How many answers the oracle looked at: the last round's agents that did not fail
    (None in files from before it was recorded)."""
    error: str | None = None
    """Why the team's run failed; the item then counts as wrong."""
    error_kind: ErrorKind | None = None
    """`backend` failures (no model answered) are asked again by --resume."""
    wall_s: float = 0.0
    finished: str = ""
    worker: str | None = None
    """The Ray worker that ran it (`ray-worker-1`); None when it ran in the driver's process."""
    node: str | None = None
    """The Ray node of that worker."""
    lost: tuple[str, ...] = ()
    """Ray workers that died while running this item: it was run again from the start, and
    what is recorded (tokens included) is the run that finished."""
    cache: CacheStats | None = None
    """The call cache's hits and misses over this line's calls, team and baselines; None
    when the run had no cache."""

    @property
    def key(self) -> tuple[str, int]:
        return self.item, self.sample


@dataclass(frozen=True)
class Loaded:
    """The records of a results file, and what reading it had to leave out."""

    records: list[ItemRecord]
    truncated: bool
    """The last line was cut short (a run killed mid-write) and was ignored."""
    duplicates: int
    """Lines repeating an (item, sample) already read; the first is kept."""
    unterminated: bool = False
    """The file does not end with a newline: a record appended now would join its last line."""

    @property
    def tidy(self) -> bool:
        """The file holds exactly its records, one per ended line: safe to append to."""
        return not (self.truncated or self.duplicates or self.unterminated)


def read_run(folder: Path) -> RunConfig:
    path = folder / RUN_FILE
    try:
        return RunConfig.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{folder}: not an eval run (no {RUN_FILE})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except ValidationError as error:
        raise ConfigError(f"{path}: not a run description ({_first_problem(error)})") from None


def read_results(path: Path) -> Loaded:
    """Every complete record; a cut-short last line is left out, a bad line elsewhere is a
    ConfigError naming it.

    A line is written in one piece ending with its newline, so a kill mid-write leaves a
    last line that is not JSON. A last line that is complete JSON without its newline is
    kept (the kill fell between the two); any other bad line is not ours to drop.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Loaded([], False, 0)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    lines = data.split(b"\n")  # the last piece is b"" when the file ends with a newline
    records: dict[tuple[str, int], ItemRecord] = {}
    duplicates, truncated = 0, False
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        record = _parse_line(raw)
        if isinstance(record, str):
            if number == len(lines) and _cut_short(raw):
                truncated = True
                break
            raise ConfigError(f"{path}:{number}: not a result line ({record})")
        if record.key in records:
            duplicates += 1
            continue
        records[record.key] = record
    unterminated = not data.endswith(b"\n") and bool(data)
    return Loaded(list(records.values()), truncated, duplicates, unterminated)


def _cut_short(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:  # UnicodeDecodeError too: a cut can split a character
        return True
    return False


def _parse_line(raw: bytes) -> ItemRecord | str:
    """The record, or what is wrong with the line."""
    try:
        return ItemRecord.model_validate_json(raw)
    except ValidationError as error:
        return _first_problem(error)


def _first_problem(error: ValidationError) -> str:
    item = error.errors()[0]
    where = ".".join(map(str, item["loc"]))
    return f"{where}: {item['msg']}" if where else str(item["msg"])


def replace_text(path: Path, text: str) -> None:
    """`path` holds `text`, on disk, in one step: never half of it after a crash."""
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
