"""Errors agentfab raises, named for whose fault they are.

AgentfabError                 every error below; the CLI prints it as one line, exit 2
├── ConfigError               the user's: bad YAML, unknown model or agent, bad topology
├── BackendError              a server's or a model's runtime: unreachable, 5xx, timeout
├── ModelOutputError          the model answered, but not in a form that can be used
├── BudgetExceeded            a token, call or time budget stopped the run
└── QuorumNotReached          too few agents answered for a node to aggregate

The last two carry what the run had done in `partial`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentfab.result import Result


class AgentfabError(Exception):
    """Base of every error agentfab raises on purpose."""


class ConfigError(AgentfabError):
    """Something the user wrote is wrong; the message names the file and field."""


class BackendError(AgentfabError):
    """A model backend failed; the message names the endpoint.

    `retryable`: the same request may succeed later (connection lost, timeout, 429, 5xx).
    `status`: the HTTP status the server answered with, if it answered. `retry_after_s`:
    how long the server asked to be left alone (its `Retry-After`), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        retryable: bool = False,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def busy(self) -> bool:
        """The server is up but turned the request away for now (429 Too Many Requests)."""
        return self.status == 429


class ModelOutputError(AgentfabError):
    """The model answered with something that cannot be used."""


class _PartialResultError(AgentfabError):
    def __init__(self, message: str, partial: Result | None = None, **info: Any) -> None:
        super().__init__(message)
        self.partial = partial
        self.info = info


class BudgetExceeded(_PartialResultError):
    """A budget (tokens, calls, seconds) ran out; `partial` holds what was done."""


class QuorumNotReached(_PartialResultError):
    """Fewer answers than a node's quorum arrived; `partial` holds what was done."""


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group, out of its (possibly nested) wrapping."""
    error = group.exceptions[0]
    return first_error(error) if isinstance(error, BaseExceptionGroup) else error
