"""agentfab: teams of LLM agents as communication graphs, with aggregation you can measure."""

from agentfab.agent import Agent
from agentfab.answers import extract_answer
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
from agentfab.orchestrator import Budget, Orchestrator, RunSettings
from agentfab.result import Result
from agentfab.run import run
from agentfab.team import Aggregate, Team

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
    "extract_answer",
    "run",
]
