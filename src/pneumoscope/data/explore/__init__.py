"""What is in a chest X-ray collection, before any model sees it: ``pneumoscope data summary``.

The numbers that decide how to train and how to read a score: how imbalanced the classes are
(accuracy means little when one class is three quarters of the images), how many images each
patient contributes (why splits must be made by patient), which files are byte-identical
copies (a copy across a split is a leak), and what sizes arrive (the loader resizes without
keeping the aspect ratio). Everything is written to one folder: ``summary.json`` (all counts),
``summary.md`` (tables, figures and a plain-language reading) and the PNG figures.

Sizes are read from file headers only (``Image.open(...).size`` decodes no pixels), so the
whole pass over 5,232 images takes seconds; only the sample grid decodes, through the one
loader, so it shows exactly what the network is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pneumoscope.data.collection import find_duplicates, scan_collection
from pneumoscope.data.explore import counts, figures as plots, prose

FIGURES = {
    "class_counts": "class_counts.png",
    "images_per_patient": "images_per_patient.png",
    "image_sizes": "image_sizes.png",
    "samples": "samples.png",
}
"""The figures every summary has; ``duplicates.png`` is added only when copies are found."""


def write_summary(root: Path, out: Path) -> dict[str, Any]:
    """Count, plot and describe the collection at ``root`` into ``out``; print the tables.

    ``root`` is a Kaggle-layout root (``train/``, ``val/``, ``test/`` each with ``NORMAL/`` and
    ``PNEUMONIA/``) or a single ``NORMAL/ PNEUMONIA/`` folder (reported as split ``all``).
    Returns the dictionary written to ``summary.json``.
    """
    root, out = Path(root), Path(out)
    found, unknown = scan_collection(root)
    records = [record for split_records in found.values() for record in split_records]
    out.mkdir(parents=True, exist_ok=True)

    sizes = counts.header_sizes(records)
    duplicate_groups = find_duplicates(records)
    summary: dict[str, Any] = {
        "root": str(root),
        "layout": "single folder" if "all" in found else "splits",
        "splits": {split: counts.split_summary(split_records) for split, split_records in found.items()},
        "unrecognised_patient_ids": unknown,
        "pneumonia_patients_by_subtype": counts.subtype_mix(records),
        "patients_in_several_splits": counts.patients_in_several_splits(found),
        "image_sizes": counts.size_summary(sizes, records, root),
        "duplicates": counts.duplicate_summary(duplicate_groups, root),
    }
    if len(found) > 1:
        summary["overall"] = counts.split_summary(records)

    figures = dict(FIGURES)
    plots.plot_class_counts(summary, out / figures["class_counts"])
    plots.plot_images_per_patient(records, out / figures["images_per_patient"])
    plots.plot_sizes(sizes, records, out / figures["image_sizes"])
    summary["samples"] = plots.plot_samples(found, root, out / figures["samples"])
    if duplicate_groups:
        figures["duplicates"] = "duplicates.png"
        plots.plot_duplicates(duplicate_groups, root, out / figures["duplicates"])
    summary["figures"] = figures

    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tables = prose.tables(summary)
    (out / "summary.md").write_text(prose.markdown(summary, tables), encoding="utf-8")
    print(f"collection: {root}")
    print("\n\n".join(tables.values()))
    print("\n".join(prose.facts(summary)))
    print(f"wrote {out / 'summary.md'}, summary.json and {len(figures)} figures")
    return summary


