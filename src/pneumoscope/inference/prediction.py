"""What scoring answers: the result for one image, and the raw scores of a batch.

Kept apart from the code that computes them so that whoever only reads results (the app's cards,
the batch CSV, the tests) imports no loading or scoring machinery. :class:`Prediction` is the
one result the CLI, the web app and the Python API hand out; :meth:`Prediction.to_dict`
(``RESULT_FIELDS``) is what JSON, CSV and the web API show. An image that does not look like a
chest X-ray still gets its label, but ``is_chest_xray`` is False and its ``warnings`` end with
``NOT_A_DIAGNOSIS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

REFUSED_LABEL = "NOT A CHEST X-RAY"
"""What a results table says in ``label`` for an image the check refuses: its network output is no answer."""
ERROR_LABEL = "ERROR"
"""What a results table says in ``label`` for a file that could not be read."""
NOT_A_DIAGNOSIS = (
    "this does not look like a chest X-ray: the label is the network's raw output and must not be "
    "read as a diagnosis"
)
HEATMAP_OFF_LUNGS = ("On validation films labelled PNEUMONIA, most of the heat fell outside the lung fields: "
                     "the map does not show where the pneumonia is.")
"""Said under every PNEUMONIA-labelled map (the app's caption, ``predict --heatmaps``): measured by
``bench/heatmap_lungs.py`` (docs/heatmaps.md), where such maps put about as much of their mass
inside lungs-finder's lung boxes as a uniform map would, and their hottest point outside them on
most films."""


@dataclass(frozen=True)
class Prediction:
    """The result for one image. Arrays are left out of equality and ``repr``; :meth:`to_dict` is
    what JSON, CSV and the web API show."""

    label: str
    """``"NORMAL"`` or ``"PNEUMONIA"``; when ``is_chest_xray`` is False, not a diagnosis."""
    probability: float
    """Calibrated probability of pneumonia."""
    threshold: float
    """The model's decision threshold: PNEUMONIA when ``probability >= threshold``."""
    is_chest_xray: bool
    warnings: tuple[str, ...] = ()
    """Why the image does not look like a chest X-ray (empty when it does), then a note that the label is no diagnosis."""
    ood_distance: float | None = None
    """Mahalanobis distance of the network's features from the training images' (None without OOD statistics)."""
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Grad-CAM for the predicted class (what raised the pneumonia score for PNEUMONIA, what lowered
    it for NORMAL), float32 (H, W) in [0, 1] relative to this image's strongest region, at the size
    of :attr:`image`."""
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The grey image as read (uint8 (H, W), at most ``DISPLAY_MAX`` pixels a side), for display;
    with a heatmap and no display copy kept (the batch CLI), the network's input."""
    subtype: str | None = None
    """``"bacterial"`` or ``"viral"``: which pattern the film is more typical of. Only for a film
    labelled PNEUMONIA that passes as a chest X-ray, by a model with a subtype head; else None."""
    p_bacterial: float | None = None
    """Calibrated probability of a bacterial rather than viral pattern (None whenever ``subtype`` is)."""
    xray_check: str = "pass"
    """The not-a-chest-X-ray check's zone: ``pass``; ``caution`` (a chest X-ray at the edge of the
    training films, answered with :attr:`caution`); ``refuse`` (``is_chest_xray`` is False)."""
    caution: str | None = None
    """Why the answer needs extra care (``xray_check`` is ``caution``), with the feature distance."""

    @cached_property
    def overlay(self) -> Image.Image | None:
        """The heatmap blended over the image in colour (RGB); drawn when first asked for (the web
        page draws its own at the opacity chosen, and a 700 px overlay costs ~8 ms)."""
        if self.heatmap is None or self.image is None:
            return None
        from pneumoscope.inference.explain import overlay_heatmap

        return overlay_heatmap(self.image, self.heatmap)

    @property
    def subtype_pattern(self) -> str | None:
        """The subtype in words, as a pattern and not a diagnosis, with the probability of that pattern."""
        if self.subtype is None or self.p_bacterial is None:
            return None
        p = self.p_bacterial if self.subtype == "bacterial" else 1.0 - self.p_bacterial
        return f"pattern more typical of {self.subtype} pneumonia (p = {p:.2f})"

    def to_dict(self) -> dict[str, Any]:
        """The result without arrays (``RESULT_FIELDS``), for JSON and CSV."""
        values = {name: getattr(self, name) for name in RESULT_FIELDS}
        values["warnings"] = list(self.warnings)
        return values


RESULT_FIELDS = ("label", "probability", "threshold", "is_chest_xray", "xray_check", "caution", "warnings", "ood_distance", "subtype",
                 "p_bacterial", "subtype_pattern")
"""What :meth:`Prediction.to_dict` holds, in order: the API's and the page's result fields."""


class PixelScores(NamedTuple):
    """:meth:`~pneumoscope.inference.predictor.Predictor.score_pixels`' answer for N images."""

    probs: np.ndarray
    """Calibrated pneumonia probabilities (N,)."""
    ood: np.ndarray | None
    """Whether each image's features are too far from the training images' (None without statistics)."""
    p_bacterial: np.ndarray | None
    """Calibrated bacterial-vs-viral probabilities (N,), None without a subtype head."""
    distances: np.ndarray | None = None
    """The feature distances themselves (N,), for the check's zones (None without statistics)."""
    cautioned: np.ndarray | None = None
    """Whether each distance lies in the caution zone (None: the model has two zones only)."""


@dataclass(frozen=True)
class Scores:
    """What one pass over a batch gives (a :class:`~pneumoscope.inference.scoring.Scorer`'s answer):
    pneumonia logits (B,), subtype logits (B,) or None (no head), OOD distances (B,) or None (no
    statistics). Raw network outputs: the Predictor calibrates them and decides."""

    logits: np.ndarray
    subtype: np.ndarray | None
    distances: np.ndarray | None

    def row(self, index: int) -> tuple[float, float | None, float | None]:
        """Image ``index``'s ``(logit, subtype logit, distance)`` as Python floats."""
        pick = lambda values: None if values is None else float(values[index])  # noqa: E731
        return float(self.logits[index]), pick(self.subtype), pick(self.distances)
