"""The evaluation's figures, each a PNG written by one function.

Figures are built on ``matplotlib.figure.Figure`` (rendered by Agg) rather than ``pyplot``:
no global backend switch and no figure registry to leak, so evaluating inside the web app,
a test or a notebook leaves their matplotlib state alone. Curves come from scikit-learn, the
same library the numbers come from, so a figure and its table cannot disagree.

The figures the web page's About tab shows (confusion matrix, ROC, PR) are drawn in each of
:data:`~pneumoscope.languages.LANGUAGES`, words and decimal marks alike (:data:`WORDS`); the
others are for the English reports only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import auc as area_under, precision_recall_curve, roc_curve

from pneumoscope.config import CLASS_NAMES
from pneumoscope.evaluation.metrics import ECE_BINS, predictions
from pneumoscope.languages import decimal, decimal_mark, label

DPI = 110
CLASS_COLOURS = ("#1f77b4", "#d62728")  # NORMAL blue, PNEUMONIA red, in every figure

WORDS: dict[str, dict[str, str]] = {
    # The words of the figures drawn per language; ``{}`` takes a class label or a number.
    "en": {"true": "true {}", "predicted": "pred. {}", "confusion": "Confusion matrix",
           "at_threshold": "{} at threshold {}", "chance": "chance", "roc": "ROC",
           "fpr": "false-positive rate (1 - specificity)", "sensitivity": "sensitivity",
           "pr": "Precision-recall", "recall": "recall (sensitivity)", "precision": "precision ({})",
           "prevalence": "prevalence {}"},
    "es": {"true": "real {}", "predicted": "pred. {}", "confusion": "Matriz de confusión",
           "at_threshold": "{} con umbral {}", "chance": "azar", "roc": "ROC",
           "fpr": "tasa de falsos positivos (1 - especificidad)", "sensitivity": "sensibilidad",
           "pr": "Precisión-exhaustividad", "recall": "exhaustividad (sensibilidad)", "precision": "precisión ({})",
           "prevalence": "prevalencia {}"},
}


def at_threshold(name: str, threshold: float, language: str = "en") -> str:
    """``ensemble at threshold 0.154`` (``ensemble con umbral 0,154``): a model at its operating point."""
    return WORDS[language]["at_threshold"].format(name, decimal(threshold, 3, language))


def _decimal_ticks(ax: Axes, language: str) -> None:
    """Tick labels with the language's decimal mark (matplotlib writes the point)."""
    if language != "en":
        from matplotlib.ticker import FuncFormatter

        ticks = FuncFormatter(lambda value, _: decimal_mark(f"{value:.1f}", language))
        ax.xaxis.set_major_formatter(ticks)
        ax.yaxis.set_major_formatter(ticks)


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def _operating_point(labels: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(false-positive rate, sensitivity, precision) of the thresholded predictions."""
    predicted = predictions(probs, threshold)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
    fpr = fp / max(negatives, 1)
    tpr = tp / max(positives, 1)
    precision = tp / (tp + fp) if tp + fp else 1.0
    return fpr, tpr, precision


def draw_confusion(ax: Axes, cm: Sequence[Sequence[int]], title: str, language: str = "en") -> None:
    """Counts and row percentages (the share of each true class), rows true, columns predicted."""
    words = WORDS[language]
    matrix = np.asarray(cm, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            colour = "white" if share[i, j] > 0.6 else "black"
            ax.text(j, i, f"{int(matrix[i, j])}\n{decimal(100 * share[i, j], 1, language)} %", ha="center",
                    va="center", color=colour, fontsize=12)
    ax.set_xticks([0, 1], [words["predicted"].format(label(n, language)) for n in CLASS_NAMES])
    ax.set_yticks([0, 1], [words["true"].format(label(n, language)) for n in CLASS_NAMES], rotation=90, va="center")
    ax.set_title(title)


def plot_confusion_matrix(cm: Sequence[Sequence[int]], path: Path, title: str | None = None,
                          language: str = "en") -> Path:
    fig = Figure(figsize=(4.6, 4.2))
    draw_confusion(fig.add_subplot(), cm, title or WORDS[language]["confusion"], language)
    return _save(fig, path)


def plot_confusion_matrices(named: Sequence[tuple[str, Sequence[Sequence[int]]]], path: Path) -> Path:
    """Several models' confusion matrices side by side, on the same colour scale."""
    fig = Figure(figsize=(4.4 * len(named), 4.2))
    for index, (name, cm) in enumerate(named):
        draw_confusion(fig.add_subplot(1, len(named), index + 1), cm, name)
    return _save(fig, path)


def _style_unit_axes(ax, xlabel: str, ylabel: str, title: str, legend_loc: str) -> None:
    """Labels, a [0, 1] square (equal scales: a rate reads the same on both axes) with a small
    margin so curves on the edge stay visible, grid, legend."""
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.tick_params(labelsize=10)
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=8)
    ax.set_title(title)


def plot_roc(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: Path, language: str = "en") -> Path:
    """ROC curve of each (name, labels, probs, threshold), its operating point marked."""
    words = WORDS[language]
    fig = Figure(figsize=(5.4, 5.4))
    ax = fig.add_subplot()
    for index, (name, labels, probs, threshold) in enumerate(curves):
        fpr, tpr, _ = roc_curve(labels, probs)
        line, = ax.plot(fpr, tpr, color=f"C{index}",
                        label=f"{name} (AUC {decimal(area_under(fpr, tpr), 3, language)})")
        op_fpr, op_tpr, _ = _operating_point(labels, probs, threshold)
        ax.plot([op_fpr], [op_tpr], "o", color=line.get_color(), markersize=8,
                label=at_threshold(name, threshold, language))
    ax.plot([0, 1], [0, 1], ":", color="grey", label=words["chance"])
    _style_unit_axes(ax, words["fpr"], words["sensitivity"], words["roc"], "lower right")
    _decimal_ticks(ax, language)
    return _save(fig, path)


def plot_pr(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: Path, language: str = "en") -> Path:
    """Precision-recall curve of each model, its operating point marked; the dashed line is
    the prevalence, what a model without skill achieves."""
    words = WORDS[language]
    fig = Figure(figsize=(5.4, 5.4))
    ax = fig.add_subplot()
    for index, (name, labels, probs, threshold) in enumerate(curves):
        precision, recall, _ = precision_recall_curve(labels, probs)
        line, = ax.step(recall, precision, where="post", color=f"C{index}", label=name)
        _, op_recall, op_precision = _operating_point(labels, probs, threshold)
        ax.plot([op_recall], [op_precision], "o", color=line.get_color(), markersize=8,
                label=at_threshold(name, threshold, language))
    prevalence = float(np.mean(curves[0][1])) if curves else 0.0
    ax.axhline(prevalence, ls="--", color="grey", label=words["prevalence"].format(decimal(prevalence, 2, language)))
    _style_unit_axes(ax, words["recall"], words["precision"].format(label("PNEUMONIA", language)), words["pr"],
                     "lower left")
    _decimal_ticks(ax, language)
    return _save(fig, path)


def plot_calibration(labels: np.ndarray, probs: np.ndarray, path: Path, ece: float | None = None) -> Path:
    """Reliability diagram (observed pneumonia rate per probability bin) over how many images
    fall in each bin: a bin of three images says little, however far from the diagonal."""
    fig = Figure(figsize=(5, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    observed, predicted = calibration_curve(labels, probs, n_bins=ECE_BINS, strategy="uniform")
    top.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    top.plot(predicted, observed, "o-", label="model" + (f" (ECE {ece:.3f})" if ece is not None else ""))
    top.set_ylabel("observed share of PNEUMONIA")
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    top.set_title("Calibration")
    bottom.hist(probs, bins=np.linspace(0, 1, ECE_BINS + 1), color="grey", edgecolor="white")
    bottom.set_xlabel("predicted probability of PNEUMONIA")
    bottom.set_ylabel("images")
    return _save(fig, path)


def plot_score_histograms(labels: np.ndarray, probs: np.ndarray, threshold: float, path: Path) -> Path:
    """Where each true class's probabilities fall relative to the threshold."""
    fig = Figure(figsize=(6, 3.8))
    ax = fig.add_subplot()
    bins = np.linspace(0, 1, 26)
    for label, name in enumerate(CLASS_NAMES):
        scores = probs[labels == label]
        ax.hist(scores, bins=bins, histtype="stepfilled", alpha=0.35, color=CLASS_COLOURS[label])
        ax.hist(scores, bins=bins, histtype="step", linewidth=1.5, color=CLASS_COLOURS[label],
                label=f"true {name} (n={len(scores)})")
    ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("predicted probability of PNEUMONIA")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title("Scores per true class")
    return _save(fig, path)


def confident_errors(
    labels: np.ndarray, probs: np.ndarray, threshold: float, per_kind: int = 6
) -> tuple[list[int], list[int]]:
    """Indices of the most confident false positives (highest probability first) and false
    negatives (lowest probability first)."""
    predicted = predictions(probs, threshold)
    fp = np.flatnonzero((predicted == 1) & (labels == 0))
    fn = np.flatnonzero((predicted == 0) & (labels == 1))
    fp = fp[np.argsort(-probs[fp], kind="stable")][:per_kind]
    fn = fn[np.argsort(probs[fn], kind="stable")][:per_kind]
    return [int(i) for i in fp], [int(i) for i in fn]


def plot_error_gallery(
    paths: Sequence[str], labels: np.ndarray, probs: np.ndarray, threshold: float, path: Path, per_kind: int = 6
) -> Path:
    """The most confident errors, one row per kind, read through the one image loader."""
    from pneumoscope.data.images import load_image

    fp, fn = confident_errors(labels, probs, threshold, per_kind)
    columns = max(len(fp), len(fn), 1)
    fig = Figure(figsize=(2.3 * columns, 5.4))
    kinds = (("false positive: true NORMAL", fp), ("false negative: true PNEUMONIA", fn))
    for row, (kind, indices) in enumerate(kinds):
        for column in range(columns):
            ax = fig.add_subplot(2, columns, row * columns + column + 1)
            ax.set_axis_off()
            if column < len(indices):
                index = indices[column]
                ax.imshow(load_image(paths[index], 224), cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{Path(paths[index]).name}\np(PNEUMONIA) = {probs[index]:.3f}", fontsize=7)
            elif column == 0:
                ax.text(0.5, 0.5, "none", ha="center", va="center", fontsize=12)
            if column == 0:
                ax.text(-0.08, 0.5, kind, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=8)
    fig.suptitle(f"Most confident errors at threshold {threshold:.3f}", fontsize=10)
    return _save(fig, path)


def plot_leakage(rows: Sequence[dict], path: Path) -> Path:
    """Each run's score on its own validation split, then on held-out patients (with the 95 %
    interval), joined by a line: the drop is the overstatement. Points rather than bars, since
    near AUC 1 the axis must be zoomed and a bar's length would mislead."""
    fig = Figure(figsize=(8.5, 3.8))
    axes = fig.subplots(1, 2)
    for ax, metric, label in zip(axes, ("auc", "accuracy"), ("AUC", "accuracy")):
        values = []
        for index, row in enumerate(rows):
            seen, held = row["validation"][metric], row["heldout"][metric]
            low, high = row["heldout"][f"{metric}_ci95"]
            colour, shift = f"C{index}", 0.08 * (index - (len(rows) - 1) / 2)  # side by side, not on top
            ax.plot([shift, 1 + shift], [seen, held], "-", color=colour, alpha=0.6)
            ax.plot([shift], [seen], "o", color=colour, markersize=8, label=f"{row['split_level']}-level split")
            ax.errorbar([1 + shift], [held], yerr=[[held - low], [high - held]], fmt="s", color=colour,
                        capsize=5, markersize=7)
            values += [seen, held, low, high]
        finite = [v for v in values if np.isfinite(v)]
        span = max(finite) - min(finite) if finite else 1.0
        ax.set_ylim(max(0.0, min(finite, default=0.0) - 0.1 * span - 0.005), min(1.0, max(finite, default=1.0) + 0.1 * span + 0.005))
        ax.set_xlim(-0.4, 1.4)
        ax.set_xticks([0, 1], ["own validation split", "held-out patients"])
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"{label}: promised vs. delivered")
    return _save(fig, path)
