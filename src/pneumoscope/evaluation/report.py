"""``pneumoscope evaluate`` and ``pneumoscope compare``: a model (or several) on a labelled folder.

The images are listed and checked *before* any model is loaded, so a wrong folder is reported
at once; every model scores through :func:`~pneumoscope.evaluation.scoring.score_paths` and every
number comes from :func:`~pneumoscope.evaluation.metrics.compute_metrics`, so ``evaluate`` and
``compare`` cannot disagree about the same model on the same images.
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
from pneumoscope.evaluation.scoring import score_paths
from pneumoscope.markdown import interval as _ci, points_interval as _pct_ci, shown_path, table
from pneumoscope.models.bundle import Bundle, load_bundle
from pneumoscope.models.card import KERMANY_SUBTYPE, three_way_table

EVALUATE_FILES = (
    "metrics.json",
    "classification_report.txt",
    "predictions.csv",
    "confusion_matrix.png",
    "roc.png",
    "pr.png",
    "calibration.png",
    "score_histograms.png",
    "confident_errors.png",
    "report.md",
)
"""What ``evaluate`` writes into its output folder."""

SMALL_SET = 100
"""Below this many images, the report warns that its numbers are indicative only."""


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
    figures.plot_confusion_matrix(metrics["confusion_matrix"], out / "confusion_matrix.png",
                                  f"{name} at threshold {used_threshold:.3f}")
    curve = [(name, labels, probs, used_threshold)]
    figures.plot_roc(curve, out / "roc.png")
    figures.plot_pr(curve, out / "pr.png")
    figures.plot_calibration(labels, probs, out / "calibration.png", ece=metrics["ece"])
    figures.plot_score_histograms(labels, probs, used_threshold, out / "score_histograms.png")
    figures.plot_error_gallery(data.paths, labels, probs, used_threshold, out / "confident_errors.png")
    if (result.get("subtype") or {}).get("measured"):
        known = (labels == 1) & (data.subtypes >= 0)
        cut = result["subtype"]["threshold"]
        figures.plot_roc([(f"{name}: bacterial vs viral", data.subtypes[known], scores.p_bacterial[known], cut)],
                         out / "subtype_roc.png")
    (out / "report.md").write_text(_report_markdown(result, out), encoding="utf-8")
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


def summary_table(result: dict[str, Any]) -> str:
    """The compact table printed at the end of ``evaluate``."""
    data = result["data"]
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    lines = [
        f"{result['model']['name']} on {data['root']} [{data['split']}]: {result['n']} images "
        f"({result['n_normal']} NORMAL, {result['n_pneumonia']} PNEUMONIA, {data['n_patients']} patients)",
        f"threshold {result['threshold']:.4f} ({'overridden' if result['threshold_source'] == 'override' else 'stored with the model'})",
        f"  {'AUC':<12} {result['auc']:.4f}  95% CI {_ci(result['auc_ci95'])}",
        f"  {'accuracy':<12} {result['accuracy']:.4f}  95% CI {_ci(result['accuracy_ci95'])}",
    ]
    for key, label in (("sensitivity", "sensitivity"), ("specificity", "specificity"), ("precision", "precision"),
                       ("f1", "F1"), ("brier", "Brier"), ("ece", "ECE")):
        lines.append(f"  {label:<12} {result[key]:.4f}")
    lines.append(f"  {'confusion':<12} TN {tn}  FP {fp}  |  FN {fn}  TP {tp}")
    sub = result.get("subtype")
    if sub and sub.get("measured"):
        (tv, fb), (fv, tb) = sub["confusion_matrix"]
        lines.append(f"subtype on {sub['n']} PNEUMONIA films ({sub['n_bacterial']} bacterial, {sub['n_viral']} viral), "
                     f"threshold {sub['threshold']:.4f}")
        lines.append(f"  {'AUC':<12} {sub['auc']:.4f}  95% CI {_ci(sub['auc_ci95'])}")
        lines.append(f"  {'accuracy':<12} {sub['accuracy']:.4f}  95% CI {_ci(sub['accuracy_ci95'])}")
        lines.append(f"  {'bacterial':<12} sensitivity {sub['sensitivity']:.4f}, viral (specificity) {sub['specificity']:.4f}")
        lines.append(f"  {'confusion':<12} viral: {tv} right, {fb} called bacterial  |  bacterial: {fv} called viral, {tb} right")
    return "\n".join(lines)


def _reading(result: dict[str, Any]) -> list[str]:
    """A short plain-language reading of the numbers, for someone who does not read ROC curves."""
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    n, n_normal, n_pneu = result["n"], result["n_normal"], result["n_pneumonia"]
    lines = [
        f"Of the {n_pneu} radiographs with pneumonia, the model flagged {tp} ({result['sensitivity']:.0%}) "
        f"and missed {fn}.",
        f"Of the {n_normal} normal radiographs, it cleared {tn} ({result['specificity']:.0%}) "
        f"and raised {fp} false alarm{'s' if fp != 1 else ''}.",
        f"When it says PNEUMONIA it is right {result['precision']:.0%} of the time; this depends on how "
        f"common pneumonia is in the set ({n_pneu / n:.0%} here) and will differ elsewhere.",
        f"AUC {result['auc']:.3f}: given one pneumonia and one normal radiograph, the model scores the "
        f"pneumonia one higher {result['auc']:.0%} of the time, whatever the threshold (50 % is guessing).",
        f"Calibration: ECE {result['ece']:.3f}, i.e. within a probability band the stated probability and the "
        f"observed share of pneumonia differ by about {100 * result['ece']:.1f} points on average "
        f"(Brier {result['brier']:.3f}; 0 is perfect, 0.25 is a constant 50 %).",
    ]
    if result["sensitivity"] - result["specificity"] > 0.25:
        lines.append("The model leans towards PNEUMONIA: most of its errors are false alarms on normal "
                     "radiographs (a model trained on the imbalanced data as it is typically errs this way).")
    elif result["specificity"] - result["sensitivity"] > 0.25:
        lines.append("The model leans towards NORMAL: missed pneumonias are its dominant error, the costlier one.")
    lines.append(
        f"The 95 % intervals resample the {result['n_patients']} patients ({result['n_boot']} resamples), "
        "not the images, since one patient's radiographs are not independent evidence."
    )
    if n < SMALL_SET:
        lines.append(f"With only {n} images these numbers are indicative at best: note how wide the intervals are.")
    if result["threshold_source"] == "override":
        lines.append(f"The threshold was overridden; the model's own is {result['model']['stored_threshold']:.4f}.")
    return lines


def _report_markdown(result: dict[str, Any], out: Path) -> str:
    model, data = result["model"], result["data"]
    (tn, fp), (fn, tp) = result["confusion_matrix"]
    report = (out / "classification_report.txt").read_text(encoding="utf-8")
    rows = [
        ("AUC", result["auc"], _ci(result["auc_ci95"])),
        ("accuracy", result["accuracy"], _ci(result["accuracy_ci95"])),
        ("sensitivity (PNEUMONIA recall)", result["sensitivity"], ""),
        ("specificity (NORMAL recall)", result["specificity"], ""),
        ("precision (PNEUMONIA)", result["precision"], ""),
        ("F1 (PNEUMONIA)", result["f1"], ""),
        ("average precision", result["average_precision"], ""),
        ("Brier score", result["brier"], ""),
        (f"ECE ({result['ece_bins']} bins)", result["ece"], ""),
    ]
    table = "\n".join(f"| {name} | {value:.4f} | {ci} |" for name, value, ci in rows)
    reading = "\n".join(f"- {line}" for line in _reading(result))
    threshold_note = "stored with the model"
    if result["threshold_source"] == "override":
        threshold_note = f"overridden (the model's own: {model['stored_threshold']:.4f})"
    return f"""# Evaluation of `{model['name']}` on {data['split']}

- Model: `{model['path']}` ({model['arch']}, {model['image_size']} px, temperature {model['temperature']:.3f})
- Images: `{data['root']}` [{data['split']}]: {result['n']} ({result['n_normal']} NORMAL,
  {result['n_pneumonia']} PNEUMONIA) from {data['n_patients']} patients
- Threshold: {result['threshold']:.4f}, {threshold_note}

Research and education only; not a medical device.

## Reading

{reading}

## Metrics

| metric | value | 95 % CI (patient bootstrap) |
|---|---:|---|
{table}

Confusion matrix (rows true, columns predicted): TN {tn}, FP {fp}, FN {fn}, TP {tp}.

![confusion matrix](confusion_matrix.png)

## Per class (scikit-learn)

```
{report.rstrip()}
```

## ROC and precision-recall

The dot on each curve is the operating point at the threshold above.

![ROC](roc.png) ![precision-recall](pr.png)

## Calibration

![calibration](calibration.png)

## Scores per true class

![score histograms](score_histograms.png)

## Most confident errors

Normal radiographs scored most surely as pneumonia, and pneumonia radiographs scored most surely
as normal: the first place to look for label noise, artefacts or a systematic blind spot.

![most confident errors](confident_errors.png)

{_subtype_markdown(result.get("subtype"))}
Every image's probability is in `predictions.csv`; every number above is in `metrics.json`.
"""


def _subtype_markdown(sub: dict[str, Any] | None) -> str:
    """The bacterial-vs-viral section of ``report.md`` (empty for a model without the head)."""
    if not sub:
        return ""
    if not sub.get("measured"):
        return f"## Bacterial vs viral pattern\n\nNot measured: {sub['reason']}.\n"
    (tv, fb), (fv, tb) = sub["confusion_matrix"]
    rows = [("AUC", sub["auc"], _ci(sub["auc_ci95"])), ("accuracy", sub["accuracy"], _ci(sub["accuracy_ci95"])),
            ("sensitivity (bacterial recall)", sub["sensitivity"], _ci(sub.get("sensitivity_ci95", (None, None)))),
            ("specificity (viral recall)", sub["specificity"], _ci(sub.get("specificity_ci95", (None, None)))),
            ("precision (bacterial)", sub["precision"], ""), ("ECE", sub["ece"], "")]
    table = "\n".join(f"| {name} | {value:.4f} | {ci} |" for name, value, ci in rows)
    three = sub["three_way"]
    k = KERMANY_SUBTYPE
    return f"""## Bacterial vs viral pattern

The subtype head on the {sub['n']} PNEUMONIA films of known subtype ({sub['n_bacterial']} bacterial,
{sub['n_viral']} viral), at its own threshold {sub['threshold']:.4f} on p(bacterial). Kermany et al.
(2018) report, on the official test split: AUC {k['auc']:.3f}, accuracy {100 * k['accuracy']:.1f} %, sensitivity {100 * k['sensitivity']:.1f} %,
specificity {100 * k['specificity']:.1f} %. Telling the two apart on a film is uncertain even for radiologists.

| metric | value | 95 % CI (patient bootstrap) |
|---|---:|---|
{table}

Confusion (rows true): viral {tv} right, {fb} called bacterial; bacterial {fv} called viral, {tb} right.

Three classes (rows true, columns answered; the pneumonia decision first, then the subtype on the
films called PNEUMONIA), accuracy {three['accuracy']:.1%}:

{three_way_table(three)}

![subtype ROC](subtype_roc.png)
"""


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
    (out / "comparison.md").write_text(_comparison_markdown(result), encoding="utf-8")
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


_SUBTYPE_ROWS = (
    ("auc", "subtype AUC"), ("accuracy", "subtype accuracy"), ("sensitivity", "subtype bacterial recall"),
    ("specificity", "subtype viral recall"), ("threshold", "subtype threshold"),
)
"""The bacterial-vs-viral rows of ``compare``, shown when every model has a subtype head."""

_COMPARE_ROWS = (
    ("auc", "AUC"), ("accuracy", "accuracy"), ("sensitivity", "sensitivity"),
    ("specificity", "specificity (NORMAL recall)"), ("precision", "precision"), ("f1", "F1"),
    ("brier", "Brier"), ("ece", "ECE"), ("threshold", "threshold"),
)


def comparison_table(result: dict[str, Any]) -> str:
    """The side-by-side table printed at the end of ``compare``."""
    entries = result["models"]
    width = max(12, *(len(e["name"]) for e in entries))
    data = result["data"]
    lines = [f"{data['root']} [{data['split']}]: {data['n_images']} images, {data['n_patients']} patients",
             f"{'':<28}" + "".join(f"{e['name']:>{width + 2}}" for e in entries)]
    for key, label in _COMPARE_ROWS:
        lines.append(f"{label:<28}" + "".join(f"{e['metrics'][key]:>{width + 2}.4f}" for e in entries))
    lines.append(f"{'TN FP / FN TP':<28}" + "".join(
        f"{'{} {} / {} {}'.format(*e['metrics']['confusion_matrix'][0], *e['metrics']['confusion_matrix'][1]):>{width + 2}}"
        for e in entries))
    if result.get("subtype_compared"):
        for key, label in _SUBTYPE_ROWS:
            lines.append(f"{label:<28}" + "".join(f"{e['subtype'][key]:>{width + 2}.4f}" for e in entries))
    return "\n".join(lines)


def _comparison_markdown(result: dict[str, Any]) -> str:
    entries = result["models"]
    data = result["data"]
    rows = []
    for key, label in _COMPARE_ROWS:
        cells = []
        for e in entries:
            m = e["metrics"]
            ci = f" {_ci(m[key + '_ci95'])}" if key + "_ci95" in m else ""
            cells.append(f"{m[key]:.4f}{ci}")
        rows.append([label, *cells])
    rows.append(["TN FP / FN TP", *("{} {} / {} {}".format(*e["metrics"]["confusion_matrix"][0],
                                                            *e["metrics"]["confusion_matrix"][1]) for e in entries)])
    if result.get("subtype_compared"):
        for key, label in _SUBTYPE_ROWS:
            cells = [f"{e['subtype'][key]:.4f}" + (f" {_ci(e['subtype'][key + '_ci95'])}" if key + "_ci95" in e["subtype"] else "")
                     for e in entries]
            rows.append([f"{label} (PNEUMONIA films)", *cells])
    figures = table(["metric", *(f"`{e['name']}`" for e in entries)], rows)
    story = []
    first = entries[0]
    for e in entries[1:]:
        d = e["difference_from_first"]
        a, b = first["metrics"], e["metrics"]
        story.append(
            f"- `{e['name']}` vs `{first['name']}`: NORMAL recall (specificity) {a['specificity']:.1%} -> "
            f"{b['specificity']:.1%} (difference 95 % CI {_pct_ci(d['specificity_diff_ci95'])}), "
            f"sensitivity {a['sensitivity']:.1%} -> {b['sensitivity']:.1%} "
            f"(CI {_pct_ci(d['sensitivity_diff_ci95'])}), AUC {a['auc']:.3f} -> {b['auc']:.3f} "
            f"(difference CI {_ci(d['auc_diff_ci95'])}). An interval that excludes 0 is a difference "
            "these images can vouch for."
        )
    models = "\n".join(f"- `{e['name']}`: `{e['model']['path']}` ({e['model']['arch']}, "
                       f"{e['model']['image_size']} px, threshold {e['metrics']['threshold']:.4f})" for e in entries)
    return f"""# Comparison on {data['split']}

Images: `{data['root']}` [{data['split']}]: {data['n_images']} images from {data['n_patients']} patients,
the same for every model. Each model is taken at its own stored threshold.

{models}

{figures}

Intervals: 95 %, patient-level bootstrap.

## Reading

{chr(10).join(story) if story else '- A single model: nothing to compare it with.'}

Differences are paired: each resample of patients scores every model on the same images.

## Confusion matrices

![confusion matrices](confusion_matrices.png)

## ROC and precision-recall (operating points marked)

![ROC](roc.png) ![precision-recall](pr.png)
"""
