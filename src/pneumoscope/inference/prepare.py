"""From an image source to the network's input: decoded by the project's one loader, resized.

An image is read by :func:`pneumoscope.data.images.decode_image`, exactly as evaluation reads it,
and resized to the network's square. This step is apart from scoring because it runs elsewhere:
the batch CLI decodes in worker processes and sends the small :class:`PreparedImage` back, and
the Predictor scores whatever :func:`prepare_image` made. A grey copy of at most ``DISPLAY_MAX``
pixels a side is kept for display (a heatmap's overlay), unless the caller needs none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from pneumoscope.data.images import DecodedImage, ImageSource, decode_image, to_network

DISPLAY_MAX = 1024
"""Longest side of the image kept for display: a heatmap overlay needs no more, and memory stays small."""


@dataclass(frozen=True)
class PreparedImage:
    """One decoded image, ready for the network; small, so decoding processes can send it back."""

    pixels: np.ndarray
    """uint8 (S, S): the network's input."""
    original_size: tuple[int, int]
    colourfulness: float
    format: str
    display: np.ndarray | None = None
    """uint8 (H, W) grey image as read, at most ``DISPLAY_MAX`` a side; None when not kept."""

    def facts(self) -> DecodedImage:
        """What the out-of-distribution check reads: the file's facts and the network's own pixels
        (not the display copy), so the API and the batch CLI, which keeps no display copy, judge alike."""
        return DecodedImage(self.pixels, self.original_size, self.colourfulness, self.format)


def prepare_image(source: ImageSource, size: int, *, keep_display: bool = True) -> PreparedImage:
    """Decode ``source`` with the one loader, as evaluation does (``reduce_to=size``), and resize it.

    ``reduce_to`` makes a JPEG decode at a reduced DCT scale that keeps ``DRAFT_MARGIN`` times
    ``size`` pixels a side (faster than a full decode and resize, with the same labels: ``bench/fast_paths.py``);
    a numpy array or an already-decoded PIL image has no DCT to scale, so it is resized from full
    resolution (scores then differ slightly from the file's). The resized film is then re-encoded
    as the training copies were (:func:`~pneumoscope.data.images.as_training_copy`).
    """
    decoded = decode_image(source, reduce_to=size)
    pixels = to_network(decoded.grey, size)
    display = _fit_display(decoded.grey) if keep_display else None
    return PreparedImage(pixels, decoded.original_size, decoded.colourfulness, decoded.format, display)


def _fit_display(grey: np.ndarray) -> np.ndarray:
    height, width = grey.shape
    scale = DISPLAY_MAX / max(height, width)
    if scale >= 1.0:
        return grey
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))
