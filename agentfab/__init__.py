"""agentfab: teams of LLM agents as communication graphs, with aggregation you can measure.

Every public name but `run` is imported on first use, so `import agentfab` (and every `agentfab`
command) starts without loading the HTTP clients, networkx or numpy that some names need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfab.lazy import exports

if TYPE_CHECKING:
    from agentfab.agent import Agent
    from agentfab.answers import extract_answer
    from agentfab.batch import Done, arun_many, run_many
    from agentfab.budget import Budget
    from agentfab.errors import (
        AgentfabError,
        BackendError,
        BudgetExceeded,
        ConfigError,
        ModelOutputError,
        QuorumNotReached,
    )
    from agentfab.llm import ChatRequest, ChatResponse, Completion, LLMClient, TokenLogprob
    from agentfab.messages import Message, Task, Usage
    from agentfab.openai_client import OpenAIClient
    from agentfab.orchestrator import Orchestrator, RunSettings
    from agentfab.result import Result
    from agentfab.team import Aggregate, Team

# Bound now, not on first use: importing the module `agentfab.run` rebinds the package's
# `run` to that module, which would then hide the function. The module itself is light.
from agentfab.run import run

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentfabError",
    "Aggregate",
    "BackendError",
    "Budget",
    "BudgetExceeded",
    "ChatRequest",
    "ChatResponse",
    "Completion",
    "ConfigError",
    "Done",
    "LLMClient",
    "Message",
    "ModelOutputError",
    "OpenAIClient",
    "Orchestrator",
    "QuorumNotReached",
    "Result",
    "RunSettings",
    "Task",
    "Team",
    "TokenLogprob",
    "Usage",
    "arun_many",
    "extract_answer",
    "run",
    "run_many",
]

_HOMES = {
    "Agent": "agentfab.agent",
    "extract_answer": "agentfab.answers",
    "Budget": "agentfab.budget",
    "Done": "agentfab.batch",
    "arun_many": "agentfab.batch",
    "run_many": "agentfab.batch",
    "AgentfabError": "agentfab.errors",
    "BackendError": "agentfab.errors",
    "BudgetExceeded": "agentfab.errors",
    "ConfigError": "agentfab.errors",
    "ModelOutputError": "agentfab.errors",
    "QuorumNotReached": "agentfab.errors",
    "ChatRequest": "agentfab.llm",
    "ChatResponse": "agentfab.llm",
    "Completion": "agentfab.llm",
    "LLMClient": "agentfab.llm",
    "TokenLogprob": "agentfab.llm",
    "Message": "agentfab.messages",
    "Task": "agentfab.messages",
    "Usage": "agentfab.messages",
    "OpenAIClient": "agentfab.openai_client",
    "Orchestrator": "agentfab.orchestrator",
    "RunSettings": "agentfab.orchestrator",
    "Result": "agentfab.result",
    "Aggregate": "agentfab.team",
    "Team": "agentfab.team",
}

__getattr__, __dir__ = exports(__name__, _HOMES, __all__)
