"""Shared fixtures: the real data in ../shared/data, read in place and never copied here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PNEUMOSCOPE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "chest_xray").is_dir():
        pytest.fail(f"shared data not found at {DATA} (set PNEUMOSCOPE_DATA)")
    return DATA


@pytest.fixture(scope="session")
def chest_xray(data_root: Path) -> Path:
    return data_root / "chest_xray"


@pytest.fixture(scope="session")
def originals(data_root: Path) -> Path:
    return data_root / "originals"


@pytest.fixture(scope="session")
def normal_original(originals: Path) -> Path:
    return sorted((originals / "NORMAL").iterdir())[0]


@pytest.fixture(scope="session")
def pneumonia_original(originals: Path) -> Path:
    return sorted((originals / "PNEUMONIA").iterdir())[0]
