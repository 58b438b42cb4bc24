"""A short run of bench/load.py: the app keeps answering under concurrent load, with flat memory
and no uploads left behind (the full run, 500 requests from 8 clients, is in docs/load.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "load.py"


def _bench():
    spec = importlib.util.spec_from_file_location("pneumoscope_bench_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_short_load_run(data_root: Path) -> None:
    load = _bench()
    report = load.run(requests=60, clients=4, log=lambda *args: None)
    print(report.text())
    assert report.valid_errors == []
    assert report.broken_sent > 0 and report.broken_errors == report.broken_sent
    assert report.growth_mb < load.MAX_GROWTH_MB
    assert report.uploads_left == [] and report.folder_removed
    assert report.ok
