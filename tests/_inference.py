"""Helpers for the inference tests: one cached Predictor per (model, backend), a colour photograph.

The fixtures built on them (``model_path``, ``predictor``, ``torch_predictor``) are in conftest.py.
"""

from __future__ import annotations

from functools import lru_cache

from pneumoscope.inference.predictor import Predictor


@lru_cache(maxsize=None)
def load_predictor(path: str, backend: str = "auto") -> Predictor:
    return Predictor.load(path, backend=backend)  # type: ignore[arg-type]


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
