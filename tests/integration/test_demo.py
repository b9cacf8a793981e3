"""The first run a newcomer sees: the README's YAML team and its Python twin agree."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_yaml_demo_and_the_sdk_example_are_one_team_with_one_answer() -> None:
    cli = subprocess.run(
        [sys.executable, "-m", "agentfab.cli", "run", str(ROOT / "examples/star.yaml"), "--json"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    result = json.loads(cli.stdout)
    sdk = subprocess.run(
        [sys.executable, str(ROOT / "examples/sdk_star.py")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert sdk.returncode == 0, sdk.stderr
    rows = [line.split() for line in sdk.stdout.strip().splitlines()[:-1]]
    assert [(r[0], r[1]) for r in rows] == [
        (m["id"], str(m["answer"]).split()[0]) for m in result["messages"]
    ]
    assert sdk.stdout.strip().splitlines()[-1] == f"answer: {result['answer']}"
    # The demo shows a team deciding what the model can decide (measured on 20 seeds).
    assert result["answer"] == "paris"
