"""Every number of an evaluation, from scikit-learn (and torchmetrics for the ECE).

Nothing is re-derived by hand: a metric computed one way in training, another in the report
and a third in a notebook is how a project ends up quoting three different accuracies. The
only code of our own is the bootstrap, and it resamples *patients*, not images: one child's
radiographs are not independent evidence, and resampling them one by one would give intervals
that are too narrow.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
    roc_auc_score,
)

from pneumoscope.config import CLASS_NAMES, SUBTYPE_NAMES
from pneumoscope.models.decision import predictions  # the one decision rule, re-exported here

ECE_BINS = 10
"""Equal-width bins of predicted probability for the expected calibration error."""


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE of the pneumonia probability: sum over equal-width bins of |observed rate - mean
    probability|, weighted by the share of images in the bin (torchmetrics' definition, the
    same library that computes training metrics)."""
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    value = binary_calibration_error(
        torch.as_tensor(np.asarray(probs, dtype=np.float64)),
        torch.as_tensor(np.asarray(labels, dtype=np.int64)),
        n_bins=n_bins,
        norm="l1",
    )
    return float(value)




def patient_resamples(
    patients: Sequence[str] | None, n_images: int, n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """Bootstrap resamples of patients, as image weights (n_boot, n_images).

    Each resample draws as many patients as there are, with replacement; an image's weight is
    how many times its patient was drawn, so a patient's radiographs always travel together.
    Without ``patients`` each image is its own patient (the ordinary image-level bootstrap).
    """
    groups = np.asarray(patients if patients is not None else np.arange(n_images).astype(str))
    unique, inverse = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, len(unique), size=(n_boot, len(unique)))
    offsets = (np.arange(n_boot) * len(unique))[:, None]
    counts = np.bincount((drawn + offsets).ravel(), minlength=n_boot * len(unique)).reshape(n_boot, len(unique))
    return counts[:, inverse].astype(np.float64)


def weighted_auc(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray, chunk: int = 200) -> np.ndarray:
    """ROC AUC of each row of ``weights`` (n_boot, N) at once; NaN where a class has no weight.

    Equal to ``roc_auc_score(labels, probs, sample_weight=row)`` (ties count one half; the tests
    check the equality), but one vectorised pass instead of a thousand calls whose input
    checks alone cost a second or more, and that on every model of ``compare``.
    """
    labels = np.asarray(labels).astype(int)
    order = np.argsort(probs, kind="stable")
    sorted_probs = np.asarray(probs)[order]
    starts = np.flatnonzero(np.r_[True, sorted_probs[1:] != sorted_probs[:-1]])  # tie groups
    positive = labels[order] == 1
    out = np.empty(len(weights))
    for first in range(0, len(weights), chunk):
        w = weights[first : first + chunk][:, order]
        pos = np.add.reduceat(w * positive, starts, axis=1)
        neg = np.add.reduceat(w * ~positive, starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        numerator = (pos * (below + 0.5 * neg)).sum(axis=1)
        denominator = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[first : first + chunk] = np.where(denominator > 0, numerator / denominator, np.nan)
    return out


def _rates(labels: np.ndarray, predicted: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, sensitivity and specificity of each weighted resample (NaN without the class)."""
    positive, negative = (labels == 1).astype(np.float64), (labels == 0).astype(np.float64)
    tp = weights @ (positive * (predicted == 1))
    tn = weights @ (negative * (predicted == 0))
    n_pos, n_neg = weights @ positive, weights @ negative
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "accuracy": (tp + tn) / (n_pos + n_neg),
            "sensitivity": np.where(n_pos > 0, tp / n_pos, np.nan),
            "specificity": np.where(n_neg > 0, tn / n_neg, np.nan),
        }


def bootstrap_ci(
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    patients: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, list[float] | int]:
    """95 % percentile intervals of AUC, accuracy, sensitivity and specificity, resampling patients
    with replacement.

    Resamples holding a single class have no AUC and are left out of the AUC interval only;
    ``n_boot_auc`` says how many were usable.
    """
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs, dtype=np.float64)
    weights = patient_resamples(patients, len(labels), n_boot, seed)
    aucs = weighted_auc(labels, probs, weights)
    rates = _rates(labels, predictions(probs, threshold), weights)
    return {
        "auc_ci95": _interval(aucs),
        "accuracy_ci95": _interval(rates["accuracy"]),
        "sensitivity_ci95": _interval(rates["sensitivity"]),
        "specificity_ci95": _interval(rates["specificity"]),
        "n_boot": int(n_boot),
        "n_boot_auc": int(np.isfinite(aucs).sum()),
        "n_patients": int(len(set(patients)) if patients is not None else len(labels)),
    }


def paired_bootstrap_difference(
    labels: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    threshold_a: float,
    threshold_b: float,
    patients: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, list[float]]:
    """95 % intervals of model B minus model A (AUC, accuracy, sensitivity, specificity) on the
    same resampled patients: a paired comparison, far tighter than comparing two separate
    intervals, because both models meet the same easy and hard patients in every resample."""
    labels = np.asarray(labels).astype(int)
    weights = patient_resamples(patients, len(labels), n_boot, seed)
    usable = np.isfinite(weighted_auc(labels, np.zeros(len(labels)), weights))  # both classes drawn
    a = _rates(labels, predictions(probs_a, threshold_a), weights)
    b = _rates(labels, predictions(probs_b, threshold_b), weights)
    a["auc"] = weighted_auc(labels, np.asarray(probs_a, dtype=np.float64), weights)
    b["auc"] = weighted_auc(labels, np.asarray(probs_b, dtype=np.float64), weights)
    return {
        f"{name}_diff_ci95": _interval((b[name] - a[name])[usable])
        for name in ("auc", "accuracy", "sensitivity", "specificity")
    }


def _interval(values: np.ndarray) -> list[float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [float("nan"), float("nan")]
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def compute_metrics(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    threshold: float,
    patients: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics of one model on one set of images, at ``threshold``.

    ``labels``: 0 NORMAL, 1 PNEUMONIA. ``probs``: calibrated pneumonia probabilities.
    ``patients``: one id per image, for the patient-level bootstrap (``None``: image-level).
    Both classes must be present: sensitivity, specificity and AUC mean nothing otherwise.
    """
    y = np.asarray(labels).astype(int)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1 or y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be two equal-length vectors")
    if patients is not None and len(patients) != len(y):
        raise ValueError(f"{len(patients)} patient ids for {len(y)} images")
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("labels must be 0 (NORMAL) or 1 (PNEUMONIA)")
    if len(np.unique(y)) < 2:
        raise ValueError("both NORMAL and PNEUMONIA images are needed to compute the metrics")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError("probabilities must be finite and within [0, 1]")
    predicted = predictions(p, threshold)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, predicted, labels=[0, 1]).ravel())
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=[0, 1], zero_division=0
    )
    per_class = {
        name: {
            "precision": float(precision[label]),
            "recall": float(recall[label]),
            "f1": float(f1[label]),
            "support": int(support[label]),
        }
        for label, name in enumerate(CLASS_NAMES)
    }
    metrics: dict[str, Any] = {
        "n": int(len(y)),
        "n_normal": int((y == 0).sum()),
        "n_pneumonia": int((y == 1).sum()),
        "threshold": float(threshold),
        "auc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
        "accuracy": float(accuracy_score(y, predicted)),
        "sensitivity": float(recall_score(y, predicted, pos_label=1, zero_division=0)),
        "specificity": float(recall_score(y, predicted, pos_label=0, zero_division=0)),
        "precision": float(precision_score(y, predicted, pos_label=1, zero_division=0)),
        "f1": float(f1_score(y, predicted, pos_label=1, zero_division=0)),
        "per_class": per_class,
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "brier": float(brier_score_loss(y, p, pos_label=1)),
        "ece": expected_calibration_error(y, p),
        "ece_bins": ECE_BINS,
    }
    boot = bootstrap_ci(y, p, threshold, patients, n_boot=n_boot, seed=seed)
    metrics.update(boot)
    metrics["bootstrap"] = "patient-level" if patients is not None else "image-level"
    return metrics


def subtype_metrics(
    labels: np.ndarray, subtypes: np.ndarray, p_pneumonia: np.ndarray | None, threshold: float,
    p_bacterial: np.ndarray, subtype_threshold: float, patients: Sequence[str] | None = None,
    n_boot: int = 1000,
) -> dict[str, Any] | None:
    """The subtype head on the PNEUMONIA films of known subtype (bacterial the positive class:
    ``sensitivity`` is for bacterial, ``specificity`` for viral), plus the three-way matrix when
    the pneumonia probabilities ``p_pneumonia`` are given.

    None when those films do not hold both subtypes (nothing to measure)."""
    subtypes = np.asarray(subtypes)
    known = (np.asarray(labels) == 1) & (subtypes >= 0)
    if len(np.unique(subtypes[known])) < 2:
        return None
    kept = None if patients is None else [p for p, k in zip(patients, known) if k]
    metrics = compute_metrics(subtypes[known], np.asarray(p_bacterial)[known], subtype_threshold, kept, n_boot=n_boot)
    metrics["n_viral"], metrics["n_bacterial"] = metrics.pop("n_normal"), metrics.pop("n_pneumonia")
    metrics["per_class"] = dict(zip(SUBTYPE_NAMES, metrics["per_class"].values()))
    metrics["positive_class"] = SUBTYPE_NAMES[1]
    if p_pneumonia is not None:
        metrics["three_way"] = three_way_confusion(labels, subtypes, p_pneumonia, threshold, p_bacterial, subtype_threshold)
    return metrics


THREE_WAY = ("NORMAL", "bacterial", "viral")
"""Rows (truth) and columns (answer) of the three-way confusion matrix, Kermany's three classes."""


def three_way_confusion(
    labels: np.ndarray, subtypes: np.ndarray, p_pneumonia: np.ndarray, threshold: float,
    p_bacterial: np.ndarray, subtype_threshold: float,
) -> dict[str, Any]:
    """NORMAL / bacterial / viral: the pneumonia decision first, then the subtype decision on the
    films called PNEUMONIA. PNEUMONIA films of unknown subtype are left out (no true row)."""
    labels, subtypes = np.asarray(labels), np.asarray(subtypes)
    truth = np.where(labels == 0, 0, np.where(subtypes == 1, 1, np.where(subtypes == 0, 2, -1)))
    bacterial = predictions(p_bacterial, subtype_threshold)
    answer = np.where(predictions(p_pneumonia, threshold) == 0, 0, np.where(bacterial == 1, 1, 2))
    kept = truth >= 0
    matrix = confusion_matrix(truth[kept], answer[kept], labels=[0, 1, 2])
    return {"classes": list(THREE_WAY), "matrix": matrix.tolist(),
            "accuracy": float(np.trace(matrix) / max(1, matrix.sum()))}

