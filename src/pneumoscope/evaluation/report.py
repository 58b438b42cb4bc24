"""``pneumoscope evaluate`` and ``pneumoscope compare``: a model (or several) on a labelled folder.

The images are listed and checked *before* any model is loaded, so a wrong folder is reported
at once; every model scores through :func:`~pneumoscope.evaluation.scoring.score_paths` and every
number comes from :func:`~pneumoscope.evaluation.metrics.compute_metrics`, so ``evaluate`` and
``compare`` cannot disagree about the same model on the same images.

The prose and tables of both reports are rendered in :mod:`pneumoscope.evaluation.report_text`;
this module lists the images, scores them, computes the metrics and writes the files.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pneumoscope.config import CLASS_NAMES, ConfigError
from pneumoscope.data.collection import EvaluationSet, load_evaluation_set
from pneumoscope.evaluation import figures
from pneumoscope.evaluation.metrics import compute_metrics, paired_bootstrap_difference, predictions, subtype_metrics
from pneumoscope.evaluation.report_text import comparison_markdown, comparison_table, report_markdown, summary_table
from pneumoscope.evaluation.scoring import score_paths
from pneumoscope.languages import LANGUAGES, PAGE_FIGURES, figure_file
from pneumoscope.markdown import shown_path
from pneumoscope.models.bundle import Bundle, load_bundle

EVALUATE_FILES = (
    "metrics.json",
    "classification_report.txt",
    "predictions.csv",
    *(figure_file(stem, language) for stem in PAGE_FIGURES for language in LANGUAGES),
    "calibration.png",
    "score_histograms.png",
    "confident_errors.png",
    "report.md",
)
"""What ``evaluate`` writes into its output folder."""


def _threshold(bundle: Bundle, override: float | None) -> tuple[float, str]:
    if override is None:
        return bundle.threshold, "model"
    if not (math.isfinite(override) and 0.0 <= override <= 1.0):
        raise ConfigError(f"threshold {override} is not a probability between 0 and 1")
    return float(override), "override"


def _model_name(bundle: Bundle, fallback: str) -> str:
    return bundle.record.name or (bundle.path.name if bundle.path else fallback)


def _model_info(bundle: Bundle, source: str | Path | None) -> dict[str, Any]:
    record = bundle.record
    return {
        "name": _model_name(bundle, "model"),
        "path": shown_path(bundle.path) if bundle.path else str(source),
        "bundled_default": source is None,
        "arch": bundle.config.model.arch,
        "image_size": bundle.image_size,
        "temperature": bundle.temperature,
        "stored_threshold": bundle.threshold,
        "threshold_rule": record.threshold_rule,
        "validation_auc": record.validation.auc if record.validation else None,
    }


def _json_safe(value: Any) -> Any:
    """NaN (an interval no resample could estimate) becomes ``null``: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def evaluate(
    root: str | Path,
    split: str = "test",
    model: str | Path | None = None,
    out: str | Path = "evaluation",
    threshold: float | None = None,
    *,
    n_boot: int = 1000,
    progress: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Score ``model`` (the bundled default when ``None``) on ``root``'s ``split``; write
    metrics, figures and ``report.md`` into ``out``; print a compact table. Returns the metrics.

    Metrics are taken at the model's stored threshold unless ``threshold`` overrides it.
    """
    data = load_evaluation_set(root, split)
    bundle = load_bundle(model)
    used_threshold, source = _threshold(bundle, threshold)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    scores = score_paths(bundle, data.paths, progress=progress)
    probs, labels = scores.probs, data.labels
    metrics = compute_metrics(labels, probs, used_threshold, data.patients, n_boot=n_boot)
    result = {
        **metrics,
        "threshold_source": source,
        "model": _model_info(bundle, model),
        "data": data.describe(),
    }
    columns = {"prob": probs}
    if scores.p_bacterial is not None and bundle.subtype:
        result["subtype"] = _subtype_result(bundle, data, probs, used_threshold, scores.p_bacterial, n_boot)
        columns["p_bacterial"] = scores.p_bacterial
    _write_json(result, out / "metrics.json")
    _write_classification_report(labels, probs, used_threshold, out / "classification_report.txt")
    _write_predictions(data, columns, out / "predictions.csv", threshold=used_threshold)

    name = result["model"]["name"]
    curve = [(name, labels, probs, used_threshold)]
    for language in LANGUAGES:  # the PAGE_FIGURES, in every language
        figures.plot_confusion_matrix(metrics["confusion_matrix"], out / figure_file("confusion_matrix", language),
                                      figures.at_threshold(name, used_threshold, language), language)
        figures.plot_roc(curve, out / figure_file("roc", language), language)
        figures.plot_pr(curve, out / figure_file("pr", language), language)
    figures.plot_calibration(labels, probs, out / "calibration.png", ece=metrics["ece"])
    figures.plot_score_histograms(labels, probs, used_threshold, out / "score_histograms.png")
    figures.plot_error_gallery(data.paths, labels, probs, used_threshold, out / "confident_errors.png")
    if (result.get("subtype") or {}).get("measured"):
        known = (labels == 1) & (data.subtypes >= 0)
        cut = result["subtype"]["threshold"]
        figures.plot_roc([(f"{name}: bacterial vs viral", data.subtypes[known], scores.p_bacterial[known], cut)],
                         out / "subtype_roc.png")
    (out / "report.md").write_text(report_markdown(result, out), encoding="utf-8")
    if not quiet:
        print(summary_table(result))
        print(f"report: {out / 'report.md'}")
    return result


def _subtype_result(
    bundle: Bundle, data: EvaluationSet, probs: np.ndarray, threshold: float, p_bacterial: np.ndarray, n_boot: int
) -> dict[str, Any]:
    """The subtype head on the set's PNEUMONIA films of known subtype, or why it could not be measured."""
    measured = subtype_metrics(data.labels, data.subtypes, probs, threshold, p_bacterial,
                               bundle.subtype["threshold"], data.patients, n_boot=n_boot)
    if measured is None:
        return {"measured": False, "reason": "the PNEUMONIA films here do not carry both subtypes in their "
                "file names (personN_bacteria_M / personN_virus_M)"}
    return {"measured": True, **measured}


def _write_classification_report(labels: np.ndarray, probs: np.ndarray, threshold: float, path: Path) -> None:
    from sklearn.metrics import classification_report

    text = classification_report(
        labels, predictions(probs, threshold), labels=[0, 1], target_names=list(CLASS_NAMES), digits=4, zero_division=0
    )
    path.write_text(f"threshold {threshold:.4f}\n\n{text}", encoding="utf-8")


def _write_predictions(
    data: EvaluationSet, probs: dict[str, np.ndarray], path: Path, threshold: float | None = None
) -> None:
    """One row per image: what was scored, so any number of the report can be re-derived."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        header = ["path", "patient", "label", "class"] + [k for k in probs]
        if threshold is not None:
            header += ["predicted", "correct"]
        writer.writerow(header)
        for index, record in enumerate(data.records):
            row: list[Any] = [record.path, record.patient, record.label, record.class_name]
            row += [f"{float(p[index]):.6f}" for p in probs.values()]
            if threshold is not None:
                predicted = int(predictions(next(iter(probs.values()))[index], threshold))
                row += [predicted, int(predicted == record.label)]
            writer.writerow(row)


def compare(
    models: Sequence[str | Path | None],
    root: str | Path,
    split: str = "test",
    out: str | Path = "comparison",
    *,
    n_boot: int = 1000,
    progress: bool = True,
    quiet: bool = False,
) -> dict[str, Any]:
    """Several models on the same images: a table, side-by-side confusion matrices, overlaid
    ROC and precision-recall curves, and each model's difference from the first (paired
    patient-level bootstrap). List the reference (e.g. the baseline) first."""
    if not models:
        raise ConfigError("compare needs at least one model")
    data = load_evaluation_set(root, split)
    bundles = [load_bundle(m) for m in models]  # every model checked before any is scored
    names = _unique_names([_model_name(b, str(m)) for b, m in zip(bundles, models)],
                          [str(b.path or m) for b, m in zip(bundles, models)])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels, patients = data.labels, data.patients

    entries: list[dict[str, Any]] = []
    all_probs: dict[str, np.ndarray] = {}
    for name, bundle, source in zip(names, bundles, models):
        scores = score_paths(bundle, data.paths, progress=progress)
        probs = scores.probs
        metrics = compute_metrics(labels, probs, bundle.threshold, patients, n_boot=n_boot)
        entry = {"name": name, "model": _model_info(bundle, source), "metrics": metrics}
        if scores.p_bacterial is not None and bundle.subtype:
            entry["subtype"] = _subtype_result(bundle, data, probs, bundle.threshold, scores.p_bacterial, n_boot)
        entries.append(entry)
        all_probs[name] = probs
    reference = entries[0]
    for entry in entries[1:]:
        entry["difference_from_first"] = paired_bootstrap_difference(
            labels, all_probs[reference["name"]], all_probs[entry["name"]],
            reference["metrics"]["threshold"], entry["metrics"]["threshold"], patients, n_boot=n_boot,
        )
    result = {"data": data.describe(), "reference": reference["name"], "models": entries,
              "subtype_compared": all((e.get("subtype") or {}).get("measured") for e in entries)}
    _write_json(result, out / "comparison.json")
    _write_predictions(data, {f"prob_{n}": p for n, p in all_probs.items()}, out / "predictions.csv")
    figures.plot_confusion_matrices(
        [(f"{e['name']} (t={e['metrics']['threshold']:.3f})", e["metrics"]["confusion_matrix"]) for e in entries],
        out / "confusion_matrices.png",
    )
    curves = [(e["name"], labels, all_probs[e["name"]], e["metrics"]["threshold"]) for e in entries]
    figures.plot_roc(curves, out / "roc.png")
    figures.plot_pr(curves, out / "pr.png")
    (out / "comparison.md").write_text(comparison_markdown(result), encoding="utf-8")
    if not quiet:
        print(comparison_table(result))
        print(f"report: {out / 'comparison.md'}")
    return result


def _unique_names(names: list[str], paths: list[str]) -> list[str]:
    """Model names, with the folder name added where two models share a name."""
    out = []
    for index, (name, path) in enumerate(zip(names, paths)):
        if names.count(name) > 1:
            name = f"{name} ({Path(path).name})"
        while name in out:
            name = f"{name} #{index + 1}"
        out.append(name)
    return out
