"""Shared fixtures: the real data in ../shared/data, read in place and never copied here, and the
bundled model, loaded once per backend for the whole session (loading, and the first time
exporting to ONNX, is the slow part)."""

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


@pytest.fixture(scope="session")
def small_collection(chest_xray: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Kaggle-layout tree of *symlinks* to real training images (nothing copied):
    the first 60 patients of each class, enough for a training run to take seconds."""
    from pneumoscope.data.collection import patient_of

    root = tmp_path_factory.mktemp("small") / "chest_xray"
    for class_name in ("NORMAL", "PNEUMONIA"):
        target = root / "train" / class_name
        target.mkdir(parents=True)
        patients: set[str] = set()
        for path in sorted((chest_xray / "train" / class_name).iterdir()):
            patient, _ = patient_of(path.name)
            if patient not in patients and len(patients) >= 60:
                continue
            patients.add(patient)
            (target / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="session")
def model_path() -> Path:
    from pneumoscope.models.bundle import DEFAULT_MODEL_DIR

    if not (DEFAULT_MODEL_DIR / "model.json").is_file():
        pytest.fail(f"the bundled model is missing from {DEFAULT_MODEL_DIR}")
    return DEFAULT_MODEL_DIR


@pytest.fixture(scope="session")
def predictor(model_path: Path):
    from _inference import load_predictor

    return load_predictor(str(model_path), "auto")


@pytest.fixture(scope="session")
def torch_predictor(model_path: Path):
    from _inference import load_predictor

    return load_predictor(str(model_path), "torch")


@pytest.fixture(scope="session")
def some_originals(originals: Path) -> list[Path]:
    """Three NORMAL and three PNEUMONIA full-resolution originals."""
    return sorted((originals / "NORMAL").iterdir())[:3] + sorted((originals / "PNEUMONIA").iterdir())[:3]


@pytest.fixture(scope="session")
def served(model_path: Path):
    """One running app on the bundled model for every server test that needs no special option
    (test_app, test_hostile): each start costs seconds, and CI starts as few as it can."""
    from _server import running_app

    with running_app(model=str(model_path), warm_up=False) as running:
        yield running
