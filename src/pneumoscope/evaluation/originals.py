"""Full-resolution originals against their own 224 px training copies: the upload path, measured.

Users upload the original film; the network was trained and validated on 224 px quality-75 JPEG
copies of the same films. Each original here has its copy in the training folder (same class
folder, same file name), so every difference between the two answers is the upload path's doing:
decoding, resizing and compression, not the film. Measured per pair: the label, the probability,
the feature distance of the not-a-chest-X-ray check, and the check's zone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.data.images import IMAGE_SUFFIXES


def original_pairs(originals: str | Path, copies_root: str | Path | None = None) -> list[tuple[Path, Path]]:
    """(original, its 224 px copy) for every original under ``originals/{NORMAL,PNEUMONIA}``; the
    copies are looked up in ``copies_root/{CLASS}/NAME`` (default: the shared data's training folder,
    ``originals/../chest_xray/train``). An original without a copy is skipped."""
    originals = Path(originals)
    copies_root = Path(copies_root) if copies_root else originals.parent / "chest_xray" / "train"
    pairs = []
    for path in sorted(p for p in originals.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        copy = copies_root / path.parent.name / path.name
        if copy.is_file():
            pairs.append((path, copy))
    return pairs


def compare_originals(predictor: Any, pairs: list[tuple[Path, Path]]) -> dict[str, Any]:
    """The answers on each original and on its copy, through ``predictor`` as a user's file would go."""
    if not pairs:
        return {"n": 0}
    full = predictor.predict_many([o for o, _ in pairs])
    small = predictor.predict_many([c for _, c in pairs])
    delta = np.array([abs(a.probability - b.probability) for a, b in zip(full, small)])
    gap = np.array([(a.ood_distance or 0.0) - (b.ood_distance or 0.0) for a, b in zip(full, small)])
    zones = [a.xray_check for a in full]
    return {
        "n": len(pairs),
        "same_label": int(sum(a.label == b.label for a, b in zip(full, small))),
        "max_abs_delta_p": float(delta.max()),
        "mean_abs_delta_p": float(delta.mean()),
        "median_distance_original": float(np.median([a.ood_distance or 0.0 for a in full])),
        "median_distance_copy": float(np.median([b.ood_distance or 0.0 for b in small])),
        "median_distance_gap": float(np.median(gap)),
        "max_distance_gap": float(gap.max()),
        "originals_refused": int(sum(z == "refuse" for z in zones)),
        "originals_cautioned": int(sum(z == "caution" for z in zones)),
        "copies_refused": int(sum(b.xray_check == "refuse" for b in small)),
        "pairs": [{"file": o.name, "p_original": a.probability, "p_copy": b.probability,
                   "distance_original": a.ood_distance, "distance_copy": b.ood_distance, "zone_original": a.xray_check}
                  for (o, _), a, b in zip(pairs, full, small)],
    }


def originals_markdown(result: dict[str, Any]) -> str:
    """The section the stress report prints."""
    if not result.get("n"):
        return ""
    r = result
    return (
        f"## Full-resolution originals against their 224 px copies ({r['n']} pairs)\n\n"
        f"- same label: **{r['same_label']} of {r['n']}**; largest |Δp| {r['max_abs_delta_p']:.3f}, "
        f"mean {r['mean_abs_delta_p']:.4f}\n"
        f"- feature distance, median: original {r['median_distance_original']:.1f}, copy "
        f"{r['median_distance_copy']:.1f} (gap median {r['median_distance_gap']:+.1f}, largest {r['max_distance_gap']:+.1f})\n"
        f"- originals refused as not a chest X-ray: **{r['originals_refused']}**, answered with a caution: "
        f"**{r['originals_cautioned']}** (copies refused: {r['copies_refused']})\n"
    )
