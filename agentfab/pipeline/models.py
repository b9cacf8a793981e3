"""Where a pipeline's models run: the embedded transformers model, or an OpenAI-compatible
server (vLLM first) at one URL or several replicas. Only the description: clients are made
by `clients.py`, servers started by `serving/`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from agentfab.pipeline.spec import Spec

EMBEDDED_DEFAULT_CONTEXT = 8192  # SmolLM2-135M-Instruct's max_position_embeddings


class EmbeddedModel(Spec):
    """A transformers model run in this process (batched); the default is SmolLM2-135M."""

    kind: Literal["embedded"] = "embedded"
    path: str | None = None
    """Local folder or Hugging Face id; empty for the embedded default model."""
    device: str | None = None
    """`cpu`, `cuda`, ...; empty picks a GPU when there is one."""
    context_length: int | None = Field(default=None, ge=256)
    """Tokens the model can read; checked against each agent's fan-in."""


class OpenAIModel(Spec):
    """A model behind an OpenAI-compatible server (vLLM first)."""

    kind: Literal["openai"]
    base_url: str | list[str] | None = None
    """For example http://127.0.0.1:8000/v1. A list names replicas of one model (balanced,
    with failover). Empty when the pipeline's `serving` section starts the server, or
    else `OPENAI_BASE_URL` names it."""

    @field_validator("base_url")
    @classmethod
    def _urls(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("an empty list names no server")
            return [check_url(url) for url in value]
        return None if value is None else check_url(value)

    served_name: str
    """The model name the server knows."""
    api_key_env: str | None = None
    """Environment variable holding the API key; empty: `OPENAI_API_KEY`, when it is set."""
    max_concurrency: int = Field(default=64, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    context_length: int | None = Field(default=None, ge=256)


def check_url(value: str) -> str:
    import httpx  # here: a pipeline without URLs loads no HTTP client

    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http(s):// URL")
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, ValueError) as error:
        raise ValueError(f"not a valid URL ({error})") from None
    if not url.host:
        raise ValueError("not a valid URL: it names no host")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError(f"not a valid URL: port {url.port} is out of range")
    return value


ModelSpec = Annotated[EmbeddedModel | OpenAIModel, Field(discriminator="kind")]
