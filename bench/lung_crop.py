"""Issue 20, part 2, the lung-field-crop lever: could cropping each film to its lung boxes undo the
framings that flip the model (central crop 0.7, zoom-out 0.7), before any network is trained on it?

A lung-field-crop member would see, at training and at inference, the region inside the union of
the two lung boxes (``evaluation/lungs.find_lung_boxes``, lungs-finder 1.0.0). It can only undo a
framing if the finder returns the same anatomy on the reframed film as on the film itself. This
measures that on the validation films, with the stress report's own perturbations:
- how often both lungs are found, and found plausibly placed;
- for each reframing, the union box found on the reframed film mapped back to the film's own
  pixels, against the box found on the film itself (intersection over union);
- for the central crop, the share of the film's own lung box that the crop keeps at all.

Run: .venv/bin/python bench/lung_crop.py [--limit N] [--out docs/lung_crop.md]
(needs ``pip install -e ".[heatmaps]"``)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from pneumoscope.data.perturb import central_square, perturb_images  # noqa: E402
from pneumoscope.evaluation.lungs import LungBoxes, find_lung_boxes  # noqa: E402
from pneumoscope.machine import describe  # noqa: E402
from pneumoscope.markdown import percent, table  # noqa: E402
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR  # noqa: E402

Rect = tuple[float, float, float, float]
"""(x0, y0, x1, y1) in the film's own pixels."""

STRENGTH = 0.7
"""The issue's table reads central crop 0.7 and zoom-out 0.7."""


def union(boxes: LungBoxes) -> Rect | None:
    """The rectangle around both lung boxes, or None unless both were found."""
    if not boxes.both:
        return None
    (rx, ry, rw, rh), (lx, ly, lw, lh) = boxes.right, boxes.left  # type: ignore[misc]
    return (min(rx, lx), min(ry, ly), max(rx + rw, lx + lw), max(ry + rh, ly + lh))


def back_from(family: str, rect: Rect, size: int) -> Rect:
    """A rectangle found on the reframed film, in the film's own pixels (perturb.crop_center and
    perturb.zoom_out both keep the square centred: a crop magnifies, a zoom-out shrinks)."""
    offset, side = central_square(size, STRENGTH)
    if family == "crop_center":  # the central ``side`` pixels, resized to ``size``
        return tuple(offset + v * side / size for v in rect)  # type: ignore[return-value]
    return tuple((v - offset) * size / side for v in rect)  # type: ignore[return-value]


def area(rect: Rect) -> float:
    return max(0.0, rect[2] - rect[0]) * max(0.0, rect[3] - rect[1])


def iou(a: Rect, b: Rect) -> float:
    inter = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    shared = area(inter)
    return shared / (area(a) + area(b) - shared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=str(DEFAULT_MODEL_DIR / "split_manifest.csv"))
    parser.add_argument("--limit", type=int, default=None, help="smoke run: this many films")
    parser.add_argument("--out", default=None, help="markdown file for the result")
    args = parser.parse_args()

    from pneumoscope.data.cache import decode_all
    from pneumoscope.data.collection import load_evaluation_set

    data = load_evaluation_set(Path(args.manifest), "val")
    paths = data.paths[: args.limit] if args.limit else data.paths
    images = decode_all(list(paths), 224)
    size = images.shape[1]
    started = time.perf_counter()
    found = {"film": [find_lung_boxes(g) for g in images]}
    for family in ("crop_center", "zoom_out"):
        found[family] = [find_lung_boxes(g) for g in perturb_images(images, family, STRENGTH, 0)]
    seconds = time.perf_counter() - started

    own = [union(b) for b in found["film"]]
    offset, side = central_square(size, STRENGTH)
    crop = (offset, offset, offset + side, offset + side)
    rows = []
    for key, label in (("film", "the film itself"), ("crop_center", "central crop 0.7"), ("zoom_out", "zoom-out 0.7")):
        both = np.mean([b.both for b in found[key]])
        plausible = np.mean([b.plausible() for b in found[key]])
        if key == "film":
            rows.append([label, percent(both), percent(plausible), "", ""])
            continue
        overlaps = np.array([iou(o, back_from(key, union(b), size)) for o, b in zip(own, found[key])
                             if o is not None and b.both])
        rows.append([label, percent(both), percent(plausible),
                     f"{np.median(overlaps):.2f}", percent(np.mean(overlaps >= 0.7))])
    kept = np.array([area((max(o[0], crop[0]), max(o[1], crop[1]), min(o[2], crop[2]), min(o[3], crop[3]))) / area(o)
                     for o in own if o is not None])
    lines = [
        "# The lung-field crop, measured before training on it",
        "",
        "Command: `.venv/bin/python bench/lung_crop.py --out docs/lung_crop.md`",
        "",
        f"{len(images)} validation films of the bundled split at 224 px; lungs-finder 1.0.0 "
        f"({1000 * seconds / (3 * len(images)):.0f} ms a film). Machine: {describe()}.",
        "",
        table(["films", "both lungs found", "plausibly placed", "median IoU with the film's own box",
               "IoU ≥ 0.7"], rows),
        "",
        f"The central crop 0.7 keeps a median {percent(np.median(kept))} of the film's own lung box "
        f"(all of it on {percent(np.mean(kept > 0.999))} of the films): the crop cuts the lungs themselves, "
        "so no crop to the lungs found afterwards can restore what it removed.",
        "",
        "A lung-field crop undoes a reframing only where the finder returns the film's own box on the "
        f"reframed film. It does so (IoU ≥ 0.7) on {rows[1][4]} of the centrally cropped films and "
        f"{rows[2][4]} of the zoomed-out ones: a member fed these crops would see another region of "
        "the same film under each framing, which is the variation it was meant to remove.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
