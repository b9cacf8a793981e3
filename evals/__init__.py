"""The benchmark runner: suites, metrics and reports (see the project's issues)."""
