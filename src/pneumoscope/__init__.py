"""pneumoscope: pneumonia detection on chest X-rays, with explanations, for research and education.

Not a medical device. The public API is lazy so that ``import pneumoscope`` stays cheap:

    from pneumoscope import Predictor, pneumonia_prediction
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Predictor", "Prediction", "pneumonia_prediction", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Prediction":
        from pneumoscope.inference.prediction import Prediction

        return Prediction
    if name in ("Predictor", "pneumonia_prediction"):
        from pneumoscope.inference import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'pneumoscope' has no attribute {name!r}")
