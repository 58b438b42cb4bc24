"""Files in, calibrated pneumonia probabilities out: the one scoring path of the evaluation.

Evaluation, comparison and the leakage study all call :func:`score_paths`, so they score
exactly as one another; it is meant to be routed through the Predictor once that exists, so
that evaluation also scores exactly as the app and ``pneumoscope predict`` do.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pneumoscope.data.cache import decode_all
from pneumoscope.models.bundle import Bundle
from pneumoscope.models.forward import forward_images
from pneumoscope.models.decision import sigmoid


def score_paths(bundle: Bundle, paths: Sequence[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """Probabilities (N,) of PNEUMONIA for ``paths``: decoded by the one loader at the model's
    size (in parallel, with a progress bar), then ``sigmoid(logit / temperature)``."""
    paths = [str(p) for p in paths]
    if not paths:
        return np.zeros(0, dtype=np.float64)
    images = decode_all(paths, bundle.image_size, progress=progress)
    chunks = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="predicting", unit="batch")
    logits = np.concatenate(
        [forward_images(bundle.net, images[start : start + batch_size])[0] for start in chunks]
    )
    return sigmoid(logits.astype(np.float64) / bundle.temperature)
