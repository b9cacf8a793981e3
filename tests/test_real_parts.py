"""A missing or broken real part fails the tests in CI and skips them, with the reason,
elsewhere (tests/integration/real_parts.py). Broken parts are stand-in packages put first
on the path; the real ones are never touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration import real_parts

ROOT = Path(__file__).resolve().parents[1]
BROKEN = 'raise RuntimeError("operator torchvision::nms does not exist")\n'


@pytest.fixture
def outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("AGENTFAB_REQUIRE_REAL", raising=False)


def stubs(folder: Path, **packages: str) -> Path:
    """A folder of packages `name: source of its __init__`, to go first on PYTHONPATH."""
    for name, source in packages.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(source)
    return folder


@pytest.mark.parametrize(
    ("ci", "require_real", "fails"),
    [("true", None, True), ("1", None, True), (None, "1", True), (None, None, False),
     ("false", None, False)],
)
def test_ci_fails_and_elsewhere_skips_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, require_real: str | None, fails: bool
) -> None:
    for name, value in (("CI", ci), ("AGENTFAB_REQUIRE_REAL", require_real)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(real_parts, "skipped", {})
    outcome = pytest.fail.Exception if fails else pytest.skip.Exception
    with pytest.raises(outcome) as raised:
        real_parts.require("vLLM", "cannot be imported (no module named 'vllm')")
    said = str(raised.value)
    assert "vLLM" in said and "cannot be imported (no module named 'vllm')" in said
    assert ("required in CI" in said) is fails and ("skipped outside CI" in said) is not fails
    expected = {} if fails else {"vLLM": "cannot be imported (no module named 'vllm')"}
    assert real_parts.skipped == expected  # only skips are listed in the session's summary


def test_a_part_that_is_there_neither_fails_nor_skips(outside_ci: None) -> None:
    real_parts.require("vLLM", None)  # returns: nothing raised
    assert real_parts.import_problem(["json", "email.mime.text"]) is None


def test_a_missing_a_broken_and_a_crashing_import_each_say_why(tmp_path: Path) -> None:
    folder = stubs(tmp_path, broken=BROKEN, crashing="import os\nos._exit(7)\n", fine="")
    env = {**os.environ, "PYTHONPATH": str(folder)}
    assert real_parts.import_problem(["fine"], env=env) is None
    assert real_parts.import_problem(["fine", "agentfab_nowhere"], env=env) == (
        "importing agentfab_nowhere raised ModuleNotFoundError: No module named 'agentfab_nowhere'"
    )
    assert real_parts.import_problem(["fine", "broken"], env=env) == (
        "importing broken raised RuntimeError: operator torchvision::nms does not exist"
    )
    crashed = real_parts.import_problem(["crashing"], env=env)
    assert crashed is not None and "exit status 7" in crashed


def pytest_run(tmp_path: Path, target: str, ci: bool, **broken: str) -> subprocess.CompletedProcess[str]:
    """pytest on one real test of this suite, with `broken` packages shadowing the real ones."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "AGENTFAB_REQUIRE_REAL")}
    env["PYTHONPATH"] = os.pathsep.join([str(stubs(tmp_path / "stubs", **broken)), str(ROOT)])
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", target],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )


@pytest.mark.parametrize(
    ("part", "package", "target"),
    [
        ("vLLM", "vllm", "tests/integration/test_serve.py::test_serve_refuses_a_taken_port_and_a_missing_model"),
        ("the embedded model", "torch", "tests/integration/test_team_runs.py::test_sdk_example_runs"),
    ],
)
@pytest.mark.parametrize("ci", [True, False], ids=["CI", "not-CI"])
def test_a_broken_part_fails_the_suite_in_ci_and_is_skipped_with_its_reason_elsewhere(
    tmp_path: Path, part: str, package: str, target: str, ci: bool
) -> None:
    done = pytest_run(tmp_path, target, ci, **{package: BROKEN})
    out = done.stdout
    why = f"importing {package} raised RuntimeError: operator torchvision::nms does not exist"
    assert why in out, out
    if ci:
        assert done.returncode == 1, out
        assert f"{part} is required in CI and" in out and "1 error" in out
        assert "skipped" not in out
    else:
        assert done.returncode == 0, out
        assert "1 skipped" in out and "skipped outside CI; CI=true makes this a failure" in out
        assert "real parts not tested" in out and f"{part}: " in out
