"""Counting a collection: images, patients, subtypes, sizes (from headers), duplicates. No plots, no prose."""

from __future__ import annotations

import statistics
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from pneumoscope.config import CLASS_NAMES
from pneumoscope.data.collection import Record
from pneumoscope.data.images import DICOM_SUFFIXES, ImageLoadError, decode_image

EXTREME_ASPECT = 2.0
"""Width/height beyond this (or below its inverse) is listed: the square resize distorts it most."""


def split_summary(records: Sequence[Record]) -> dict[str, Any]:
    """Images, patients and images per patient of one split, per class."""
    images = Counter(record.class_name for record in records)
    per_patient: dict[str, Counter[str]] = {name: Counter() for name in CLASS_NAMES}
    for record in records:
        per_patient[record.class_name][record.patient] += 1
    n_normal, n_pneumonia = images["NORMAL"], images["PNEUMONIA"]
    total = n_normal + n_pneumonia
    subtypes = Counter(record.subtype for record in records)
    pneumonia_patients = {
        subtype: len({r.patient for r in records if r.label == 1 and r.subtype == subtype})
        for subtype in ("bacteria", "virus")
    }
    return {
        "images": {"NORMAL": n_normal, "PNEUMONIA": n_pneumonia, "total": total},
        "normal_share": round(n_normal / total, 4) if total else None,
        "pneumonia_per_normal": round(n_pneumonia / n_normal, 3) if n_normal else None,
        "patients": {
            "NORMAL": len(per_patient["NORMAL"]),
            "PNEUMONIA": len(per_patient["PNEUMONIA"]),
            "total": len({record.patient for record in records}),
        },
        "images_per_patient": {name: per_patient_stats(per_patient[name].values()) for name in CLASS_NAMES},
        "subtypes": {
            "bacteria": subtypes["bacteria"],
            "virus": subtypes["virus"],
            "normal": subtypes["normal"],
            "unknown": subtypes["unknown"],
        },
        "pneumonia_patients_with": pneumonia_patients,
        "unrecognised_patient_ids": sum(1 for record in records if record.patient.startswith("file:")),
    }


def per_patient_stats(counts: Iterable[int]) -> dict[str, Any]:
    counts = list(counts)
    if not counts:
        return {"mean": None, "max": None, "patients_with_several": 0, "distribution": {}}
    distribution = Counter(counts)
    return {
        "mean": round(statistics.fmean(counts), 3),
        "max": max(counts),
        "patients_with_several": sum(1 for count in counts if count > 1),
        "distribution": {str(k): distribution[k] for k in sorted(distribution)},
    }


def subtype_mix(records: Sequence[Record]) -> dict[str, int]:
    """Pneumonia patient ids by the subtypes their images carry.

    A ``personN`` id with both ``bacteria`` and ``virus`` images is either one child labelled
    both ways or two series that share a number; the split keeps such an id together, which is
    the safe reading for leakage.
    """
    subtypes: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.label == 1 and not record.patient.startswith("file:"):
            subtypes[record.patient].add(record.subtype)
    mix = Counter(
        "both" if {"bacteria", "virus"} <= kinds else ("bacteria only" if "bacteria" in kinds else "virus only")
        for kinds in subtypes.values()
    )
    return {key: mix[key] for key in ("bacteria only", "virus only", "both")}


def patients_in_several_splits(found: dict[str, list[Record]]) -> dict[str, Any]:
    """Patient ids present in more than one split: each one leaks between those splits."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for split, records in found.items():
        for record in records:
            if not record.patient.startswith("file:"):
                splits_of[record.patient].add(split)
    shared = sorted(patient for patient, splits in splits_of.items() if len(splits) > 1)
    return {"count": len(shared), "examples": shared[:20]}


def header_sizes(records: Sequence[Record]) -> list[tuple[int, int] | None]:
    """(width, height) of each file from its header, None when the header is unreadable.

    DICOM sizes come from the loader (headers there need pydicom and the loader already knows
    how); everything else from Pillow's lazy open, which reads no pixel data.
    """
    from PIL import Image

    sizes: list[tuple[int, int] | None] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for record in records:
            try:
                if Path(record.path).suffix.lower() in DICOM_SUFFIXES:
                    sizes.append(decode_image(record.path).original_size)
                else:
                    with Image.open(record.path) as image:
                        sizes.append(image.size)
            except (ImageLoadError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                sizes.append(None)
    return sizes


def size_summary(sizes: Sequence[tuple[int, int] | None], records: Sequence[Record], root: Path) -> dict[str, Any]:
    known = [size for size in sizes if size is not None]
    unreadable = [relative(record.path, root) for record, size in zip(records, sizes) if size is None]
    summary: dict[str, Any] = {"read": len(known), "unreadable": len(unreadable), "unreadable_files": unreadable[:20]}
    if not known:
        return summary
    widths = [w for w, _ in known]
    heights = [h for _, h in known]
    common = Counter(known).most_common(5)
    extreme = [
        relative(record.path, root)
        for record, size in zip(records, sizes)
        if size is not None and not 1 / EXTREME_ASPECT <= size[0] / size[1] <= EXTREME_ASPECT
    ]
    summary.update(
        extreme_aspect={"count": len(extreme), "files": extreme[:20]},
        width={"min": min(widths), "median": statistics.median(widths), "max": max(widths)},
        height={"min": min(heights), "median": statistics.median(heights), "max": max(heights)},
        distinct_sizes=len(set(known)),
        most_common=[{"width": w, "height": h, "count": n} for (w, h), n in common],
    )
    return summary


def duplicate_summary(groups: list[list[Record]], root: Path) -> dict[str, Any]:
    """Byte-identical files: harmless within a patient, a leak across splits, an error across labels."""
    return {
        "groups": len(groups),
        "redundant_files": sum(len(group) - 1 for group in groups),
        "across_splits": sum(1 for group in groups if len({r.split for r in group}) > 1),
        "across_classes": sum(1 for group in groups if len({r.label for r in group}) > 1),
        "across_patients": sum(1 for group in groups if len({r.patient for r in group}) > 1),
        "examples": [[relative(r.path, root) for r in group] for group in groups[:20]],
    }


def relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


