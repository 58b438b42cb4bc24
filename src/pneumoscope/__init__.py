"""pneumoscope: pneumonia detection on chest X-rays, with explanations, for research and education.

Not a medical device. The public API is lazy so that ``import pneumoscope`` stays cheap:

    from pneumoscope import Predictor, pneumonia_prediction

Beside the predictor, the building blocks the commands are made of are public too, so that the
walkthrough notebook (``notebooks/``) and a learner's own script tell the whole story with the
project's own code rather than a copy of it: reading a collection and splitting it by patient,
training from a config, scoring, perturbing films, the stress report, serving the page. Each
name is the function the corresponding command runs; the README's "Python" section lists them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC: dict[str, tuple[str, str]] = {
    # predicting
    "Predictor": ("pneumoscope.inference.predictor", "Predictor"),
    "Prediction": ("pneumoscope.inference.prediction", "Prediction"),
    "pneumonia_prediction": ("pneumoscope.inference.predictor", "pneumonia_prediction"),
    # the data: folders, patients, splits (`pneumoscope data summary`, `pneumoscope leakage`)
    "records_for": ("pneumoscope.data.collection", "records_for"),
    "read_manifest": ("pneumoscope.data.collection", "read_manifest"),
    "patient_split": ("pneumoscope.data.collection", "patient_split"),
    "image_split": ("pneumoscope.data.collection", "image_split"),
    "find_duplicates": ("pneumoscope.data.collection", "find_duplicates"),
    "link_collection": ("pneumoscope.evaluation.leakage", "link_collection"),
    "load_images": ("pneumoscope.data.cache", "cached_images"),
    "perturb_images": ("pneumoscope.data.perturb", "perturb_images"),
    # training and measuring (`pneumoscope train`, `evaluate`, `stress`)
    "CONFIGS_DIR": ("pneumoscope.config", "CONFIGS_DIR"),
    "load_config": ("pneumoscope.config", "load_config"),
    "train": ("pneumoscope.training", "train"),
    "compute_metrics": ("pneumoscope.evaluation.metrics", "compute_metrics"),
    "run_stress": ("pneumoscope.evaluation.stress", "run_stress"),
    # the web page (`pneumoscope serve`)
    "serve": ("pneumoscope.app.server", "serve"),
}
"""Public name -> (module, attribute), imported on first use: the modules behind them pull in
PyTorch, Lightning or Gradio, which ``import pneumoscope`` alone must not pay for."""

__all__ = [*_PUBLIC, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        module, attribute = _PUBLIC[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'pneumoscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, so that tab completion in a notebook offers them before first use."""
    return sorted(set(globals()) | set(__all__))
