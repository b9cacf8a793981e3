"""Small statistics for reports: Wilson intervals and correlations of correctness.

Pure functions of counts: nothing here reads a run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["Z95", "correlation_matrix", "mean", "phi", "wilson"]

Z95 = 1.959963984540054
"""The standard normal quantile of a two-sided 95% interval."""


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default).

    `successes` may be fractional (a sum of per-item pass@1 values when items were
    sampled several times); with n = 0 the interval is the whole of [0, 1].
    """
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"wilson: need 0 <= successes <= n, got {successes} of {n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # p itself is always inside; rounding alone can put a bound a hair past it (0 of 3).
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def phi(x: Sequence[bool], y: Sequence[bool]) -> float | None:
    """The phi coefficient (Pearson's r of two 0/1 series); None when either is constant."""
    if len(x) != len(y):
        raise ValueError(f"phi: series of different lengths ({len(x)} and {len(y)})")
    n = len(x)
    a = sum(1 for i, j in zip(x, y, strict=True) if i and j)
    x1, y1 = sum(map(bool, x)), sum(map(bool, y))
    denominator = x1 * (n - x1) * y1 * (n - y1)
    if denominator == 0:
        return None
    return (n * a - x1 * y1) / math.sqrt(denominator)


def correlation_matrix(
    correct: Mapping[str, Mapping[str, bool]],
) -> tuple[list[str], list[list[float | None]], float | None]:
    """Pairwise phi of agents' correctness over the cases both answered.

    `correct` maps agent -> case -> right or wrong. Returns the agents (sorted), the
    matrix (None where undefined) and the mean of the defined off-diagonal pairs.
    """
    names = sorted(correct)
    matrix: list[list[float | None]] = []
    pairs: list[float] = []
    for i, a in enumerate(names):
        row: list[float | None] = []
        for j, b in enumerate(names):
            shared = sorted(set(correct[a]) & set(correct[b]))
            value = phi([correct[a][c] for c in shared], [correct[b][c] for c in shared])
            row.append(value)
            if j > i and value is not None:
                pairs.append(value)
        matrix.append(row)
    return names, matrix, mean(pairs)
