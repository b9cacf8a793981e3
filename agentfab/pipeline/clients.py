"""The clients a pipeline's models need: an `OpenAIClient` per served model (a
`ReplicaPool` over several URLs) and one embedded model per distinct setting. HTTP clients
and torch are imported only here, when a run makes its clients, so loading or validating a
pipeline never imports them."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from agentfab.llm import LLMClient
from agentfab.pipeline.models import OpenAIModel
from agentfab.pipeline.schema import Pipeline


def build_clients(pipeline: Pipeline) -> dict[str, LLMClient]:
    """One client per model (a replica pool for several URLs); embedded models with the same
    settings share one instance."""
    clients: dict[str, LLMClient] = {}
    embedded: dict[tuple[str | None, str | None], LLMClient] = {}
    for name, spec in pipeline.models.items():
        if isinstance(spec, OpenAIModel):
            clients[name] = _remote_client(spec, pipeline.urls(name))
        else:
            from agentfab.serving.embedded import EmbeddedClient

            seed = pipeline.run.seed  # None: unseeded, so "random" runs do not repeat
            where = (spec.path, spec.device)
            if where not in embedded:
                embedded[where] = EmbeddedClient(spec.path, device=spec.device, seed=seed)
            clients[name] = embedded[where]
    return clients


async def close_clients(clients: Mapping[str, LLMClient]) -> None:
    """Close what `build_clients` made, each client once (models may share one)."""
    for client in {id(c): c for c in clients.values()}.values():
        await client.aclose()


def _remote_client(spec: OpenAIModel, urls: Sequence[str]) -> LLMClient:
    from agentfab.openai_client import OpenAIClient
    from agentfab.replicas import ReplicaPool

    options: dict[str, Any] = {
        "api_key": os.environ.get(spec.api_key_env, "") if spec.api_key_env else None,
        "max_concurrency": spec.max_concurrency,
        "timeout_s": spec.timeout_s,
        "model": spec.served_name,
    }
    if len(urls) > 1:
        return ReplicaPool.from_urls(urls, retries=spec.retries, **options)
    return OpenAIClient(urls[0], retries=spec.retries, **options)
