"""What users write, and its mistakes as one line each.

YAML is read with safe tags only, no aliases and a bounded size; a mistake found later
(by pydantic or by a cross-field check) is located back in the file, so it reads
`file:line: field: problem`. `UserModel` gives SDK constructors the same lines, as
`ConfigError`, instead of pydantic's text.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from agentfab.errors import ConfigError

MAX_BYTES = 1_000_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader (no code runs) that also refuses aliases: a few lines of
    nested aliases ("billion laughs") expand to gigabytes once validated."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ConfigError(
                f"line {event.start_mark.line + 1}: YAML aliases (*name) are not allowed"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        # PyYAML keeps the last of two equal keys; a repeated key is a mistake to report.
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = key_node.value
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (for line numbers)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError) as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: {len(raw)} bytes; a pipeline is at most {MAX_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = error.problem or error.context or "invalid YAML"
        raise ConfigError(f"{path}: {where}{problem}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error})") from None
    finally:
        loader.dispose()
    return data, node


def locate(
    node: yaml.Node | None, loc: tuple[int | str, ...]
) -> tuple[list[int | str], int | None]:
    """The parts of a pydantic error location that exist in the file, and the deepest one's line.

    Pydantic adds parts of its own (a union member's tag or type name); those are not in
    the file and are left out, whatever names the user chose for their own keys.
    """
    kept: list[int | str] = []
    line = None
    for key in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        if child is not None:
            kept.append(key)
            node, line = child, child.start_mark.line + 1
    return kept, line


Loc = tuple[int | str, ...]
"""A path into what the user wrote: `("agents", 1, "model")`."""

MAX_PROBLEMS = 3
"""Problems shown of one validation error; the rest are counted."""


class FieldError(ConfigError):
    """A mistake at a known place in what the user wrote (a file, or an SDK call)."""

    def __init__(self, loc: Loc, problem: str) -> None:
        super().__init__(f"{dotted(loc) or 'pipeline'}: {problem}")
        self.loc = loc
        self.problem = problem

    def at(self, path: str | Path, node: yaml.Node | None) -> str:
        """The mistake as `file:line: field: problem`."""
        return at(path, node, self.loc, self.problem)


@dataclass(frozen=True)
class FieldWarning:
    """Something that may be meant, at a known place; reported, not raised."""

    loc: Loc
    problem: str

    def __str__(self) -> str:
        return f"{dotted(self.loc) or 'pipeline'}: {self.problem}"

    def at(self, path: str | Path, node: yaml.Node | None) -> str:
        return at(path, node, self.loc, self.problem)


def at(path: str | Path, node: yaml.Node | None, loc: Loc, problem: str) -> str:
    """`file:line: field: problem`, the line being that of the deepest part of `loc` in the
    file (a key that is missing is named, though it has no line of its own)."""
    _, line = locate(node, loc)
    where = f"{path}:{line}" if line else f"{path}"
    return f"{where}: {dotted(loc) or 'pipeline'}: {problem}"


def dotted(parts: Sequence[int | str]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(
    error: ValidationError,
    *,
    path: str | Path | None = None,
    node: yaml.Node | None = None,
    keys: Iterable[str] = (),
) -> str:
    """Pydantic's first few problems as `file:line: field: problem` lines (no file: no prefix).

    `keys` are the names an unknown key is matched against for "did you mean".
    """
    known = sorted(set(keys))
    lines = []
    for item in error.errors()[:MAX_PROBLEMS]:
        loc = tuple(item["loc"])
        kept, line = locate(node, loc) if node is not None else (list(loc), None)
        if item["type"] in ("missing", "union_tag_invalid", "union_tag_not_found"):
            # The key at fault is not where pydantic points: it is absent, or it is `kind`.
            key = "kind" if item["type"].startswith("union_tag") else loc[-1] if loc else None
            if key is not None and (not kept or kept[-1] != key):
                kept.append(key)
                line = locate(node, tuple(kept))[1] or line
        prefix = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        lines.append(f"{prefix}{dotted(kept) or 'pipeline'}: {_problem(item, loc, known)}")
    if error.error_count() > MAX_PROBLEMS:
        lines.append(f"... and {error.error_count() - MAX_PROBLEMS} more problems")
    return "\n".join(lines)


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` for a close match, else the known names."""
    names = list(known)
    hint = difflib.get_close_matches(value, names, n=1)
    return f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(names) or 'none'})"


def _problem(item: Any, loc: Loc, known: Sequence[str]) -> str:
    kind = item["type"]
    if kind == "extra_forbidden" and loc and isinstance(loc[-1], str):
        hint = difflib.get_close_matches(loc[-1], known, n=1)
        return "unknown key" + (f"; did you mean {hint[0]!r}?" if hint else "")
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']*)'", item["ctx"]["expected_tags"])
        return f"unknown kind {item['ctx']['tag']!r}{did_you_mean(str(item['ctx']['tag']), tags)}"
    if kind == "union_tag_not_found":
        return "missing: say which kind this is"
    message: str = item["msg"]
    return message.removeprefix("Value error, ")


# ---- SDK constructors -----------------------------------------------------------------------

_inside: ContextVar[bool] = ContextVar("agentfab_inside_validation", default=False)


@contextmanager
def _validating() -> Iterator[bool]:
    """True for the outermost validation only: nested models leave errors to it, so the
    one message names the whole path (`agents[0].max_tokens`, not `max_tokens`)."""
    outermost = not _inside.get()
    token = _inside.set(True)
    try:
        yield outermost
    finally:
        _inside.reset(token)


class UserModel(BaseModel):
    """A model users write: frozen, unknown keys refused, and mistakes raised as
    `ConfigError` lines (`Agent: max_tokns: unknown key; did you mean 'max_tokens'?`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        with _validating() as outermost:
            try:
                super().__init__(**data)
            except ValidationError as error:
                if not outermost:
                    raise  # pydantic adds where this model sits in the outer one
                raise ConfigError(_sdk_message(type(self), error)) from None

    @classmethod
    def model_validate(cls, *args: Any, **kwargs: Any) -> Self:
        """As pydantic's; a ValidationError stays one (the YAML loader locates its lines)."""
        with _validating():
            return super().model_validate(*args, **kwargs)


def _sdk_message(model: type[BaseModel], error: ValidationError) -> str:
    lines = describe(error, keys=field_names()).splitlines()
    return "\n".join(f"{model.__name__}: {line}" for line in lines)


def field_names(*extra: type[BaseModel]) -> set[str]:
    """Every field of every UserModel (and of `extra`), for "did you mean" hints."""
    names: set[str] = set()
    todo: list[type[BaseModel]] = [UserModel, *extra]
    while todo:
        model = todo.pop()
        names.update(model.model_fields)
        todo += model.__subclasses__()
    return names
