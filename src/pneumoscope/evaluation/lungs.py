"""Where a heatmap's mass lies relative to the lung fields: lung boxes from ``lungs-finder``, and
the share of a map inside them.

``lungs-finder`` (PyPI 1.0.0, the ``heatmaps`` extra; OpenCV < 5) detects each lung as a box with
OpenCV's HOG, LBP and Haar detectors. Its one-call ``get_lungs`` returns a crop, not boxes, and
invents a missing lung by mirroring the other, which would hide the misses we must count. So
:func:`find_lung_boxes` calls its per-lung detectors in the order ``get_lungs`` does (HOG; LBP when
the two HOG boxes overlap sideways; then Haar, then LBP for a lung still missing) and reports a
lung that none found as missing.

Boxes are rectangles, not lung outlines: they include some mediastinum, ribs and, low down, the
diaphragm and heart border. The share of a map inside them is therefore an upper bound of the share
on lung tissue, and must be read against the share of the image the boxes cover (what a uniform
map would score, :func:`area_share`).

Conventions: a box is ``(x, y, width, height)`` in pixels of the image passed in. "Right lung" is
the patient's right, on the image's left as radiographs are displayed (lungs-finder's naming).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pneumoscope.config import HeatmapAuditConfig

Box = tuple[int, int, int, int]
"""``(x, y, width, height)`` in pixels."""

INSTALL_HINT = 'pip install "pneumoscope[heatmaps]"  (lungs-finder 1.0.0 and OpenCV < 5)'


@dataclass(frozen=True)
class LungBoxes:
    """The patient's right and left lung boxes on one image; None where the detectors found none."""

    right: Box | None
    left: Box | None
    shape: tuple[int, int]
    """(H, W) of the image the boxes are on."""

    @property
    def both(self) -> bool:
        """Whether both lungs were found (the hit rate counts these)."""
        return self.right is not None and self.left is not None

    def plausible(self, min_area: float = HeatmapAuditConfig().min_box_area) -> bool:
        """Both found, each at least ``min_area`` of the image, the right lung's box centred in the
        image's left half and the left lung's in its right half (as a frontal film is displayed)."""
        if not self.both:
            return False
        height, width = self.shape
        (rx, _, rw, rh), (lx, _, lw, lh) = self.right, self.left  # type: ignore[misc]
        big = min(rw * rh, lw * lh) >= min_area * height * width
        return big and rx + rw / 2 < width / 2 < lx + lw / 2

    def mask(self) -> np.ndarray:
        """(H, W) bool, True inside either box (their union)."""
        inside = np.zeros(self.shape, dtype=bool)
        for box in (self.right, self.left):
            if box is not None:
                x, y, w, h = box
                inside[max(y, 0) : y + h, max(x, 0) : x + w] = True
        return inside


def _detectors() -> object:
    """The lungs_finder module, or an ImportError that says how to install it."""
    try:
        import lungs_finder
    except ImportError as exc:
        raise ImportError(f"measuring heatmaps against the lungs needs lungs-finder: {INSTALL_HINT}") from exc
    return lungs_finder


def _detect(grey: np.ndarray) -> tuple[Box | None, Box | None]:
    """lungs-finder's own order of detectors (``get_lungs``), keeping a lung that none finds missing."""
    lf = _detectors()
    right, left = lf.find_right_lung_hog(grey), lf.find_left_lung_hog(grey)
    if right is not None and left is not None and abs(right[0] - left[0]) < min(right[2], left[2]):
        right, left = lf.find_right_lung_lbp(grey), lf.find_left_lung_lbp(grey)
    for find_right, find_left in ((lf.find_right_lung_haar, lf.find_left_lung_haar),
                                  (lf.find_right_lung_lbp, lf.find_left_lung_lbp)):
        right = right if right is not None else find_right(grey)
        left = left if left is not None else find_left(grey)
    return right, left


def find_lung_boxes(grey: np.ndarray, side: int = HeatmapAuditConfig().finder_side) -> LungBoxes:
    """The lung boxes of a grey uint8 (H, W) film, in its own pixels.

    The film is resized so that its longer side is ``side`` (see
    :attr:`~pneumoscope.config.HeatmapAuditConfig.finder_side`), searched, and the boxes scaled back.
    """
    import cv2

    grey = np.ascontiguousarray(grey, dtype=np.uint8)
    if grey.ndim != 2:
        raise ValueError(f"a grey (H, W) image is needed, not {grey.shape}")
    height, width = grey.shape
    scale = side / max(height, width)
    resized = cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)

    def back(box: object) -> Box | None:
        if box is None:
            return None
        x, y, w, h = (float(v) / scale for v in box)
        x0, y0 = max(0, round(x)), max(0, round(y))
        x1, y1 = min(width, round(x + w)), min(height, round(y + h))
        return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None

    right, left = _detect(resized)
    return LungBoxes(back(right), back(left), (height, width))


def mass_inside(heatmap: np.ndarray, inside: np.ndarray) -> float:
    """The share of ``heatmap``'s total mass (a non-negative (H, W) map) on the True pixels of
    ``inside``; NaN for an all-zero map (nothing to place)."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.shape != inside.shape:
        raise ValueError(f"map {heatmap.shape} and mask {inside.shape} differ in shape")
    total = float(heatmap.sum())
    return float(heatmap[inside].sum() / total) if total > 0 else float("nan")


def area_share(inside: np.ndarray) -> float:
    """The share of the image the mask covers: what a uniform map would put inside (chance)."""
    return float(np.mean(inside))


def peak_inside(heatmap: np.ndarray, inside: np.ndarray) -> bool:
    """Whether the map's hottest pixel lies inside the mask (the spot a reader's eye goes to)."""
    return bool(inside.flat[int(np.argmax(heatmap))])
