"""The leakage study: how much an image-level split flatters the validation score.

One command (``pneumoscope leakage --data ROOT --epochs N --out DIR``) runs the experiment:

1. About 15 % of the training folder's *patients* are put aside first. Neither model ever sees
   them; they stand in for the new patients a model meets after deployment.
2. The rest (the pool) is split into train/val twice with the same validation share and class
   stratification: once by image (one child's radiographs can land on both sides) and once by
   patient (``pneumoscope``'s rule).
3. The same model (``configs/baseline.yaml``: a small CNN at 128 px, same seed) is trained on
   each split with :func:`pneumoscope.training.train`.
4. Both models are scored on their own validation split and on the held-out patients, through
   the same scoring and metric code as ``pneumoscope evaluate``.

The overstatement is the validation score minus the held-out score. The patient-level run is
the control: its gap is what chance alone gives, so the image-level run's extra gap is the leak.
With the baseline config a run takes about 3 minutes on 2 CPU cores at 3 epochs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from pneumoscope.config import CONFIGS_DIR, ConfigError, load_config
from pneumoscope.data.collection import (
    Record,
    patient_split,
    read_manifest,
    records_for,
    require_both_classes,
    write_manifest,
)
from pneumoscope.evaluation.metrics import compute_metrics
from pneumoscope.evaluation.scoring import score_paths
from pneumoscope.markdown import interval as _ci, shown_path

SPLIT_LEVELS = ("image", "patient")
HOLDOUT_FRACTION = 0.15
HOLDOUT_SEED = 2018
"""Differs from the configs' ``split_seed``: the held-out draw is independent of the train/val draw."""
POOL_MARKER = ".pneumoscope-leakage-pool"


def default_config_path() -> Path:
    """The baseline config shipped in the package (``pneumoscope/configs``, which the checkout's
    ``configs/`` links to): found the same from a source checkout and from an installed wheel."""
    candidate = CONFIGS_DIR / "baseline.yaml"
    if not candidate.is_file():
        raise ConfigError(f"{candidate} is missing from the installed package: reinstall pneumoscope or pass config=")
    return candidate


def hold_out_patients(
    records: list[Record], fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED
) -> tuple[list[Record], list[Record]]:
    """(pool, held out): about ``fraction`` of each class's images, whole patients only."""
    marked = patient_split(records, fraction, seed)
    pool = [r for r in marked if r.split == "train"]
    held_out = [r for r in marked if r.split == "val"]
    return pool, held_out


def link_collection(records: list[Record], folder: Path) -> None:
    """``folder/{NORMAL,PNEUMONIA}/<original name>`` for each record: symbolic links to the
    originals (copies where links are not allowed), so :func:`pneumoscope.training.train` can
    read the pool as an ordinary training folder and the file names still give the patient."""
    for record in records:
        target = folder / record.class_name / Path(record.path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(Path(record.path).resolve(), target)
        except OSError:
            shutil.copy2(record.path, target)


def _prepare_pool(pool: list[Record], out: Path) -> Path:
    root = out / "pool"
    if root.exists():
        if not (root / POOL_MARKER).is_file():
            raise ConfigError(f"{root} exists and is not a leakage pool made by this study: choose another --out")
        shutil.rmtree(root)
    link_collection(pool, root / "train")
    (root / POOL_MARKER).write_text("made by pneumoscope leakage; safe to delete\n", encoding="utf-8")
    return root


def leaked_share(records: list[Record]) -> float:
    """Share of validation images whose patient also has images in training."""
    train_patients = {r.patient for r in records if r.split == "train"}
    val = [r for r in records if r.split == "val"]
    return float(np.mean([r.patient in train_patients for r in val])) if val else 0.0


def _score(bundle: Any, records: list[Record], n_boot: int, progress: bool) -> dict[str, Any]:
    probs = score_paths(bundle, [r.path for r in records], progress=progress).probs
    labels = np.array([r.label for r in records])
    return compute_metrics(labels, probs, bundle.threshold, [r.patient for r in records], n_boot=n_boot)


def run_leakage_study(
    data: str | Path,
    out: str | Path,
    epochs: int = 3,
    *,
    config: str | Path | None = None,
    overrides: Mapping[str, object] | None = None,
    holdout_fraction: float = HOLDOUT_FRACTION,
    n_boot: int = 1000,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the baseline on an image-level and on a patient-level split of ``data``'s training
    folder, and measure how far each validation score overstates the score on held-out patients.

    ``overrides``: dotted config keys on top of ``epochs`` (tests shrink the run with them).
    Writes ``leakage.json``, ``leakage.md``, ``leakage.png``, the held-out manifest and one run
    folder per split level into ``out``; returns what ``leakage.json`` holds.
    """
    from pneumoscope.evaluation.figures import plot_leakage
    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.training import train

    data, out = Path(data), Path(out)
    config_path = Path(config) if config else default_config_path()
    settings = {"train.epochs": epochs, **(overrides or {})}
    base = load_config(config_path, **settings)
    records = records_for(data, "train")
    require_both_classes(records, f"{data} (train)")
    pool, held_out = hold_out_patients(records, holdout_fraction)
    require_both_classes(held_out, "the held-out patients")
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(held_out, out / "heldout_manifest.csv")
    pool_root = _prepare_pool(pool, out)

    runs: list[dict[str, Any]] = []
    for level in SPLIT_LEVELS:
        cfg = load_config(config_path, **{**settings, "data.split_level": level, "name": f"{base.name}-{level}-split"})
        run_dir = train(cfg, out / f"{level}-split", root=pool_root, progress=progress)
        assert run_dir is not None  # single process: always the global-zero rank
        bundle = load_bundle(run_dir)
        manifest = read_manifest(run_dir / "split_manifest.csv")
        val_records = [r for r in manifest if r.split == "val"]
        validation = _score(bundle, val_records, n_boot, progress)
        heldout = _score(bundle, held_out, n_boot, progress)
        runs.append({
            "split_level": level,
            "run": str(run_dir),
            "n_train": sum(r.split == "train" for r in manifest),
            "n_val": len(val_records),
            "val_images_of_training_patients": leaked_share(manifest),
            "train_seconds": bundle.record.training.get("train_seconds"),
            "epochs_run": bundle.record.training.get("epochs_run"),
            "validation_reported_by_run": {"auc": bundle.record.validation.auc,
                                           "accuracy": bundle.record.validation.accuracy},
            "validation": validation,
            "heldout": heldout,
            "overstatement": {
                "auc": validation["auc"] - heldout["auc"],
                "accuracy": validation["accuracy"] - heldout["accuracy"],
            },
        })
    result = {
        "data": str(data),
        "config": shown_path(config_path),
        "settings": {k: v for k, v in settings.items()},
        "thresholds": {run["split_level"]: run["validation"]["threshold"] for run in runs},
        "heldout": {
            "fraction": holdout_fraction,
            "seed": HOLDOUT_SEED,
            "n_images": len(held_out),
            "n_patients": len({r.patient for r in held_out}),
            "n_normal": sum(r.label == 0 for r in held_out),
            "n_pneumonia": sum(r.label == 1 for r in held_out),
        },
        "pool": {"n_images": len(pool), "n_patients": len({r.patient for r in pool})},
        "runs": runs,
        "extra_overstatement_of_image_split": {
            key: runs[0]["overstatement"][key] - runs[1]["overstatement"][key] for key in ("auc", "accuracy")
        },
    }
    (out / "leakage.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot_leakage(runs, out / "leakage.png")
    (out / "leakage.md").write_text(_markdown(result), encoding="utf-8")
    print(_table(result))
    print(f"report: {out / 'leakage.md'}")
    return result


def _table(result: dict[str, Any]) -> str:
    lines = [f"{'split':<14}{'val AUC':>9}{'held-out AUC':>14}{'over':>8}{'val acc':>9}{'held-out acc':>14}{'over':>8}"]
    for run in result["runs"]:
        v, h, o = run["validation"], run["heldout"], run["overstatement"]
        lines.append(f"{run['split_level'] + '-level':<14}{v['auc']:>9.4f}{h['auc']:>14.4f}{o['auc']:>+8.4f}"
                     f"{v['accuracy']:>9.4f}{h['accuracy']:>14.4f}{o['accuracy']:>+8.4f}")
    return "\n".join(lines)


def _markdown(result: dict[str, Any]) -> str:
    image, patient = result["runs"]
    held = result["heldout"]
    extra = result["extra_overstatement_of_image_split"]
    rows = []
    for run in result["runs"]:
        v, h, o = run["validation"], run["heldout"], run["overstatement"]
        rows.append(
            f"| {run['split_level']}-level | {run['n_train']} / {run['n_val']} | "
            f"{run['val_images_of_training_patients']:.0%} | {v['auc']:.4f} | {h['auc']:.4f} {_ci(h['auc_ci95'])} | "
            f"{o['auc']:+.4f} | {v['accuracy']:.4f} | {h['accuracy']:.4f} {_ci(h['accuracy_ci95'])} | {o['accuracy']:+.4f} |"
        )
    settings = " ".join(f"{k}={v}" for k, v in result["settings"].items())
    return f"""# Leakage, measured: image-level vs patient-level validation split

Same model (`{result['config']}`, {settings}), same seed, trained twice on the same pool of
{result['pool']['n_images']} training images ({result['pool']['n_patients']} patients): once with a random
*image-level* train/val split, once with the *patient-level* split. Both are then scored on
{held['n_images']} images of {held['n_patients']} held-out patients ({held['n_normal']} NORMAL,
{held['n_pneumonia']} PNEUMONIA) that neither model saw, each at its stored threshold
(image-level {result['thresholds']['image']:.3f}, patient-level {result['thresholds']['patient']:.3f}).

| split | train / val images | val images of training patients | val AUC | held-out AUC (95 % CI) | AUC overstated by | val accuracy | held-out accuracy (95 % CI) | accuracy overstated by |
|---|---|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

![own validation score vs held-out score, per split](leakage.png)

## Reading

- In the image-level split, {image['val_images_of_training_patients']:.0%} of the validation images belong to a
  patient the model also trained on: it is partly graded on lungs it has already seen.
- The image-level run's validation overstates its held-out score by {image['overstatement']['auc']:+.4f} AUC and
  {image['overstatement']['accuracy']:+.4f} accuracy; the patient-level run's by {patient['overstatement']['auc']:+.4f}
  AUC and {patient['overstatement']['accuracy']:+.4f} accuracy. The patient-level run is the control (its gap is
  chance and the difference between two random draws of patients), so the leak adds about
  {extra['auc']:+.4f} AUC and {extra['accuracy']:+.4f} accuracy of false optimism.
- Near the ceiling (AUC close to 1) an AUC gap is necessarily small; accuracy and the share of
  leaked validation images show the mechanism more plainly. A longer run, which memorises
  its training patients more, would be expected to widen the gap (not measured here).
- Intervals are 95 %, patient-level bootstrap of the held-out set. Both runs are single seeds:
  read differences smaller than the intervals as "no measurable difference".

## Reproduce

```
pneumoscope leakage --data {result['data']} --epochs {result['settings'].get('train.epochs')} --out DIR
```

The held-out patients are listed in `heldout_manifest.csv`; each run folder holds its split
(`split_manifest.csv`), its curves and a loadable model (`pneumoscope evaluate ... --model RUN`).
"""
