"""The `serving:` section of a pipeline and the file `agentfab serve` reads: vLLM servers
to start, with their replicas and ports. Only the description: `serving/supervisor.py`
starts and watches them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from agentfab.errors import ConfigError
from agentfab.pipeline.spec import Spec, schema_keys
from agentfab.serving.vllm_server import ServerSpec, client_host
from agentfab.yaml_loader import describe, load_yaml

# What a ServerConfig says beyond one server's ServerSpec.
_NOT_SPEC = {"replicas", "model", "port", "extra_args", "placement", "ray_cpus", "ray_gpus"}


class ServerConfig(Spec):
    """One model served by vLLM, possibly as several replicas on consecutive ports."""

    model: str
    """A local folder or a model id; `default` is the embedded SmolLM2-135M folder."""
    served_name: str
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    replicas: int = Field(default=1, ge=1, le=64)
    tensor_parallel_size: int = Field(default=1, ge=1)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_model_len: int | None = Field(default=2048, ge=128)
    dtype: str | None = None
    extra_args: list[str] = []
    """Passed to vLLM as they are, e.g. ["--enforce-eager"]."""
    env: dict[str, str] = {}
    placement: Literal["local", "ray"] = "local"
    """`local`: started on this machine; `ray`: each replica inside a Ray actor on the
    cluster at the config's `ray_address`, placed where its resources are free."""
    ray_cpus: float = Field(default=1.0, ge=0)
    """CPUs each Ray-placed replica reserves."""
    ray_gpus: float | None = Field(default=None, ge=0)
    """GPUs each Ray-placed replica reserves; default: its tensor-parallel size on a cluster
    with GPUs, none on one without."""

    def urls(self) -> list[str]:
        """Where clients reach each replica."""
        host = client_host(self.host)
        return [f"http://{host}:{self.port + i}/v1" for i in range(self.replicas)]


class ServeConfig(Spec):
    """What `agentfab serve` starts and keeps up."""

    servers: list[ServerConfig] = Field(min_length=1)
    log_dir: str = "logs"
    """Each server writes its output to `<log_dir>/<served_name>-<port>.log` (on the node
    that runs it)."""
    ray_address: str = "auto"
    """The Ray cluster of `placement: ray` servers: `auto`, `local` or `HOST:PORT`."""

    def placed(self, where: Literal["local", "ray"]) -> ServeConfig | None:
        """The servers with that placement, or None when there are none."""
        servers = [s for s in self.servers if s.placement == where]
        return self.model_copy(update={"servers": servers}) if servers else None

    def specs(self) -> list[ServerSpec]:
        specs = []
        for server in self.servers:
            model = server.model
            if model == "default":
                from agentfab.serving.default_model import default_model_path

                model = str(default_model_path())
            fields = server.model_dump(exclude=_NOT_SPEC)
            specs += [
                ServerSpec(
                    model=model, port=server.port + i, extra_args=tuple(server.extra_args), **fields
                )
                for i in range(server.replicas)
            ]
        return specs


def load_serve_config(path: str | Path) -> ServeConfig:
    data, node = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with `servers` at the top level")
    try:
        return ServeConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(describe(error, path=path, node=node, keys=schema_keys())) from None
