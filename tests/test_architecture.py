"""The map in docs/ARCHITECTURE.md matches the code, and the public API is pinned.

A module added without a line in the map, or a line left for a module that is gone,
fails here; so does a name that leaves (or joins) a public `__all__` by accident.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "ARCHITECTURE.md"
SOURCE_FOLDERS = ("agentfab", "topologies", "aggregators", "serving", "evals")

PUBLIC = {
    "agentfab": [
        "Agent", "AgentfabError", "Aggregate", "BackendError", "Budget", "BudgetExceeded",
        "ChatRequest", "ChatResponse", "Completion", "ConfigError", "Done", "LLMClient",
        "Message", "ModelOutputError", "OpenAIClient", "Orchestrator", "QuorumNotReached",
        "Result", "RunSettings", "Task", "Team", "TokenLogprob", "Usage", "arun_many",
        "extract_answer", "run", "run_many",
    ],
    "agentfab.aggregators": [
        "AggregationContext", "Aggregator", "AheadByK", "BaseAggregator", "BradleyTerry",
        "Calibration", "ConfidenceWeighted", "ExecutionConsensus", "Majority", "Needs",
        "SelfAggregate", "canonical", "fit_calibration", "plurality",
        "reputation_from_calibration", "vote_stats",
    ],
    "agentfab.topologies": ["chain", "custom", "groups", "mixture_of_agents", "star", "tree"],
}


def mapped_modules() -> set[str]:
    """`folder/module.py` for every module row under a `### \\`folder/\\`` heading."""
    named: set[str] = set()
    folder = None
    for line in MAP.read_text(encoding="utf-8").splitlines():
        if heading := re.match(r"#{2,4} `([\w/]+)/`", line):
            folder = heading.group(1)
        elif line.startswith("#"):
            folder = None
        elif folder and (row := re.match(r"\| `([\w/]+\.py)` \|", line)):
            named.add(f"{folder}/{row.group(1)}")
    return named


def source_modules() -> set[str]:
    found: set[str] = set()
    for top in SOURCE_FOLDERS:
        for path in (ROOT / top).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if path.name != "__init__.py" or relative == "agentfab/__init__.py":
                found.add(relative)
    return found


def test_every_module_is_on_the_map() -> None:
    missing = source_modules() - mapped_modules()
    assert not missing, f"modules docs/ARCHITECTURE.md does not name: {sorted(missing)}"


def test_every_module_on_the_map_exists() -> None:
    gone = mapped_modules() - source_modules()
    assert not gone, f"docs/ARCHITECTURE.md names modules that do not exist: {sorted(gone)}"


@pytest.mark.parametrize("module", sorted(source_modules()))
def test_every_module_says_what_it_holds(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{module} has no module docstring"


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_the_public_api_is_pinned(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert getattr(module, name) is not None
