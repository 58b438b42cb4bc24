"""Is this a chest X-ray at all? A network trained only on chest radiographs answers confidently
on anything; these checks decide whether its answer may be shown as a diagnosis.

Two kinds of evidence:
- the file itself: colour (radiographs are grey) and an aspect ratio no chest film has;
- the network's penultimate features: the Mahalanobis distance from the training images'
  feature distribution (Lee et al., 2018), fitted at training time (``models/feature_model``)
  and stored with the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pneumoscope.data.images import DecodedImage
from pneumoscope.models.feature_model import mahalanobis

MAX_COLOURFULNESS = 10.0
"""Hasler-Suesstrunk colourfulness; grey radiographs score ~0, tinted scans a few, photos > 15."""
ASPECT_RANGE = (0.33, 3.5)
"""Width / height: the Kermany originals alone span 1.03 to 2.93, so only absurd shapes are refused."""
MIN_POLARITY = 0.0
"""On a chest film the spine and mediastinum are brighter than the lung fields. Across all 5,216
training images the lowest polarity score is +0.13 and every inverted copy scores below 0:
the network's features alone miss inverted films (per-image normalisation keeps their
statistics familiar), this one line of anatomy catches them (bench/ood.py)."""


CLEARLY_INVERTED = -0.3
"""Polarity below which an image whose features are already far is also called inverted: the 48
originals turned negative score -1.52 to -0.57, random grey noise -0.02 to +0.01."""


Zone = Literal["pass", "caution", "refuse"]
"""What the check says of an image: surely a chest X-ray (the answer), probably one from another
series (the answer with a caution), or surely not (no answer)."""


@dataclass(frozen=True)
class OODVerdict:
    is_chest_xray: bool
    reasons: tuple[str, ...]
    """Why the image is refused (empty unless ``zone`` is ``refuse``)."""
    distance: float | None
    caution: str | None = None
    """Why the answer comes with a caution (``zone`` is ``caution``), naming the distance."""

    @property
    def zone(self) -> Zone:
        return "refuse" if not self.is_chest_xray else "caution" if self.caution else "pass"


def caution_text(distance: float, caution: float, refuse: float) -> str:
    """The caution for a film between the two operating points, with its numbers."""
    return (f"this film lies at the edge of the chest X-rays the model was trained on (feature distance "
            f"{distance:.0f}; cautioned from {caution:.0f}, refused from {refuse:.0f}): it may come from another "
            f"hospital or machine, so read the answer with extra care")


def polarity(grey: np.ndarray) -> float:
    """(mean of the central vertical strip - mean of both lung fields) / contrast, on any size."""
    height, width = grey.shape
    rows = slice(int(0.25 * height), int(0.70 * height))
    values = grey.astype(np.float32)
    lungs = np.concatenate([
        values[rows, int(0.15 * width): int(0.38 * width)].ravel(),
        values[rows, int(0.62 * width): int(0.85 * width)].ravel(),
    ]).mean()
    spine = values[rows, int(0.45 * width): int(0.55 * width)].mean()
    return float((spine - lungs) / (values.std() + 1.0))


INVERTED = ("the image looks inverted (lung fields brighter than the spine): a negative or a MONOCHROME1 "
            "film read the wrong way")


ROTATED = ("the film lies on its side (the spine runs across the image): turn it upright and upload it "
           "again")


def reads_sideways(grey: np.ndarray) -> bool:
    """Whether the polarity score reads better with the image turned a quarter either way: the spine
    then runs across it: true of every validation film turned 90 degrees, of about one clean film in
    a thousand and of a few in a hundred of the stressed pool (crops), whose turned copies read
    further from the training films (``bench/ood.py``, ``--pool`` for the pool)."""
    upright = polarity(grey)
    return max(polarity(np.rot90(grey, 1)), polarity(np.rot90(grey, 3))) > upright


def needs_upright_reading(decoded: DecodedImage) -> bool:
    """Whether :func:`verdict` must also see the film turned upright: a grey film of plausible shape
    that may lie on its side. The network, which never saw a film on its side, answers one anyway,
    and on log features the distance alone refuses only about 70 % of them (``bench/ood_fit.py``)."""
    return not image_reasons(decoded) and reads_sideways(decoded.grey)


def image_reasons(decoded: DecodedImage) -> list[str]:
    """What the file alone says against a chest radiograph: colour, an absurd shape."""
    reasons = []
    if decoded.colourfulness > MAX_COLOURFULNESS:
        reasons.append(f"the image is in colour (colourfulness {decoded.colourfulness:.0f}); radiographs are grey")
    width, height = decoded.original_size
    aspect = width / height
    if not ASPECT_RANGE[0] <= aspect <= ASPECT_RANGE[1]:
        reasons.append(f"aspect ratio {aspect:.2f} is unlike a chest radiograph")
    return reasons


def _reads_inverted(decoded: DecodedImage, far: bool) -> bool:
    """The polarity rule: below zero, or clearly below when the features are already far (noise
    scores about 0, an inverted film well below)."""
    return polarity(decoded.grey) < (CLEARLY_INVERTED if far else MIN_POLARITY)


def _far(distance: float | None, threshold: float | None) -> bool:
    return distance is not None and threshold is not None and distance > threshold


def needs_second_reading(decoded: DecodedImage, distance: float | None, threshold: float | None) -> bool:
    """Whether :func:`verdict` would call this film inverted on polarity alone, so its negative
    must be scored too.

    The polarity score reads the spine in the central strip; a film framed off-centre (a crop that
    leaves the spine at a third of the width) scores below zero without being inverted. Only such
    films, a few in a hundred uploads, pay for a second pass through the network."""
    return not image_reasons(decoded) and _reads_inverted(decoded, _far(distance, threshold))


def verdict(
    decoded: DecodedImage, distance: float | None, threshold: float | None, caution: float | None = None,
    inverse_distance: float | None = None, upright_distance: float | None = None,
) -> OODVerdict:
    """The file checks, the feature distance, then polarity. Polarity is anatomy (spine brighter
    than lungs): it is asked only of a grey image of plausible shape, since on a photograph
    "inverted" would be a false statement about the image; and when the features are already far,
    only a clearly negative score counts (noise scores about 0, an inverted film well below).

    ``inverse_distance``: the feature distance of the film's negative, for a film whose polarity
    is in doubt (:func:`needs_second_reading`). The film is called inverted only if its negative
    also lies closer to the chest X-rays the model knows than the film itself: an inverted film's
    negative is the genuine film, an off-centre genuine film's negative is an inverted one.

    ``upright_distance``: the nearer feature distance of the film turned a quarter either way, for a
    film that may lie on its side (:func:`needs_upright_reading`); it is refused as lying on its side
    when turned it reads closer to the chest X-rays the model knows.

    ``threshold`` refuses; ``caution`` (below it; None: two zones) marks the films between the two
    as answered with a caution: a genuine film from another hospital's series lands there, while
    every non-X-ray corpus the project holds lies beyond ``threshold`` (bench/ood.py)."""
    file_reasons = image_reasons(decoded)
    reasons = list(file_reasons)
    if _far(distance, threshold):
        reasons.append(
            f"the network's features are far from any chest X-ray it was trained on "
            f"(distance {distance:.0f} > {threshold:.0f})"
        )
    if not file_reasons:  # a grey film of a plausible shape: is its anatomy upside down?
        negative_reads_better = inverse_distance is None or distance is None or inverse_distance < distance
        if _reads_inverted(decoded, far=bool(reasons)) and negative_reads_better:
            reasons.insert(0, INVERTED)
        elif upright_distance is not None and distance is not None and upright_distance < distance:
            reasons.insert(0, ROTATED)
    if reasons or distance is None or threshold is None or caution is None or distance <= caution:
        return OODVerdict(not reasons, tuple(reasons), distance)
    return OODVerdict(True, (), distance, caution_text(distance, caution, threshold))
