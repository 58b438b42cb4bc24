"""Seeded changes of *acquisition*, not of anatomy, applied to network-sized uint8 images.

In the training folder, how a film was taken (framing, horizontal squeeze, sharpness left after
downsampling) predicts its label; in other hospitals it does not. A radiologist's answer does not
change when a film is collimated tighter, squeezed, softened, darkened or rotated a little, so a
model's answer should not either. These functions make such copies of validation images for the
stress report (``pneumoscope stress``) and for choosing the checkpoint and the threshold.

Every family has three graded strengths (mild, moderate, strong). Every copy is deterministic
given ``seed`` and the image's index, so two runs of the report compare the same images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from PIL import Image, ImageFilter

from pneumoscope.data.images import resize_square

Perturb = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _crop_resize(grey: np.ndarray, left: int, top: int, width: int, height: int) -> np.ndarray:
    """A window of the film stretched back to the square by the loader's own resize."""
    return resize_square(np.ascontiguousarray(grey[top : top + height, left : left + width]), grey.shape[0])


def central_square(size: int, fraction: float) -> tuple[int, int]:
    """(offset, side) of the centred square ``fraction`` of a ``size`` square: what a central crop
    keeps and where a zoom-out puts the shrunk film (and what maps a box found on either back)."""
    side = max(8, round(size * fraction))
    return (size - side) // 2, side


def crop_center(grey: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Tighter collimation: keep the central ``fraction`` of each side, resized back."""
    offset, side = central_square(grey.shape[0], fraction)
    return _crop_resize(grey, offset, offset, side, side)


def crop_offcentre(grey: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Tighter *and* off-centre: the kept square touches a random corner's two edges."""
    size = grey.shape[0]
    side = max(8, round(size * fraction))
    left, top = (int(rng.integers(0, 2)) * (size - side) for _ in range(2))
    return _crop_resize(grey, left, top, side, side)


def zoom_out(grey: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Wider field: the film shrunk to ``fraction`` of each side, centred on black (an unexposed border)."""
    offset, side = central_square(grey.shape[0], fraction)
    out = np.zeros_like(grey)
    out[offset : offset + side, offset : offset + side] = resize_square(grey, side)
    return out


def aspect(grey: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Another horizontal squeeze: one axis cropped to 1/``factor`` and stretched back (which axis: random).

    A film of width/height w is squeezed by w when resized to the square, so films of other shapes
    reach the network with their anatomy stretched differently.
    """
    size = grey.shape[0]
    kept = max(8, round(size / factor))
    offset = (size - kept) // 2
    if rng.integers(0, 2):
        return _crop_resize(grey, offset, 0, kept, size)
    return _crop_resize(grey, 0, offset, size, kept)


def resolution(grey: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Less detail: downsampled to ``fraction`` of the side (area average), then back up."""
    size = grey.shape[0]
    small = max(8, round(size * fraction))
    reduced = np.asarray(Image.fromarray(grey).resize((small, small), Image.Resampling.BOX))
    return resize_square(reduced, size)


def gamma(grey: np.ndarray, value: float, rng: np.random.Generator) -> np.ndarray:
    """Exposure: gamma ``value`` or 1/``value`` (darker or brighter film, at random)."""
    g = value if rng.integers(0, 2) else 1.0 / value
    return np.round(255.0 * (grey / 255.0) ** g).astype(np.uint8)


def contrast(grey: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    """Contrast around the mean, multiplied by ``factor`` or 1/``factor`` (flatter or harsher), clipped."""
    c = factor if rng.integers(0, 2) else 1.0 / factor
    mean = grey.mean()
    return np.clip(np.round((grey - mean) * c + mean), 0, 255).astype(np.uint8)


def blur(grey: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A softer detector or screen: Gaussian blur of ``radius`` pixels."""
    return np.asarray(Image.fromarray(grey).filter(ImageFilter.GaussianBlur(radius)))


def noise(grey: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Quantum noise: Gaussian with ``std`` as a fraction of the full range."""
    noisy = grey + rng.normal(0.0, std * 255.0, grey.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def jpeg(grey: np.ndarray, quality: float, rng: np.random.Generator) -> np.ndarray:
    """Re-compression as a PACS export or a messaging app would: JPEG at ``quality``."""
    buffer = io.BytesIO()
    Image.fromarray(grey).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))


def rotate(grey: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """A child not lying straight: rotation by ±``degrees`` (sign at random), corners black."""
    angle = degrees if rng.integers(0, 2) else -degrees
    return np.asarray(Image.fromarray(grey).rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=0))


@dataclass(frozen=True)
class Family:
    """One kind of perturbation and its three strengths, mildest first."""

    name: str
    apply: Perturb
    strengths: tuple[float, float, float]
    unit: str


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("crop_center", crop_center, (0.9, 0.8, 0.7), "fraction of each side kept"),
        Family("crop_offcentre", crop_offcentre, (0.9, 0.8, 0.7), "fraction of each side kept"),
        Family("zoom_out", zoom_out, (0.9, 0.8, 0.7), "film side within the black frame"),
        Family("aspect", aspect, (1.15, 1.3, 1.5), "stretch factor of one axis"),
        Family("resolution", resolution, (0.6, 0.45, 0.3), "fraction of the side kept"),
        Family("gamma", gamma, (1.25, 1.5, 2.0), "gamma (or its inverse)"),
        Family("contrast", contrast, (1.25, 1.5, 2.0), "contrast factor (or its inverse)"),
        Family("blur", blur, (0.75, 1.25, 2.0), "Gaussian radius, px"),
        Family("noise", noise, (0.02, 0.04, 0.08), "std, fraction of range"),
        Family("jpeg", jpeg, (50, 30, 15), "JPEG quality"),
        Family("rotate", rotate, (5, 10, 15), "degrees"),
    )
}

CROP_FAMILIES = ("crop_center", "crop_offcentre")

STRESSED_SET: tuple[tuple[str, float], ...] = (
    *((family, strength) for family in CROP_FAMILIES for strength in FAMILIES[family].strengths),
    *((f.name, f.strengths[1]) for f in FAMILIES.values() if f.name not in CROP_FAMILIES),
)
"""The stressed validation set of the targets: every crop strength (0.9-0.7) and every other family
at its moderate strength, pooled with the clean images."""


def stressed_pool(
    clean: np.ndarray, by_condition: Mapping[tuple[str, float], np.ndarray], labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The stressed validation pool of per-film values (scores, probabilities): the clean films, then
    each condition of ``STRESSED_SET`` in its order, with the labels repeated to match. One place, so
    the stress report and the levers study (bench/ensemble_levers.py) pool the same films the same way."""
    return (np.concatenate([clean, *(by_condition[c] for c in STRESSED_SET)]),
            np.tile(labels, len(STRESSED_SET) + 1))


SELECTION_SET: tuple[tuple[str, float], ...] = (
    ("crop_center", 0.8),
    ("crop_offcentre", 0.7),
    ("aspect", 1.3),
    ("resolution", 0.45),
)
"""The copies that pick the checkpoint during training (with the clean images): the acquisition
cues this data set leaks (framing, squeeze, sharpness), kept few so each epoch's check stays short."""


def one_stressed_copy(
    images: np.ndarray, conditions: tuple[tuple[str, float], ...], seed: int = 0
) -> np.ndarray:
    """One perturbed copy of each image, its condition drawn at random from ``conditions`` (seeded):
    the stressed pool's variety at the cost of one copy, for fitting on training images."""
    drawn = np.random.default_rng(seed).integers(0, len(conditions), len(images))
    out = np.empty_like(images)
    for index, (family, strength) in enumerate(conditions):
        chosen = np.flatnonzero(drawn == index)
        if len(chosen):
            out[chosen] = perturb_images(images[chosen], family, strength, seed)
    return out


def perturb_images(images: np.ndarray, family: str, strength: float, seed: int = 0) -> np.ndarray:
    """Perturbed copies of uint8 ``images`` (N, S, S); image ``i`` always gets the same random draw."""
    if family not in FAMILIES:
        raise ValueError(f"unknown perturbation family {family!r}; known: {', '.join(FAMILIES)}")
    apply = FAMILIES[family].apply
    key = sum(map(ord, family))
    out = np.empty_like(images)
    for index, grey in enumerate(images):
        rng = np.random.default_rng((seed, key, index))
        out[index] = apply(np.ascontiguousarray(grey), float(strength), rng)
    return out


def stressed_copies(
    images: np.ndarray, labels: np.ndarray, conditions: tuple[tuple[str, float], ...], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The clean images followed by one perturbed copy per condition, and the matching labels."""
    stacks = [images] + [perturb_images(images, family, strength, seed) for family, strength in conditions]
    return np.concatenate(stacks), np.tile(labels, len(stacks))
