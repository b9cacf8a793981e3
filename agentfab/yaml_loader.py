"""Reading YAML a user wrote: safe tags only, no aliases, bounded size, errors with lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
