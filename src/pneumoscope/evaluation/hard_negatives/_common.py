"""Helpers shared by the photographed (:mod:`.photos`) and the drawn (:mod:`.drawn`) hard
negatives: the default font, float-to-uint8 conversion, a fast wide blur and the camera/scanner
pipeline (noise, greyscale, JPEG) every image ends with. Kept apart so neither part imports the other."""

from __future__ import annotations

from io import BytesIO

import numpy as np
from PIL import Image, ImageFont
from scipy import ndimage


def default_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def soft_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur of a 2-D array, computed at a lower resolution (fast)."""
    f, (h, w) = max(1, int(sigma / 3)), image.shape
    small = Image.fromarray(np.asarray(image, np.float32)).resize((max(1, w // f), max(1, h // f)), Image.Resampling.BOX)
    small = ndimage.gaussian_filter(np.asarray(small), sigma / f)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float64)


def finish(photo: np.ndarray, rng: np.random.Generator, noise: float, grey: bool, quality: int) -> np.ndarray:
    """Camera/scanner pipeline: sensor noise, optional greyscale, 8 bits, JPEG round trip."""
    photo = photo + noise * rng.standard_normal(photo.shape, dtype=np.float32) * np.sqrt(np.clip(photo, 0.02, 1))
    if grey and photo.ndim == 3:
        photo = photo @ np.array([0.299, 0.587, 0.114])
    image = Image.fromarray(to_u8(photo))
    if quality < 100:
        buffer = BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        image = Image.open(BytesIO(buffer.getvalue()))
    return np.array(image)
