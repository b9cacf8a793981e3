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


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the value at `loc` (pydantic's error location), as far as it exists."""
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                # A key that is there but not allowed: point at the key itself.
                match = next((k for k, _ in node.value if k.value == key), None)
                if match is None:
                    continue  # a discriminator tag in loc, not a YAML key
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            match = node.value[key]
        else:
            continue
        node, line = match, match.start_mark.line + 1
    return line
