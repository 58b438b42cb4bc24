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
import statistics
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from pneumoscope.config import CLASS_NAMES
from pneumoscope.data.collection import Record, find_duplicates, scan_collection
from pneumoscope.data.images import ImageLoadError, decode_image, load_image

FIGURES = {
    "class_counts": "class_counts.png",
    "images_per_patient": "images_per_patient.png",
    "image_sizes": "image_sizes.png",
    "samples": "samples.png",
}
"""The figures every summary has; ``duplicates.png`` is added only when copies are found."""

SAMPLES_PER_CLASS = 6
EXTREME_ASPECT = 2.0
"""Width/height beyond this (or below its inverse) is listed: the square resize distorts it most."""
SMALL_SPLIT = 100
"""Below this many images a split cannot choose a threshold or rank models: say so."""
_CLASS_COLOURS = {"NORMAL": "#4C72B0", "PNEUMONIA": "#DD8452"}
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}


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

    sizes = _header_sizes(records)
    duplicate_groups = find_duplicates(records)
    summary: dict[str, Any] = {
        "root": str(root),
        "layout": "single folder" if "all" in found else "splits",
        "splits": {split: _split_summary(split_records) for split, split_records in found.items()},
        "unrecognised_patient_ids": unknown,
        "pneumonia_patients_by_subtype": _subtype_mix(records),
        "patients_in_several_splits": _patients_in_several_splits(found),
        "image_sizes": _size_summary(sizes, records, root),
        "duplicates": _duplicate_summary(duplicate_groups, root),
    }
    if len(found) > 1:
        summary["overall"] = _split_summary(records)

    figures = dict(FIGURES)
    _plot_class_counts(summary, out / figures["class_counts"])
    _plot_images_per_patient(records, out / figures["images_per_patient"])
    _plot_sizes(sizes, records, out / figures["image_sizes"])
    summary["samples"] = _plot_samples(found, root, out / figures["samples"])
    if duplicate_groups:
        figures["duplicates"] = "duplicates.png"
        _plot_duplicates(duplicate_groups, root, out / figures["duplicates"])
    summary["figures"] = figures

    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    tables = _tables(summary)
    (out / "summary.md").write_text(_markdown(summary, tables), encoding="utf-8")
    print(f"collection: {root}")
    print("\n\n".join(tables.values()))
    print("\n".join(_facts(summary)))
    print(f"wrote {out / 'summary.md'}, summary.json and {len(figures)} figures")
    return summary


# --- counting -------------------------------------------------------------------------------


def _split_summary(records: Sequence[Record]) -> dict[str, Any]:
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
        "images_per_patient": {name: _per_patient_stats(per_patient[name].values()) for name in CLASS_NAMES},
        "subtypes": {
            "bacteria": subtypes["bacteria"],
            "virus": subtypes["virus"],
            "normal": subtypes["normal"],
            "unknown": subtypes["unknown"],
        },
        "pneumonia_patients_with": pneumonia_patients,
        "unrecognised_patient_ids": sum(1 for record in records if record.patient.startswith("file:")),
    }


def _per_patient_stats(counts: Iterable[int]) -> dict[str, Any]:
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


def _subtype_mix(records: Sequence[Record]) -> dict[str, int]:
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


def _patients_in_several_splits(found: dict[str, list[Record]]) -> dict[str, Any]:
    """Patient ids present in more than one split: each one leaks between those splits."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for split, records in found.items():
        for record in records:
            if not record.patient.startswith("file:"):
                splits_of[record.patient].add(split)
    shared = sorted(patient for patient, splits in splits_of.items() if len(splits) > 1)
    return {"count": len(shared), "examples": shared[:20]}


def _header_sizes(records: Sequence[Record]) -> list[tuple[int, int] | None]:
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
                if Path(record.path).suffix.lower() in _DICOM_SUFFIXES:
                    sizes.append(decode_image(record.path).original_size)
                else:
                    with Image.open(record.path) as image:
                        sizes.append(image.size)
            except (ImageLoadError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                sizes.append(None)
    return sizes


def _size_summary(sizes: Sequence[tuple[int, int] | None], records: Sequence[Record], root: Path) -> dict[str, Any]:
    known = [size for size in sizes if size is not None]
    unreadable = [_relative(record.path, root) for record, size in zip(records, sizes) if size is None]
    summary: dict[str, Any] = {"read": len(known), "unreadable": len(unreadable), "unreadable_files": unreadable[:20]}
    if not known:
        return summary
    widths = [w for w, _ in known]
    heights = [h for _, h in known]
    common = Counter(known).most_common(5)
    extreme = [
        _relative(record.path, root)
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


def _duplicate_summary(groups: list[list[Record]], root: Path) -> dict[str, Any]:
    """Byte-identical files: harmless within a patient, a leak across splits, an error across labels."""
    return {
        "groups": len(groups),
        "redundant_files": sum(len(group) - 1 for group in groups),
        "across_splits": sum(1 for group in groups if len({r.split for r in group}) > 1),
        "across_classes": sum(1 for group in groups if len({r.label for r in group}) > 1),
        "across_patients": sum(1 for group in groups if len({r.patient for r in group}) > 1),
        "examples": [[_relative(r.path, root) for r in group] for group in groups[:20]],
    }


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).name


# --- figures (matplotlib's object API on an Agg canvas: no pyplot, no global backend) --------


def _new_figure(width: float, height: float, grid: bool = False) -> Any:
    """A figure on its own Agg canvas. ``grid``: a grid of images with fixed margins, because
    constrained layout costs about 0.2 s per image tile and the tiles need none of it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout=None if grid else "constrained")
    if grid:  # margins in inches: room for the suptitle and two-line tile titles
        figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.8 / height, wspace=0.06, hspace=0.4)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Path) -> None:
    figure.savefig(path, dpi=110)


def _plot_class_counts(summary: dict[str, Any], path: Path) -> None:
    """One panel per split, each on its own scale: an 8-image val split stays readable beside train."""
    splits = summary["splits"]
    figure = _new_figure(3.2 * len(splits) + 0.6, 3.6)
    axes = figure.subplots(1, len(splits), squeeze=False)[0]
    for ax, (split, info) in zip(axes, splits.items()):
        counts = [info["images"][name] for name in CLASS_NAMES]
        bars = ax.bar(CLASS_NAMES, counts, color=[_CLASS_COLOURS[name] for name in CLASS_NAMES])
        ax.bar_label(bars, labels=[f"{count:,}" for count in counts], padding=2)
        ax.set_title(f"{split} ({info['images']['total']:,} images)")
        ax.set_ylim(0, max(max(counts), 1) * 1.15)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("images")
    figure.suptitle("Images per class and split")
    _save(figure, path)


def _plot_images_per_patient(records: Sequence[Record], path: Path) -> None:
    per_patient: dict[str, Counter[str]] = {name: Counter() for name in CLASS_NAMES}
    for record in records:
        per_patient[record.class_name][record.patient] += 1
    figure = _new_figure(6.4, 3.6)
    ax = figure.subplots()
    top = max((max(c.values(), default=1) for c in per_patient.values()), default=1)
    ks = np.arange(1, top + 1)
    width = 0.4
    for offset, name in zip((-width / 2, width / 2), CLASS_NAMES):
        histogram = Counter(per_patient[name].values())
        ax.bar(ks + offset, [histogram[k] for k in ks], width, label=name, color=_CLASS_COLOURS[name])
    ax.set_xticks(ks if top <= 12 else ks[(ks == 1) | (ks % 5 == 0)])
    ax.set_xlabel("images of the patient")
    ax.set_ylabel("patients")
    ax.set_yscale("log")
    ax.set_title("Images per patient (all splits)")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    _save(figure, path)


def _plot_sizes(sizes: Sequence[tuple[int, int] | None], records: Sequence[Record], path: Path) -> None:
    """Width against height (each file once) and the aspect ratio the plain resize throws away."""
    figure = _new_figure(9.5, 3.8)
    scatter_ax, ratio_ax = figure.subplots(1, 2)
    for name in CLASS_NAMES:
        points = [size for size, r in zip(sizes, records) if size is not None and r.class_name == name]
        if not points:
            continue
        widths, heights = np.array(points, dtype=float).T
        scatter_ax.scatter(widths, heights, s=10, alpha=0.4, label=f"{name} ({len(points):,})",
                           color=_CLASS_COLOURS[name], edgecolors="none")
        ratio_ax.hist(widths / heights, bins=30, alpha=0.6, label=name, color=_CLASS_COLOURS[name])
    distinct = Counter(size for size in sizes if size is not None)
    if len(distinct) == 1:
        (width, height), count = distinct.most_common(1)[0]
        scatter_ax.text(0.5, 0.92, f"all {count:,} images are {width} x {height}", ha="center",
                        transform=scatter_ax.transAxes)
    scatter_ax.set_xlabel("width (px)")
    scatter_ax.set_ylabel("height (px)")
    scatter_ax.set_title("Stored size")
    scatter_ax.legend(frameon=False, loc="lower right")
    ratio_ax.set_xlabel("width / height")
    ratio_ax.set_ylabel("images")
    ratio_ax.set_title("Aspect ratio (lost by the square resize)")
    ratio_ax.legend(frameon=False)
    for ax in (scatter_ax, ratio_ax):
        ax.spines[["top", "right"]].set_visible(False)
    _save(figure, path)


def _plot_samples(found: dict[str, list[Record]], root: Path, path: Path) -> list[str]:
    """A fixed random draw per class from the first split, decoded by the one loader at 224 px."""
    split = next(iter(found))
    rng = np.random.default_rng(0)
    figure = _new_figure(1.9 * SAMPLES_PER_CLASS, 2.3 * len(CLASS_NAMES), grid=True)
    axes = figure.subplots(len(CLASS_NAMES), SAMPLES_PER_CLASS, squeeze=False)
    shown: list[str] = []
    for row, name in zip(axes, CLASS_NAMES):
        candidates = [r for r in found[split] if r.class_name == name]
        order = rng.permutation(len(candidates))
        column = 0
        for index in order:
            if column == len(row):
                break
            record = candidates[index]
            try:
                pixels = load_image(record.path, 224)
            except ImageLoadError:
                continue
            label = name if record.subtype in ("normal", "unknown") else f"{name} ({record.subtype})"
            row[column].imshow(pixels, cmap="gray", vmin=0, vmax=255)
            row[column].set_title(f"{label}\n{Path(record.path).name[:32]}", fontsize=6.5)
            shown.append(_relative(record.path, root))
            column += 1
        for ax in row:
            ax.set_axis_off()
    figure.suptitle(f"Samples from '{split}' as the network sees them (224 x 224, grey)")
    _save(figure, path)
    return shown


def _plot_duplicates(groups: list[list[Record]], root: Path, path: Path) -> None:
    """The first few groups of byte-identical files side by side, with where each copy lives."""
    groups = groups[:4]
    columns = max(len(group) for group in groups)
    figure = _new_figure(2.3 * max(columns, 2), 2.5 * len(groups), grid=True)
    axes = figure.subplots(len(groups), columns, squeeze=False)
    for row, group in zip(axes, groups):
        for ax in row:
            ax.set_axis_off()
        for ax, record in zip(row, group):
            try:
                ax.imshow(load_image(record.path, 160), cmap="gray", vmin=0, vmax=255)
            except ImageLoadError:
                pass
            folder, _, name = _relative(record.path, root).rpartition("/")
            ax.set_title(f"{folder}/\n{name}" if folder else name, fontsize=6.5)
    figure.suptitle(f"Byte-identical files (first {len(groups)} of the groups)")
    _save(figure, path)


# --- text --------------------------------------------------------------------------------


def _n(value: int | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table padded to line up in a terminal too; numbers right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 2)) if i == 0 else ("-" * (w + 1) + ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _rows(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = list(summary["splits"].items())
    if "overall" in summary:
        rows.append(("all splits", summary["overall"]))
    return rows


def _tables(summary: dict[str, Any]) -> dict[str, str]:
    images = _table(
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
    patients = _table(
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
    subtypes = _table(
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
    distribution = _table(
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


def _facts(summary: dict[str, Any]) -> list[str]:
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


def _markdown(summary: dict[str, Any], tables: dict[str, str]) -> str:
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
        "\n".join(f"- {line}" for line in _facts(summary)),
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
