"""Fixtures shared by the inference tests (predictor, explain, ONNX, predict CLI).

The model is the bundled one when ``src/pneumoscope/weights/default`` holds it, else the
development bundle a short training run left in ``/tmp/runs/improved_try``. Predictors are
cached per (model, backend) for the whole session: loading (and, the first time, exporting to
ONNX) is the slow part.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

from pneumoscope.inference.predictor import Predictor
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR

DEV_BUNDLE = Path("/tmp/runs/improved_try")


def find_model() -> Path | None:
    for candidate in (DEFAULT_MODEL_DIR, DEV_BUNDLE):
        if (candidate / "model.json").is_file():
            return candidate
    return None


@lru_cache(maxsize=None)
def load_predictor(path: str, backend: str = "auto") -> Predictor:
    return Predictor.load(path, backend=backend)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def model_path() -> Path:
    found = find_model()
    if found is None:
        pytest.skip(f"no model bundle: neither {DEFAULT_MODEL_DIR} nor {DEV_BUNDLE} exists")
    return found


@pytest.fixture(scope="session")
def predictor(model_path: Path) -> Predictor:
    return load_predictor(str(model_path), "auto")


@pytest.fixture(scope="session")
def torch_predictor(model_path: Path) -> Predictor:
    return load_predictor(str(model_path), "torch")


@pytest.fixture(scope="session")
def some_originals(originals: Path) -> list[Path]:
    """Three NORMAL and three PNEUMONIA full-resolution originals."""
    return sorted((originals / "NORMAL").iterdir())[:3] + sorted((originals / "PNEUMONIA").iterdir())[:3]


def colour_photo():
    """A colour photograph: scikit-image's astronaut, or a synthetic colourful image without it."""
    try:
        from skimage import data

        return data.astronaut()
    except ImportError:
        import numpy as np

        rng = np.random.default_rng(0)
        image = np.zeros((300, 400, 3), dtype=np.uint8)
        image[..., 0] = np.linspace(0, 255, 400, dtype=np.uint8)[None, :]
        image[..., 1] = np.linspace(255, 0, 300, dtype=np.uint8)[:, None]
        image[..., 2] = rng.integers(0, 256, (300, 400), dtype=np.uint8)
        return image
