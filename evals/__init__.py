"""The benchmark runner: suites, code execution, metrics and reports.

- `load_suite` reads a known suite (`SUITES`: GPQA-style multiple choice, HumanEval code)
  or a .csv / .jsonl file;
- `agentfab.evals.runner` runs a pipeline's team on every item beside its baselines,
  appending one record per item to `results.jsonl` (`agentfab eval`);
- `agentfab.evals.report` turns run folders into summary.json, report.md, figures and
  side-by-side tables (`agentfab report`);
- `extract_code`, `humaneval_program`, `pass_at_k` and the sandbox judge code; `wilson`
  and `phi` are the statistics the reports use.

Every name here is imported on first use, so the execution-consensus aggregator, which
imports `agentfab.evals.code`, does not load the suites with it. The runner and the
reports are not named here: the aggregators import this package's code helpers, and the
runner imports the aggregators.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentfab.lazy import exports

if TYPE_CHECKING:
    from agentfab.evals.code import extract_code, humaneval_program, pass_at_k
    from agentfab.evals.sandbox import Outcome, run_python, run_python_async
    from agentfab.evals.stats import correlation_matrix, phi, wilson
    from agentfab.evals.suites import SUITES, Item, Suite, load_suite

__all__ = [
    "SUITES",
    "Item",
    "Outcome",
    "Suite",
    "correlation_matrix",
    "extract_code",
    "humaneval_program",
    "load_suite",
    "pass_at_k",
    "phi",
    "run_python",
    "run_python_async",
    "wilson",
]

_HOMES = {
    "extract_code": "agentfab.evals.code",
    "humaneval_program": "agentfab.evals.code",
    "pass_at_k": "agentfab.evals.code",
    "Outcome": "agentfab.evals.sandbox",
    "run_python": "agentfab.evals.sandbox",
    "run_python_async": "agentfab.evals.sandbox",
    "correlation_matrix": "agentfab.evals.stats",
    "phi": "agentfab.evals.stats",
    "wilson": "agentfab.evals.stats",
    "SUITES": "agentfab.evals.suites",
    "Item": "agentfab.evals.suites",
    "Suite": "agentfab.evals.suites",
    "load_suite": "agentfab.evals.suites",
}

__getattr__, __dir__ = exports(__name__, _HOMES, __all__)
