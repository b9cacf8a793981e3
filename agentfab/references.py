"""A user's own code named from a file or the command line: `"package.module:Name"`.

A pipeline's `kind: python` aggregator or topology and `agentfab eval --suite
package.module:name` name an object this way; it is imported when the pipeline is loaded,
so a wrong name is one ConfigError line before any call. Modules are found on `sys.path`,
the current folder, and the folders a caller adds (a pipeline's own folder). Nothing here
checks what the object is: its user does (an aggregator, a topology, a suite).
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from agentfab.errors import ConfigError
from agentfab.yaml_loader import did_you_mean

_REF = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):(?P<name>[A-Za-z_]\w*(?:\.\w+)*)$")


def is_reference(text: str) -> bool:
    """Whether `text` has the form `package.module:Name`."""
    return _REF.match(text) is not None


def resolve(ref: str, *, folders: Sequence[Path] = ()) -> Any:
    """The object `ref` names, imported; a ConfigError names the part that failed."""
    found = _REF.match(ref)
    if found is None:
        raise ConfigError(f"{ref!r} is not a reference to Python code: write 'package.module:Name'")
    module_name, name = found["module"], found["name"]
    search_in([Path.cwd(), *folders])
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ConfigError(f"{ref!r}: no module named {error.name!r}") from None
    except Exception as error:  # the user's module failed as it ran: say how, in one line
        failed = _one_line(error)
        raise ConfigError(f"{ref!r}: importing {module_name!r} failed: {failed}") from None
    for part in name.split("."):
        if not hasattr(target, part):
            known = [n for n in dir(target) if not n.startswith("_")]
            hint = did_you_mean(part, known)
            raise ConfigError(f"{ref!r}: {module_name!r} has no {part!r}{hint}")
        target = getattr(target, part)
    return target


def build(
    ref: str,
    settings: Mapping[str, Any],
    *,
    args: Sequence[Any] = (),
    folders: Sequence[Path] = (),
) -> Any:
    """What the callable `ref` names returns, given `args` and `settings` as keyword
    arguments."""
    factory: Callable[..., Any] = resolve(ref, folders=folders)
    if not callable(factory):
        raise ConfigError(f"{ref!r} is a {type(factory).__name__}, not a class or a function")
    try:
        return factory(*args, **settings)
    except ConfigError:
        raise
    except TypeError as error:  # a setting it does not take, or one it needs and lacks
        raise ConfigError(f"{ref!r}: settings: {' '.join(str(error).split())}") from None
    except Exception as error:  # its own check of a setting's value
        raise ConfigError(f"{ref!r}: {_one_line(error)}") from None


def search_in(folders: Sequence[Path]) -> None:
    """Let references find modules in `folders` too (a pipeline's own folder)."""
    for folder in folders:
        where = str(folder.resolve())
        if where not in sys.path:
            sys.path.append(where)  # after the installed packages: a local file shadows none


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
