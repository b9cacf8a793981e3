"""`python -m agentfab.serving.default_model` (what `make setup` runs) converts the default
model into the cache; a second call converts nothing and says where the model is."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def convert(cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentfab.serving.default_model"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "AGENTFAB_CACHE": str(cache)},
    )


def test_converts_once_then_only_says_where(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "SmolLM2-135M-Instruct"
    first = convert(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "converting SmolLM2-135M-Instruct" in first.stderr
    assert first.stdout == f"agentfab: the default model is at {folder}\n"
    weights = folder / "model.safetensors"
    assert (folder / "config.json").is_file() and weights.stat().st_size > 100_000_000
    written = weights.stat().st_mtime_ns

    second = convert(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "converting" not in second.stderr
    assert second.stdout == first.stdout
    assert weights.stat().st_mtime_ns == written
