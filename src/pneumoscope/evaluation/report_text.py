"""The words of ``evaluate`` and ``compare``: the tables they print and the ``report.md`` /
``comparison.md`` they write, rendered from the result dictionaries alone (plus the
classification report already on disk). Kept apart from :mod:`pneumoscope.evaluation.report`,
which scores the models and writes the files, so that wording and layout can change without
touching how a number is obtained, and every number shown is one already in ``metrics.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pneumoscope.languages import PAGE_FIGURES, figure_file
from pneumoscope.markdown import interval as _ci, points_interval as _pct_ci, table
from pneumoscope.models.card import KERMANY_SUBTYPE, three_way_table

SMALL_SET = 100
"""Below this many images, the report warns that its numbers are indicative only."""


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


def report_markdown(result: dict[str, Any], out: Path) -> str:
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
    spanish = ", ".join(f"[{titles[1]}]({figure_file(stem, 'es')})" for stem, titles in PAGE_FIGURES.items())
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

The same three figures in Spanish, for the web page's About tab on a Spanish browser:
{spanish}.

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


def comparison_markdown(result: dict[str, Any]) -> str:
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
