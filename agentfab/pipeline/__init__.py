"""Pipelines: a team, its models and how to run it, written in YAML.

- `schema.py`: the `Pipeline` itself (agents, models, topology, run, task, serving), the
  checks across its parts, and `load_pipeline`;
- `models.py`, `aggregators.py`, `topologies.py`, `serving.py`: the specs of its parts,
  each aggregator and topology spec building what it describes;
- `clients.py`: the clients a run of it needs.

The schema is pydantic; `agentfab schema` exports it as JSON Schema for editor completion.
Every mistake in a file is one `ConfigError` line naming the file, the line and the field.
"""

from agentfab.pipeline.clients import build_clients, close_clients
from agentfab.pipeline.models import EmbeddedModel, OpenAIModel
from agentfab.pipeline.schema import Pipeline, load_pipeline
from agentfab.pipeline.serving import ServeConfig, ServerConfig, load_serve_config
from agentfab.pipeline.spec import schema_keys

__all__ = [
    "EmbeddedModel",
    "OpenAIModel",
    "Pipeline",
    "ServeConfig",
    "ServerConfig",
    "build_clients",
    "close_clients",
    "load_pipeline",
    "load_serve_config",
    "schema_keys",
]
