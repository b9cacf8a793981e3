"""The parts of running on Ray that need no cluster: executor and placement settings, the
URLs of placed replicas handed to the models, `serve --ray`."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentfab import ConfigError, RunSettings
from agentfab.executors import LocalExecutor, RayExecutor
from agentfab.pipeline import load_pipeline, load_serve_config
from agentfab.serving.ray_replicas import with_placement

ROOT = Path(__file__).resolve().parents[1]


def test_the_executor_defaults_to_this_process_and_ray_shares_the_concurrency() -> None:
    assert isinstance(RunSettings().executor, LocalExecutor)
    ray = RunSettings(executor={"kind": "ray", "workers": 3}).executor
    assert isinstance(ray, RayExecutor) and ray.address == "auto"
    assert ray.per_worker(8) == 3  # 8 in flight over 3 workers: 3 each, none left out
    assert RayExecutor(workers=2, concurrency_per_worker=5).per_worker(8) == 5


def test_a_bad_executor_is_one_line_naming_the_field() -> None:
    with pytest.raises(ConfigError, match=r"executor\.ray\.workers"):
        RunSettings(executor={"kind": "ray", "workers": 0})


def test_placed_replicas_urls_reach_the_models_that_name_them() -> None:
    pipeline = load_pipeline(ROOT / "examples/vllm_replicas.yaml")
    assert pipeline.urls("default") == ["http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1"]
    placed = pipeline.with_urls({"smollm2": ["http://10.0.0.7:8000/v1", "http://10.0.0.8:8000/v1"]})
    assert placed.urls("default") == ["http://10.0.0.7:8000/v1", "http://10.0.0.8:8000/v1"]
    assert pipeline.with_urls({"other": ["http://x:1/v1"]}).urls("default") == pipeline.urls(
        "default"
    )


def test_serve_with_ray_places_every_server_and_splits_by_placement(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(
        "servers:\n"
        "  - {model: default, served_name: a, port: 8000}\n"
        "  - {model: default, served_name: b, port: 8100, placement: ray, ray_cpus: 2}\n"
    )
    config = load_serve_config(path)
    here, there = config.placed("local"), config.placed("ray")
    assert here is not None and [s.served_name for s in here.servers] == ["a"]
    assert there is not None and [s.served_name for s in there.servers] == ["b"]
    assert [s.served_name for s in config.specs()] == ["a", "b"]  # placement is not vLLM's
    everywhere = with_placement(config, "10.0.0.1:6379")
    assert everywhere.placed("local") is None and everywhere.ray_address == "10.0.0.1:6379"


def test_an_unknown_placement_is_one_line_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("servers:\n  - {model: default, served_name: a, placement: slurm}\n")
    with pytest.raises(ConfigError, match=r"serve.yaml:2: servers\[0\]\.placement: Input should be .local. or .ray."):
        load_serve_config(path)
