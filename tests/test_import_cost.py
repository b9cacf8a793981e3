"""Starting is cheap: `import agentfab` and `agentfab validate` load no heavy dependency.

Each check runs in a fresh interpreter (this one has imported everything already) and
reads `sys.modules`; the timings themselves are measured by hand, not asserted here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("httpx", "aiohttp", "networkx", "numpy", "choix", "scipy", "torch", "transformers")
# validate may load networkx alone of them: it builds the team it checks.
NOT_FOR_VALIDATE = ("aiohttp", "httpx", "numpy", "choix", "scipy", "torch", "transformers")


def loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after running `code`."""
    report = "import json, sys; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_agentfab_loads_no_heavy_dependency() -> None:
    assert loaded_after("import agentfab") & set(HEAVY) == set()


@pytest.mark.parametrize("package", ["agentfab", "agentfab.aggregators", "agentfab.evals"])
def test_every_public_name_still_imports(package: str) -> None:
    names = f"__import__({package!r}, fromlist=['*']).__all__"
    code = f"import {package} as p\nfor n in {names}: getattr(p, n)"
    loaded_after(code)  # raises CalledProcessError when a name does not resolve


def test_from_agentfab_import_works_and_run_stays_the_function() -> None:
    code = (
        "from agentfab import Team, Orchestrator, OpenAIClient, Budget, run\n"
        "import agentfab, agentfab.run\n"
        "assert callable(agentfab.run) and agentfab.run is run and run.__name__ == 'run'"
    )
    loaded_after(code)


def test_validate_loads_no_http_client_and_no_model() -> None:
    code = (
        "import sys; from agentfab.cli import main\n"
        "sys.argv = ['agentfab', 'validate', 'examples/star.yaml']\n"
        "assert main() == 0"
    )
    assert loaded_after(code) & set(NOT_FOR_VALIDATE) == set()


def test_help_loads_no_heavy_dependency() -> None:
    code = (
        "import contextlib, io; from agentfab.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])"
    )
    assert loaded_after(code) & set(HEAVY) == set()
