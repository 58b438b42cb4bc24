"""Image sets for measuring the "is this a chest X-ray?" check, all available offline.

- non-X-rays: the sample images scikit-image ships (photos, documents, micrographs, text) that
  need no download, plus generated ones (noise, gradients, rendered text pages, shapes);
- transformed X-rays: real radiographs made implausible (heavily cropped, inverted, rotated 90°),
  which a chest X-ray model should not read as chest X-rays either;
- hard negatives (photos of films on a monitor or lightbox, CT-like slices, document scans,
  drawings): ``hard_negatives`` and ``CORPORA`` from :mod:`pneumoscope.evaluation.hard_negatives`,
  exposed here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, ImageDraw

from pneumoscope.evaluation.hard_negatives import CORPORA, hard_negatives, load_films  # noqa: F401  (exposed here)

SKIMAGE_SAMPLES = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
    "logo", "moon", "page", "retina", "rocket", "text", "microaneurysms",
)


def skimage_images() -> Iterator[tuple[str, np.ndarray]]:
    """The bundled (no-download) scikit-image samples that are 2-D images."""
    import skimage.data

    for name in SKIMAGE_SAMPLES:
        try:
            image = getattr(skimage.data, name)()
        except Exception:  # a sample that would need a download: skip it
            continue
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        if image.ndim in (2, 3) and min(image.shape[:2]) >= 32:
            yield f"skimage:{name}", np.ascontiguousarray(image)


def _document(rng: np.random.Generator, size: tuple[int, int] = (850, 1100)) -> np.ndarray:
    page = Image.new("L", size, 255)
    draw = ImageDraw.Draw(page)
    y = 60
    while y < size[1] - 60:
        words = " ".join("".join(chr(rng.integers(97, 123)) for _ in range(rng.integers(2, 9))) for _ in range(12))
        draw.text((60, y), words, fill=0)
        y += int(rng.integers(14, 30))
    return np.asarray(page)


def generated_images(seed: int = 0, count: int = 8) -> Iterator[tuple[str, np.ndarray]]:
    """Synthetic non-X-rays: noise, gradients, flat fields, rendered documents, shapes, colour."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        yield f"noise-{index}", rng.integers(0, 256, (512, 512), dtype=np.uint8)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:600, 0:600]
        yield f"gradient-{index}", ((np.cos(angle) * xx + np.sin(angle) * yy) % 256).astype(np.uint8)
        yield f"document-{index}", _document(rng)
        shapes = Image.new("RGB", (640, 480), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(shapes)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, 560)), int(rng.integers(0, 400))
            draw.ellipse((x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))),
                         fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        yield f"shapes-{index}", np.asarray(shapes)
        yield f"flat-{index}", np.full((400, 400), int(rng.integers(0, 256)), dtype=np.uint8)


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cropped (central 30 %)": lambda g: g[int(g.shape[0] * 0.35): int(g.shape[0] * 0.65), int(g.shape[1] * 0.35): int(g.shape[1] * 0.65)],
    "inverted": lambda g: 255 - g,
    "rotated 90°": lambda g: np.ascontiguousarray(np.rot90(g)),
}


def non_xray_corpora(data_root: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Every non-X-ray corpus of the project by name, each a list of (name, image): what
    ``bench/ood.py`` reports and ``bench/ood_fit.py`` draws the lines against."""
    corpora = {
        "scikit-image samples": list(skimage_images()),
        "generated (noise, gradients, documents, shapes, flat)": list(generated_images()),
    }
    for name, image in hard_negatives(load_films(data_root)):
        corpora.setdefault(f"hard negatives: {name.split('-')[0]}", []).append((name, image))
    return corpora


def transformed_sets(greys: np.ndarray, count: int = 150, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """``count`` of ``greys`` drawn by ``seed``, through each of :data:`TRANSFORMS`."""
    chosen = [greys[i] for i in np.random.default_rng(seed).choice(len(greys), size=min(count, len(greys)), replace=False)]
    return {name: [transform(g) for g in chosen] for name, transform in TRANSFORMS.items()}
