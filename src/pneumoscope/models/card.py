"""The model card: what a reader needs before trusting a model, written from the run's own record.

Every figure in it comes from ``model.json`` (written by training), so the card cannot drift
from the model it describes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from pneumoscope.config import parse_record
from pneumoscope.markdown import percent as _pct
from pneumoscope.models.bundle import CARD, META


def _finalized(training: dict[str, Any]) -> str:
    command = training.get("finalized_by")
    if not command:
        return ""
    return (f"; calibration, threshold and out-of-distribution statistics recomputed on the same weights "
            f"and split by `{command}`")


def selection_text(config_yaml: str) -> str:
    """How the best epoch was picked, from the run's own config."""
    from pneumoscope.data.perturb import SELECTION_SET

    if ((yaml.safe_load(config_yaml) or {}).get("train") or {}).get("select_on") == "stressed":
        copies = ", ".join(f"{family} {strength:g}" for family, strength in SELECTION_SET)
        return f"AUC on validation pooled with perturbed copies: {copies}"
    return "validation AUC"


def _stressed(meta: dict[str, Any]) -> str:
    """The stressed-validation figures, for a model whose threshold was chosen on them."""
    s = meta.get("validation_stressed")
    if not s:
        return ""
    (tn, fp), (fn, tp) = s["confusion_matrix"]
    return f"""
**Stressed validation** ({s['n']:,} images: {s['split']}):

| AUC | accuracy | sensitivity | specificity |
|---:|---:|---:|---:|
| {s['auc']:.4f} | {_pct(s['accuracy'])} | {_pct(s['sensitivity'])} | {_pct(s['specificity'])} |

Confusion matrix on the stressed pool: `[[{tn}, {fp}], [{fn}, {tp}]]`. The threshold and the
temperature were fitted on this pool; the per-perturbation table is in the robustness section.
"""


KERMANY_SUBTYPE = {"auc": 0.940, "accuracy": 0.907, "sensitivity": 0.886, "specificity": 0.909}
"""Kermany et al. 2018 (Cell 172:1122), bacterial vs viral on their test split: the reference."""


def three_way_table(three: dict[str, Any]) -> str:
    """The NORMAL / bacterial / viral confusion matrix as Markdown (rows true, columns answered)."""
    rows = "\n".join(f"| {name} | " + " | ".join(str(x) for x in row) + " |"
                     for name, row in zip(three["classes"], three["matrix"]))
    return f"| true \\ answered | {' | '.join(three['classes'])} |\n|---|---:|---:|---:|\n{rows}"


def _subtype(meta: dict[str, Any]) -> str:
    """The bacterial-vs-viral section, for a model with a subtype head."""
    sub = meta.get("subtype")
    if not sub:
        return ""
    v = sub["validation"]
    k = KERMANY_SUBTYPE
    (tv, fb), (fv, tb) = v["confusion_matrix"]
    stressed = sub.get("validation_stressed")
    stressed_row = "" if not stressed else (
        f"| this model, stressed validation pool ({stressed['n']:,} films) | {stressed['auc']:.3f} | "
        f"{_pct(stressed['accuracy'])} | {_pct(stressed['sensitivity'])} | {_pct(stressed['specificity'])} |\n")
    three = v.get("three_way")
    three_text = "" if not three else f"""
Three classes on validation (rows true, columns answered; pneumonia decision first, then the
subtype), accuracy {_pct(three['accuracy'])}:

{three_way_table(three)}
"""
    return f"""
## Bacterial or viral pattern (second head)
For a film labelled PNEUMONIA that passes as a chest X-ray, a second output on the same features
gives p(bacterial): the probability that the film shows a pattern more typical of bacterial than
of viral pneumonia. {'It is fitted on the frozen network (a logistic regression on its features), so the pneumonia output is untouched' if meta['training'].get('backbone_training') else 'It is trained jointly, its loss masked to PNEUMONIA films'} (subtype labels from the
file names, which come from clinical records); it is calibrated by its own temperature
(T = {sub['temperature']:.3f}). Operating point: **{sub['threshold']:.4f}** on p(bacterial); rule:
{sub['threshold_rule']}.

| | AUC | accuracy | sensitivity (bacterial) | specificity (viral) |
|---|---:|---:|---:|---:|
| this model, patient-level validation ({v['n']} films: {v['n_bacterial']} bacterial, {v['n_viral']} viral) | {v['auc']:.3f} [{v['auc_ci95'][0]:.3f}, {v['auc_ci95'][1]:.3f}] | {_pct(v['accuracy'])} | {_pct(v['sensitivity'])} | {_pct(v['specificity'])} |
{stressed_row}| Kermany et al. 2018, official test split (reference) | {k['auc']:.3f} | {_pct(k['accuracy'])} | {_pct(k['sensitivity'])} | {_pct(k['specificity'])} |

Confusion on validation: viral {tv} right, {fb} called bacterial; bacterial {fv} called viral, {tb} right.
{three_text}
Limits: one hospital; subtype labels from clinical records, not confirmed for every child; telling
bacterial from viral pneumonia on a film is uncertain even for radiologists, and the two overlap.
The output is a pattern, never a diagnosis of the cause, and never a reason to give or withhold
antibiotics. It is shown only when the label is PNEUMONIA and the image passes as a chest X-ray.
"""


def _backbone_command(training: dict[str, Any]) -> str:
    """For a head fitted on a frozen network: the command that trained that network."""
    backbone = training.get("backbone_training")
    if not backbone:
        return ""
    return (f", a subtype head on the frozen network of `{training['subtype_head_on']}`, itself trained by "
            f"`{backbone.get('command')}`{_finalized(backbone)}")


def _training_lines(training: dict[str, Any], config_yaml: str) -> str:
    members = training.get("members")
    if members:  # an ensemble: each member as its own card would describe it
        lines = [f"- A deep ensemble of {len(members)} networks, each trained on its own by its own config "
                 "(mean logits; calibration, threshold and the not-a-chest-X-ray check fitted anew on the ensemble):"]
        for index, member in enumerate(members, 1):
            sub = member["training"]
            text = _training_lines(sub, "").replace("\n", "\n  ").replace("- ", "", 1)
            lines.append(f"- Member {index}, `{member['name']}` (`{sub.get('command')}`"
                         f"{_backbone_command(sub)}):\n  {text}")
        return "\n".join(lines)
    backbone = training.get("backbone_training")
    if not backbone:
        return (f"- Seed {training.get('seed', 42)}; {training['epochs_run']} epochs run, best epoch {training['best_epoch']}\n"
                f"  (by {selection_text(config_yaml)}); {training['train_seconds'] / 60:.1f} min of training, precision "
                f"`{training['precision']}`,\n  on {training['machine']}.")
    return (f"- Network: seed {backbone.get('seed', 42)}; {backbone['epochs_run']} epochs run, best epoch "
            f"{backbone['best_epoch']} (by {backbone.get('selection') or selection_text(config_yaml) or 'validation AUC'}); {backbone['train_seconds'] / 60:.1f} min of "
            f"training, precision `{backbone['precision']}`, on {backbone['machine']}.\n"
            f"- Subtype head: fitted in {training['train_seconds'] / 60:.1f} min on {training['machine']}, the network "
            "frozen: the pneumonia output is the network's, unchanged.")


def _fit_text(ood: dict[str, Any]) -> str:
    """How the Gaussian was fitted, as a clause of the card's sentence."""
    text = ""
    if ood.get("fit_on") == "stressed":
        copies = ood.get("stressed_copies", 1)
        each = "one stressed copy each" if copies == 1 else f"{copies} stressed copies each"
        text += (f"; the Gaussian fitted on the training films with {each}, a crop, a zoom-out, noise..., so the "
                 "shifts the model is built to survive lie inside it")
    if ood.get("feature_transform") == "log":
        from pneumoscope.models.feature_model import LOG_SHIFT

        text += f"; on the features' logarithm (log(features + {LOG_SHIFT:g}): pooled swish outputs, long-tailed)"
    return text


def _members_text(ood: dict[str, Any]) -> str:
    """Whose features the distance reads: every member's, or the first few (``OodConfig.members``)."""
    members = ood.get("members")
    if members is None:
        return "members'"
    return "first member's" if members == 1 else f"first {members} members'"


def _ood_text(ood: dict[str, Any]) -> str:
    """The check's lines: two zones (older models) or three."""
    if ood.get("caution_distance") is None:
        return (f"Images in colour or of absurd shape are flagged, and so are images whose network features lie\n"
                f"farther from the training distribution (Mahalanobis distance) than {_pct(ood.get('distance_quantile', 0.995))} of\n"
                f"validation X-rays (threshold {ood.get('distance_threshold', float('nan')):.1f}); validation X-rays flagged:\n"
                f"{_pct(ood.get('val_flagged_rate', float('nan')))}; training X-rays flagged: {_pct(ood.get('train_flagged_rate', float('nan')))}.")
    rows = "\n".join(f"| {name.replace('_', ' ')} | {z['n']} | {_pct(z['refused'])} | {_pct(z['cautioned'])} | {z['median_distance']:.1f} |"
                     for name, z in ood.get("zones", {}).items())
    return (f"Images in colour, of absurd shape or inverted are refused. Otherwise the network's features decide,\n"
            f"by their Mahalanobis distance from the training films' (the root mean square over the {_members_text(ood)}\n"
            f"feature blocks{_fit_text(ood)}), in three zones: up to **{ood['caution_distance']:.1f}** the answer is given; up to\n"
            f"**{ood['distance_threshold']:.1f}** it is given with a caution naming the distance (a film from another\n"
            f"series lands there); beyond, the image is refused as not a chest X-ray. Rule: {ood.get('rule')}.\n\n"
            "Genuine films, as fitted (`pneumoscope train`; the corpora of non-X-rays are measured by `bench/ood.py`, below):\n\n"
            "| films | n | refused | cautioned | median distance |\n|---|---:|---:|---:|---:|\n" + rows)


def render_card(meta: dict[str, Any], config_yaml: str) -> str:
    record = parse_record(meta)
    val = record.validation
    training = record.training
    ood = meta.get("ood", {})
    (tn, fp), (fn, tp) = val.confusion_matrix
    files = "\n".join(f"| `{name}` | `{digest}` |" for name, digest in record.files.items())
    extra = record.card_sections
    sections = "\n\n".join(f"## {title}\n{body}" for title, body in extra.items())
    return f"""# Model card: pneumoscope `{record.name}`

**Intended use: research and education. Not a medical device; not for diagnosis or triage.**

## What it does
Reads one frontal paediatric chest radiograph and gives the probability that it shows
pneumonia (bacterial or viral{', and for pneumonia which pattern it resembles more' if record.subtype else ''}), a label at a threshold chosen on validation data, a Grad-CAM
heatmap, and a flag when the image does not look like a chest X-ray at all.

## How it was trained
- Command: `{training.get('command', 'pneumoscope train --config configs/' + record.name + '.yaml')}`{_finalized(training)}{_backbone_command(training)}
- Data: Kermany et al. 2018 / Kaggle "Chest X-Ray Images (Pneumonia)" training folder at
  {record.image_size} x {record.image_size} px (CC BY 4.0, doi:10.17632/rscbjbr9sj.2);
  training part {training['class_counts_train'][0]:,} NORMAL / {training['class_counts_train'][1]:,} PNEUMONIA images.
- Split: by patient (patient ids parsed from file names), class-stratified, seed
  {training.get('split_seed', 42)}: {val.n} validation images ({val.n_normal} NORMAL,
  {val.n_pneumonia} PNEUMONIA) from patients never seen in training. The official test
  split was never seen: it is a sealed benchmark.
{_training_lines(training, config_yaml)}

## Validation figures (patient-level validation split; not the test set)
| AUC | accuracy | sensitivity | specificity (NORMAL recall) |
|---:|---:|---:|---:|
| {val.auc:.4f} | {_pct(val.accuracy)} | {_pct(val.sensitivity)} | {_pct(val.specificity)} |

Confusion matrix at the threshold (rows: true NORMAL, PNEUMONIA; columns: predicted):
`[[{tn}, {fp}], [{fn}, {tp}]]`.
{_stressed(meta)}{_subtype(meta)}
## Decision threshold and calibration
- Threshold **{record.threshold:.4f}** on the calibrated probability; rule: {record.threshold_rule}.
- Calibration: temperature scaling fitted on {'the stressed validation pool' if record.validation_stressed else 'validation'}, T = {record.temperature:.3f}.

## Not a chest X-ray?
{_ood_text(ood)}

{sections}

## Known limits
- Paediatric radiographs (age 1-5) from one hospital in Guangzhou; adults, other hospitals,
  lateral views and other diseases were not in the training data.
- The validation split comes from the same source as training, so its clean figures are
  optimistic. In this data set how a film was acquired predicts its label: NORMAL films are
  mostly wide-field, larger and squarer, PNEUMONIA films tight and wider (so squeezed more by
  the square resize, and sharper after it). A model can score AUC 0.999 on clean validation by
  reading those cues and then call tightly framed healthy films from another series PNEUMONIA.
  `pneumoscope stress` measures that shift without the test set: see the robustness section,
  where each perturbation's flips are counted against the unperturbed answer. A different
  hospital's films can still differ in ways no perturbation here imitates.
- {'Bacterial and viral pneumonia are one class for the pneumonia label; the subtype output is a pattern (above)' if record.subtype else 'Bacterial and viral pneumonia are one class'}; the heatmap
  shows what drove the pneumonia score, not where the disease is.

## Files
| file | SHA-256 |
|---|---|
{files}

Loading verifies these hashes and refuses a file that does not match.

## Configuration
```yaml
{config_yaml.strip()}
```
"""


def write_card(folder: str | Path) -> Path:
    folder = Path(folder)
    meta = json.loads((folder / META).read_text(encoding="utf-8"))
    config_yaml = (folder / "config.yaml").read_text(encoding="utf-8")
    path = folder / CARD
    path.write_text(render_card(meta, config_yaml), encoding="utf-8")
    return path


def add_card_section(folder: str | Path, title: str, body: str) -> Path:
    """Record a measured section (a stress table, an OOD check) in ``model.json`` and re-render the card.

    ``model.json`` is not among the hashed files, and the decision values are sealed in the weights,
    so adding prose here cannot change what the model decides.
    """
    folder = Path(folder)
    meta_path = folder / META
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.setdefault("card_sections", {})[title] = body
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return write_card(folder)
