"""The trace: a run as JSON lines, one per message as it happens, then one for the result.

Format, version 1 (`VERSION`). Every line is one JSON object with `"version": 1` and an
`event`:

- `"team"`: the team's graph (a `TeamShape`: nodes, edges, groups, output), first, when
  the writer knew the team (`agentfab run --trace` does);
- `"message"`: the fields of one `Message` (an agent's reply or an aggregate's decision),
  written and flushed as soon as it exists, so an interrupted run keeps what it did;
- `"result"`: the fields of the `Result` without its messages (the answer, usage, wall
  time, `complete`: false when a budget or a quorum stopped the run early). Last, and
  absent when the run was killed.

`agentfab run --trace FILE` and `Result.to_jsonl()` write it; `read_trace` reads it back.
Nothing here runs or changes a team.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from pydantic import ValidationError

from agentfab.drawing import TeamShape
from agentfab.errors import ConfigError
from agentfab.messages import Message

if TYPE_CHECKING:
    from agentfab.result import Result

VERSION = 1


def message_line(message: Message) -> str:
    # The message's own JSON with the two keys spliced in front: no second serialisation.
    return f'{{"event":"message","version":{VERSION},' + message.model_dump_json()[1:] + "\n"


def result_line(result: Result) -> str:
    summary = result.model_dump(mode="json", exclude={"messages"})
    return json.dumps({"event": "result", "version": VERSION, **summary}) + "\n"


def trace_text(result: Result) -> str:
    """A finished run's whole trace."""
    return "".join(map(message_line, result.messages)) + result_line(result)


class TraceWriter:
    """Writes a trace to `path` as the run goes; each line is flushed as it is written."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._file: TextIO = path.open("w", encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"{path}: cannot write a trace ({error.strerror})") from None

    def team(self, shape: TeamShape) -> None:
        self._write(f'{{"event":"team","version":{VERSION},' + shape.model_dump_json()[1:] + "\n")

    def message(self, message: Message) -> None:
        self._write(message_line(message))

    def result(self, result: Result) -> None:
        self._write(result_line(result))

    def close(self) -> None:
        self._file.close()

    def _write(self, line: str) -> None:
        if not self._file.closed:
            self._file.write(line)
            self._file.flush()


@dataclass(frozen=True)
class Trace:
    """A trace read back: its messages, the result line if the run got that far, and the
    team's graph if the trace has it."""

    messages: list[Message]
    result: dict[str, Any] | None
    team: TeamShape | None = None


def read_trace(path: Path) -> Trace:
    """Every line of a trace; a line cut short at the end (a killed run) is left out, any
    other bad line is a ConfigError naming it."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read a trace ({error})") from None
    messages: list[Message] = []
    result: dict[str, Any] | None = None
    team: TeamShape | None = None
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            if number == len(lines):  # the last line, without its newline: cut short
                break
            raise ConfigError(f"{path}:{number}: not a trace line (not JSON)") from None
        if not isinstance(entry, dict) or entry.get("version") != VERSION:
            version = entry.get("version") if isinstance(entry, dict) else None
            raise ConfigError(
                f"{path}:{number}: not a version {VERSION} trace line (version {version!r})"
            )
        event = entry.pop("event", None)
        del entry["version"]
        if event == "message":
            try:
                messages.append(Message.model_validate(entry))
            except ValidationError as error:
                problem = error.errors()[0]["msg"]
                raise ConfigError(f"{path}:{number}: not a message ({problem})") from None
        elif event == "result":
            result = entry
        elif event == "team":
            try:
                team = TeamShape.model_validate(entry)
            except ValidationError as error:
                problem = error.errors()[0]["msg"]
                raise ConfigError(f"{path}:{number}: not a team line ({problem})") from None
        else:
            raise ConfigError(f"{path}:{number}: unknown trace event {event!r}")
    return Trace(messages, result, team)
