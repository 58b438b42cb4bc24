"""How every report writes a number: percentages, intervals, tables (evaluate, compare, stress,
leakage, the model card). One place, so the same figure reads the same in every document."""

from __future__ import annotations

import math
from typing import Any, Sequence


def _finite(interval: Sequence[float | None]) -> bool:
    return len(interval) == 2 and all(v is not None and math.isfinite(v) for v in interval)


def percent(value: float | None) -> str:
    """``0.9536`` -> ``95.4 %``; None -> ``n/a``."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def interval(bounds: Sequence[float | None], digits: int = 3) -> str:
    """A 95 % interval as ``[0.994, 0.999]``; ``n/a`` when a bound is missing or not finite."""
    return f"[{bounds[0]:.{digits}f}, {bounds[1]:.{digits}f}]" if _finite(bounds) else "n/a"


def points_interval(bounds: Sequence[float | None]) -> str:
    """An interval of a difference of rates, in percentage points: ``[-0.3, +0.1] points``."""
    return f"[{100 * bounds[0]:+.1f}, {100 * bounds[1]:+.1f}] points" if _finite(bounds) else "n/a"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], first_left: bool = True) -> str:
    """A Markdown table: the first column left-aligned (labels), the others right-aligned (figures)."""
    rule = ["---" if first_left and index == 0 else "---:" for index in range(len(header))]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)
