"""Files in, calibrated pneumonia probabilities out: the one scoring path of the evaluation.

Evaluation, comparison, the stress report and the leakage study all score through the
:class:`~pneumoscope.inference.predictor.Predictor`, on ONNX Runtime where it is installed: the
figures they publish come from the code that the app and ``pneumoscope predict`` run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from pneumoscope.data.cache import decode_all
from pneumoscope.models.bundle import Bundle

if TYPE_CHECKING:
    from pneumoscope.inference.prediction import PixelScores


def score_paths(bundle: Bundle, paths: Sequence[str], batch_size: int = 64, progress: bool = True) -> "PixelScores":
    """Probabilities of PNEUMONIA (``.probs``, N) for ``paths`` and, with a subtype head,
    ``.p_bacterial``: decoded by the one loader at the model's size (in parallel, with a progress
    bar), then scored as :meth:`Predictor.predict` scores."""
    from pneumoscope.inference.prediction import PixelScores
    from pneumoscope.inference.predictor import Predictor

    paths = [str(p) for p in paths]
    if not paths:
        empty = np.zeros(0, dtype=np.float64)
        return PixelScores(empty, None, empty if bundle.net.has_subtype else None)
    images = decode_all(paths, bundle.image_size, progress=progress)
    return Predictor.from_bundle(bundle).score_pixels(images, batch_size=batch_size)
