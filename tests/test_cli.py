"""The CLI through a subprocess: bad input is one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOOD = """
agents:
  - {name: a, max_tokens: 8}
  - {name: b, max_tokens: 8}
topology: {kind: star, aggregator: {kind: majority}}
"""


def agentfab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentfab.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


BAD_INPUTS = [
    # (file content, expected fragment of the one error line)
    ("agents: [\n  {name: a", "line 2, column 11: expected ',' or '}'"),
    ("just a string", "expected a mapping with agents and topology"),
    ("", "expected a mapping"),
    ("!!python/object/apply:os.system ['echo pwned']", "could not determine a constructor"),
    (
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n",
        "line 2: YAML aliases (*name) are not allowed",
    ),
    (
        GOOD.replace("max_tokens: 8}", "max_tokns: 8}", 1),
        "agents[0].max_tokns: unknown key; did you mean 'max_tokens'?",
    ),
    (
        GOOD.replace("max_tokens: 8}", "max_tokens: lots}", 1),
        "agents[0].max_tokens: Input should be a valid integer",
    ),
    (GOOD + "run: {rounds: 0}\n", "run.rounds: Input should be greater than or equal to 1"),
    (
        GOOD + "run: {budget: {max_cals: 3}}\n",
        "run.budget.max_cals: unknown key; did you mean 'max_calls'?",
    ),
    (
        GOOD.replace("kind: star,", "kind: starr,"),
        "pipeline.yaml:5: topology.kind: unknown kind 'starr'; did you mean 'star'?",
    ),
    (
        GOOD.replace("{name: b, max_tokens: 8}", "{name: b, model: gpt, max_tokens: 8}"),
        "agents[1].model: unknown name 'gpt'",
    ),
    (
        GOOD.replace("kind: star,", "kind: star, workers: [a, bb],"),
        "topology.workers[1]: unknown name 'bb'; did you mean 'b'?",
    ),
    (
        GOOD.replace("kind: star,", "kind: star, quorum: 5,"),
        "quorum 5 must be between 1 and its 2 inputs",
    ),
    (
        "agents: [{name: a}]\ntopology: {kind: tree, branching: 1}\n",
        "topology.branching: Input should be greater than or equal to 2",
    ),
    (
        "agents: [{name: a}, {name: b}]\ntopology: {kind: custom, edges: [[a, b], [b, a]]}\n",
        "edges form a cycle",
    ),
    (
        "agents: [{name: a}]\ntopology: {kind: custom, edges: [[a, nobody]]}\n",
        "unknown node 'nobody'",
    ),
    (
        "agents: [{name: a}, {name: a}]\ntopology: {kind: chain}\n",
        "agents[1].name: 'a' is used twice",
    ),
    (
        GOOD.replace("agents:", "models:\n  m: {kind: openai, base_url: localhost}\nagents:"),
        "models.m.base_url: 'localhost' is not an http(s):// URL",
    ),
    (
        GOOD.replace("agents:", "models:\n  m: {kind: openai, base_url: ['http://a:1/v1', 'ftp://b/v1'], served_name: s}\nagents:"),
        "models.m.base_url: 'ftp://b/v1' is not an http(s):// URL",
    ),
    (
        GOOD.replace("agents:", "models:\n  default: {kind: openai, served_name: s}\nagents:"),
        "models.default.base_url: required, unless `serving` starts a server named 's' (it starts: none)",
    ),
    (
        GOOD.replace("agents:", "serving: {servers: [{model: default, served_name: t, replicas: 0}]}\nagents:"),
        "serving.servers[0].replicas: Input should be greater than or equal to 1",
    ),
    ("agents: []\ntopology: {kind: chain}\n", "agents: List should have at least 1 item"),
    ("x: " + "[" * 2000 + "]" * 2000, "nested too deeply"),
    (GOOD + "agents: []\n", "line 6: key 'agents' appears twice"),
    ("agents: [{name: a}]\ntopology: {kind: tree, branching: 3, depth: 1000000000}\n", "topology.depth: Input should be less than or equal to 12"),
    (GOOD + "run: {answer_format: letters}\n", "run.answer_format: Input should be 'auto', 'letter'"),
    (GOOD.replace("agents:", "models:\n  openai: {kind: openai, base_url: 'http://127.0.0.1:99999/v1', served_name: m}\nagents:"), "models.openai.base_url: not a valid URL: port 99999 is out of range"),
    (GOOD.replace("agents:", "models:\n  openai: {kind: openai, base_url: 'http://h/v1'}\nagents:"), "models.openai.served_name: Field required"),
    ("agents: [{name: a}, {name: hub}]\ntopology: {kind: star}\n", "two nodes are named 'hub'"),
    ("agents: [{name: a}]\ntopology: {kind: chain}\ntask: [1, 2]\n", "task: Input should be a valid"),
]


@pytest.mark.parametrize(
    ("content", "expected"), BAD_INPUTS, ids=[str(i) for i in range(len(BAD_INPUTS))]
)
def test_bad_pipelines_end_in_one_clear_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(content)
    done = agentfab("validate", str(path))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert expected in done.stderr, done.stderr
    assert str(path) in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3


def test_missing_file_and_directory(tmp_path: Path) -> None:
    missing = agentfab("validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: no such file" in missing.stderr
    folder = agentfab("run", str(tmp_path))
    assert folder.returncode == 2 and "cannot read" in folder.stderr


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("x: " + "y" * 2_000_000)
    done = agentfab("validate", str(path))
    assert done.returncode == 2 and "a pipeline is at most" in done.stderr


def test_run_without_a_task_says_how_to_give_one(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    done = agentfab("run", str(path))
    assert done.returncode == 2 and "pass --task TEXT" in done.stderr


def test_unreachable_endpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "models:\n  remote: {kind: openai, base_url: 'http://127.0.0.1:9/v1', served_name: m,"
        " retries: 1}\n" + GOOD.replace("max_tokens: 8}", "model: remote, max_tokens: 8}")
    )
    done = agentfab("run", str(path), "--task", "hi")
    assert done.returncode == 2, done.stderr
    assert "http://127.0.0.1:9/v1" in done.stderr and "Traceback" not in done.stderr


def test_validate_and_graph_describe_every_example() -> None:
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        done = agentfab("validate", str(example))
        assert done.returncode == 0 and "ok: team" in done.stdout, done.stderr
    text = agentfab("graph", str(ROOT / "examples/groups.yaml")).stdout
    assert "calm [majority] <- careful-1, careful-2, careful-3" in text
    assert "final [majority] <- calm, wild" in text
    mermaid = agentfab("graph", str(ROOT / "examples/star.yaml"), "--format", "mermaid").stdout
    assert mermaid.startswith("flowchart LR") and mermaid.count("-->") == 5


def test_graph_output_that_cannot_be_written(tmp_path: Path) -> None:
    done = agentfab("graph", str(ROOT / "examples/star.yaml"), "--out", str(tmp_path))
    assert done.returncode == 2 and "cannot write" in done.stderr and "Traceback" not in done.stderr


def test_graph_png(tmp_path: Path) -> None:
    out = tmp_path / "team.png"
    done = agentfab("graph", str(ROOT / "examples/tree.yaml"), "--format", "png", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schema_is_json_schema_of_the_pipeline() -> None:
    schema = json.loads(agentfab("schema").stdout)
    assert set(schema["required"]) == {"agents", "topology"}
    kinds = json.dumps(schema["properties"]["topology"])
    for kind in ("star", "chain", "tree", "groups", "custom"):
        assert kind in kinds
