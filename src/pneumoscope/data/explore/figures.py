"""The data summary's figures: matplotlib's object API on an Agg canvas (no pyplot, no global backend)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pneumoscope.config import CLASS_NAMES
from pneumoscope.data.collection import Record
from pneumoscope.data.explore.counts import relative
from pneumoscope.data.images import ImageLoadError, load_image

SAMPLES_PER_CLASS = 6
_CLASS_COLOURS = {"NORMAL": "#4C72B0", "PNEUMONIA": "#DD8452"}


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


def plot_class_counts(summary: dict[str, Any], path: Path) -> None:
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


def plot_images_per_patient(records: Sequence[Record], path: Path) -> None:
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


def plot_sizes(sizes: Sequence[tuple[int, int] | None], records: Sequence[Record], path: Path) -> None:
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


def plot_samples(found: dict[str, list[Record]], root: Path, path: Path) -> list[str]:
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
            shown.append(relative(record.path, root))
            column += 1
        for ax in row:
            ax.set_axis_off()
    figure.suptitle(f"Samples from '{split}' as the network sees them (224 x 224, grey)")
    _save(figure, path)
    return shown


def plot_duplicates(groups: list[list[Record]], root: Path, path: Path) -> None:
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
            folder, _, name = relative(record.path, root).rpartition("/")
            ax.set_title(f"{folder}/\n{name}" if folder else name, fontsize=6.5)
    figure.suptitle(f"Byte-identical files (first {len(groups)} of the groups)")
    _save(figure, path)


# --- text --------------------------------------------------------------------------------


