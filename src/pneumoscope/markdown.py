"""How every document writes a number: percentages, intervals, tables (the data summary, evaluate,
compare, stress, leakage, the model card). One place, so the same figure reads the same everywhere."""

from __future__ import annotations

import math
from pathlib import Path
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


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], pad: bool = False) -> str:
    """A Markdown table: the first column left-aligned (labels), the others right-aligned (figures).
    ``pad``: columns padded to line up in a terminal too (what ``data summary`` prints)."""
    cells = [[str(cell) for cell in line] for line in (header, *rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*cells)] if pad else [0] * len(header)

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))) + " |"

    if pad:
        rule = "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|"
    else:
        rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def shown_path(path: str | Path) -> str:
    """A file or folder as a document names it: relative to the working folder when inside it, so a
    regenerated report quotes no machine's absolute paths."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
