"""The data summary in words: the tables it prints and the Markdown it writes, read from the counts."""

from __future__ import annotations

from typing import Any, Sequence

from pneumoscope.config import CLASS_NAMES
from pneumoscope.data.explore.counts import EXTREME_ASPECT
from pneumoscope.markdown import table

SMALL_SPLIT = 100
"""Below this many images a split cannot choose a threshold or rank models: say so."""


def _n(value: int | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _padded(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table that also lines up in a terminal (the summary prints its tables)."""
    return table(headers, rows, pad=True)


def _rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = list(summary["splits"].items())
    if "overall" in summary:
        rows.append(("all splits", summary["overall"]))
    return rows


def tables(summary: dict[str, Any]) -> dict[str, str]:
    images = _padded(
        ["images", "NORMAL", "PNEUMONIA", "total", "NORMAL share", "PNEUMONIA per NORMAL"],
        [
            [
                split,
                _n(info["images"]["NORMAL"]),
                _n(info["images"]["PNEUMONIA"]),
                _n(info["images"]["total"]),
                "-" if info["normal_share"] is None else f"{100 * info['normal_share']:.1f} %",
                "-" if info["pneumonia_per_normal"] is None else f"{info['pneumonia_per_normal']:.2f}",
            ]
            for split, info in _rows(summary)
        ],
    )
    patients = _padded(
        ["patients", "NORMAL", "PNEUMONIA", "img/patient NORMAL mean (max)", "img/patient PNEUMONIA mean (max)",
         "patients with >1 image"],
        [
            [
                split,
                _n(info["patients"]["NORMAL"]),
                _n(info["patients"]["PNEUMONIA"]),
                *(_mean_max(info["images_per_patient"][name]) for name in CLASS_NAMES),
                _n(sum(info["images_per_patient"][name]["patients_with_several"] for name in CLASS_NAMES)),
            ]
            for split, info in _rows(summary)
        ],
    )
    subtypes = _padded(
        ["pneumonia subtype", "bacterial images", "viral images", "bacterial patients", "viral patients"],
        [
            [
                split,
                _n(info["subtypes"]["bacteria"]),
                _n(info["subtypes"]["virus"]),
                _n(info["pneumonia_patients_with"]["bacteria"]),
                _n(info["pneumonia_patients_with"]["virus"]),
            ]
            for split, info in _rows(summary)
        ],
    )
    distribution = _padded(
        ["patients with N images", *(label for label, _, _ in _BUCKETS)],
        [
            [f"{split} {name}", *_bucketed(info["images_per_patient"][name]["distribution"])]
            for split, info in summary["splits"].items()
            for name in CLASS_NAMES
        ],
    )
    return {"images": images, "patients": patients, "distribution": distribution, "subtypes": subtypes}


_BUCKETS = [("1", 1, 1), ("2", 2, 2), ("3", 3, 3), ("4", 4, 4), ("5-9", 5, 9), ("10+", 10, 10**9)]
"""Columns of the images-per-patient table (summary.json keeps every count)."""


def _bucketed(distribution: dict[str, int]) -> list[str]:
    return [
        _n(sum(count for k, count in distribution.items() if low <= int(k) <= high))
        for _, low, high in _BUCKETS
    ]


def _mean_max(stats: dict[str, Any]) -> str:
    return "-" if stats["mean"] is None else f"{stats['mean']:.2f} ({stats['max']})"


def facts(summary: dict[str, Any]) -> list[str]:
    """One-line facts printed under the tables (and listed in summary.md)."""
    sizes, dups = summary["image_sizes"], summary["duplicates"]
    lines = [f"file names with no recognised patient id: {summary['unrecognised_patient_ids']:,}"]
    if summary["layout"] == "splits":
        lines.append(f"patient ids in more than one split: {summary['patients_in_several_splits']['count']:,}")
    mix = summary["pneumonia_patients_by_subtype"]
    lines.append(
        f"pneumonia patient ids: {mix['bacteria only']:,} bacterial only, {mix['virus only']:,} viral only, "
        f"{mix['both']:,} with both"
    )
    lines.append(
        f"duplicates (identical bytes): {dups['groups']:,} groups, {dups['redundant_files']:,} redundant files "
        f"({dups['across_splits']:,} groups across splits, {dups['across_classes']:,} across classes, "
        f"{dups['across_patients']:,} across patients)"
    )
    if sizes.get("read"):
        if sizes["distinct_sizes"] == 1:
            common = sizes["most_common"][0]
            lines.append(f"image sizes: all {sizes['read']:,} are {common['width']} x {common['height']}")
        else:
            lines.append(
                f"image sizes: width {_n(sizes['width']['min'])}-{_n(sizes['width']['max'])} "
                f"(median {_n(sizes['width']['median'])}), height {_n(sizes['height']['min'])}-"
                f"{_n(sizes['height']['max'])} (median {_n(sizes['height']['median'])}), "
                f"{sizes['distinct_sizes']:,} distinct sizes"
            )
    if sizes.get("extreme_aspect", {}).get("count"):
        extreme = sizes["extreme_aspect"]
        lines.append(
            f"images with width/height beyond {EXTREME_ASPECT:g}:1 either way: {extreme['count']:,} "
            f"({', '.join(extreme['files'][:3])}{', ...' if extreme['count'] > 3 else ''})"
        )
    if sizes["unreadable"]:
        lines.append(f"files whose header cannot be read: {sizes['unreadable']:,}")
    return lines


def _reading(summary: dict[str, Any]) -> list[str]:
    """The plain-language paragraphs of summary.md, computed from the counts."""
    paragraphs: list[str] = []
    main_split = "train" if "train" in summary["splits"] else next(iter(summary["splits"]))
    info = summary["splits"][main_split]
    n_normal, n_pneumonia, total = (info["images"][k] for k in ("NORMAL", "PNEUMONIA", "total"))
    if total and n_normal == n_pneumonia:
        paragraphs.append(f"The classes are balanced in `{main_split}`: {n_normal:,} NORMAL and {n_pneumonia:,} PNEUMONIA.")
    elif total:
        minority, majority = ("NORMAL", "PNEUMONIA") if n_normal < n_pneumonia else ("PNEUMONIA", "NORMAL")
        n_min, n_maj = min(n_normal, n_pneumonia), max(n_normal, n_pneumonia)
        paragraphs.append(
            f"**The classes are imbalanced: {minority} is the minority.** In `{main_split}`, {n_min:,} of "
            f"{total:,} images ({100 * n_min / total:.1f} %) are {minority}: {n_maj / max(n_min, 1):.1f} "
            f"{majority} images for each {minority} one. A model that always answers {majority} would "
            f"already be {100 * n_maj / total:.0f} % accurate here, so accuracy alone says little: read "
            "sensitivity and specificity (and AUC), and weight or resample the classes in training."
        )
    for split, split_info in summary["splits"].items():
        n_split = split_info["images"]["total"]
        if 0 < n_split < SMALL_SPLIT:
            advice = (
                " Validation should instead be drawn from the training images, by patient."
                if split == "val" else ""
            )
            paragraphs.append(
                f"The `{split}` split holds only {n_split:,} images "
                f"({split_info['images']['NORMAL']:,} NORMAL, {split_info['images']['PNEUMONIA']:,} PNEUMONIA): "
                f"one image moves its accuracy by {100 / n_split:.1f} points, far too few to choose a "
                f"threshold or compare models.{advice}"
            )
    several = sum(info["images_per_patient"][name]["patients_with_several"] for name in CLASS_NAMES)
    top = max((info["images_per_patient"][name]["max"] or 0) for name in CLASS_NAMES)
    if several:
        paragraphs.append(
            f"**Several images per patient.** The {total:,} `{main_split}` images come from "
            f"{info['patients']['total']:,} patients; {several:,} patients have more than one image (up to {top}). "
            "Two radiographs of the same child look alike to a network, so an image-level split would put "
            "the same lungs in training and validation and overstate the score: every split here is made by patient."
        )
    else:
        paragraphs.append(f"Each of the {info['patients']['total']:,} patients in `{main_split}` has one image.")
    if info["subtypes"]["bacteria"] or info["subtypes"]["virus"]:
        mix = summary["pneumonia_patients_by_subtype"]
        paragraphs.append(
            f"Among the `{main_split}` pneumonia images, {info['subtypes']['bacteria']:,} are bacterial and "
            f"{info['subtypes']['virus']:,} viral; the model only separates NORMAL from PNEUMONIA."
            + (
                f" Across the whole collection, {mix['both']:,} pneumonia patient ids carry both bacterial "
                "and viral images; each is kept together as one patient, the safe reading for leakage."
                if mix["both"] else ""
            )
        )
    dups = summary["duplicates"]
    if dups["groups"]:
        where = "all within one patient" if not dups["across_patients"] else f"{dups['across_patients']:,} across patients"
        paragraphs.append(
            f"**Duplicates.** {dups['groups']:,} groups of byte-identical files ({dups['redundant_files']:,} "
            f"redundant copies; {where}; {dups['across_splits']:,} across splits; "
            f"{dups['across_classes']:,} with conflicting labels). Copies inside one patient stay on one side "
            "of a patient split; copies across splits or labels would need removing."
        )
    else:
        paragraphs.append("**Duplicates.** No two files have identical bytes.")
    if summary["unrecognised_patient_ids"]:
        paragraphs.append(
            f"{summary['unrecognised_patient_ids']:,} file names carry no recognised patient id; each is "
            "treated as its own patient, which cannot prevent leakage for those files."
        )
    shared = summary["patients_in_several_splits"]["count"]
    if shared:
        paragraphs.append(f"**{shared:,} patient ids appear in more than one split**: those splits leak into each other.")
    return paragraphs


def markdown(summary: dict[str, Any], tables: dict[str, str]) -> str:
    figures = summary["figures"]
    parts = [
        "# Data summary",
        f"Collection: `{summary['root']}` ({summary['layout']}). Counts are in `summary.json`.",
        "## Reading",
        *_reading(summary),
        "## Images per class",
        tables["images"],
        f"![Images per class and split]({figures['class_counts']})",
        "## Patients",
        tables["patients"],
        tables["distribution"],
        f"![Images per patient]({figures['images_per_patient']})",
        "## Pneumonia subtypes",
        tables["subtypes"],
        "## Facts",
        "\n".join(f"- {line}" for line in facts(summary)),
        "## Image sizes",
        "Read from file headers. The loader resizes every image to a square without keeping the "
        "aspect ratio, as the shared 224 x 224 copies were made.",
        f"![Image sizes]({figures['image_sizes']})",
        "## Samples",
        f"![Sample images per class]({figures['samples']})",
    ]
    dups = summary["duplicates"]
    if dups["groups"]:
        parts += ["## Duplicates", f"![Byte-identical files]({figures['duplicates']})"]
        parts.append("\n".join(f"- {', '.join(f'`{p}`' for p in group)}" for group in dups["examples"]))
        if dups["groups"] > len(dups["examples"]):
            parts.append(f"(first {len(dups['examples'])} of {dups['groups']:,} groups)")
    return "\n\n".join(parts) + "\n"


__all__ = ["write_summary", "FIGURES"]
