"""After fitting: what turns a network into a model a user can trust. On the patient-level
validation split, the logits are calibrated (temperature scaling), the decision threshold is
placed by the config's rule (on clean or stressed validation), the out-of-distribution check's
statistics and lines are fitted, the subtype head's operating point is chosen, and every figure
the card quotes is measured; then the bundle is saved.

Shared by a training run, a subtype head, an ensemble (``ensembling``) and ``pneumoscope
finalize``, which recomputes all of it for a saved model with the current code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.config import SUBTYPE_NAMES, Config, ConfigError, ThresholdConfig
from pneumoscope.data.perturb import STRESSED_SET
from pneumoscope.models.decision import choose_threshold, describe_rule, fit_temperature, sigmoid


def finalize(
    config: Config, net: Any, datamodule: Any, run_dir: Path, extra: dict[str, Any],
    card_sections: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Calibrate, choose the threshold, fit the OOD model, measure validation, save the bundle."""
    import torch

    from pneumoscope.data.perturb import one_stressed_copy, stressed_copies
    from pneumoscope.data.collection import subtype_targets
    from pneumoscope.data.images import as_training_copy
    from pneumoscope.models.feature_model import fit_members_check, fit_zones, mahalanobis
    from pneumoscope.models.bundle import save_bundle
    from pneumoscope.models.card import write_card
    from pneumoscope.inference.export import onnx_forward

    net = net.float().eval()
    score = onnx_forward(net)  # ONNX Runtime: the graph users run, 2-2.5x faster than eager
    val_images, val_labels = datamodule.arrays("val")
    train_images, _ = datamodule.arrays("train")
    val_logits, val_features = score(val_images, features=True)
    _, train_features = score(train_images, features=True)
    rule = config.threshold
    stressed = rule.fit_on == "stressed" or (net.has_subtype and config.subtype_threshold.fit_on == "stressed")
    pool_logits, pool_labels, pool_features = val_logits, val_labels, val_features
    zones = config.ood.zones
    if stressed or zones:
        copies, pool_labels = stressed_copies(val_images, val_labels, STRESSED_SET, seed=config.data.split_seed)
        # The Predictor feeds every film in the training copies' format; so are the copies scored here.
        copies = as_training_copy(copies[len(val_labels):])
        copy_logits, copy_features = score(copies, features=net.has_subtype or zones)
        pool_logits = np.concatenate([val_logits, copy_logits])
        pool_features = np.concatenate([val_features, copy_features]) if net.has_subtype or zones else None
    fit_logits, fit_labels = (pool_logits, pool_labels) if rule.fit_on == "stressed" else (val_logits, val_labels)
    temperature = fit_temperature(fit_logits, fit_labels)
    threshold = choose_threshold(fit_labels, sigmoid(fit_logits / temperature), rule)
    if config.ood.fit_on == "stressed":
        # Seeds apart from the validation pool's, so the copies that fit are not those that test.
        # One copy in memory at a time (each is the whole training set again).
        copy_features = (score(as_training_copy(one_stressed_copy(
            train_images, STRESSED_SET, seed=config.data.split_seed + 1 + k)), features=True)[1]
            for k in range(config.ood.stressed_copies))
        train_features = np.concatenate([train_features, *copy_features])
    ood_stats, ood_info = fit_members_check(train_features, val_features, getattr(net, "feature_blocks", None),
                                            config.ood.members, log=config.ood.feature_transform == "log")
    ood_info.update(fit_on=config.ood.fit_on, feature_transform=config.ood.feature_transform,
                    stressed_copies=config.ood.stressed_copies if config.ood.fit_on == "stressed" else 0)
    if config.ood.members is not None:
        ood_info["members"] = config.ood.members
    if zones:
        originals = originals_pixels(config.ood.originals, config.data.image_size) if config.ood.originals else None
        original_distances = None
        if originals is not None:
            original_distances = mahalanobis(score(originals, features=True)[1], ood_stats)
        ood_info = {**ood_info, **fit_zones(mahalanobis(val_features, ood_stats), mahalanobis(pool_features, ood_stats),
                                            original_distances, config.ood)}
    patients = [r.patient for r in datamodule.val_records]
    validation = _figures(val_labels, sigmoid(val_logits / temperature), threshold, patients)
    validation["split"] = "patient-level validation split of the training folder"
    meta = {
        "name": config.name,
        "threshold": threshold,
        "threshold_rule": describe_rule(rule, rule.fit_on),
        "temperature": temperature,
        "image_size": config.data.image_size,
        "validation": validation,
        "ood": ood_info,
        "training": extra,
    }
    pool_patients = patients * (len(pool_labels) // len(val_labels))
    if rule.fit_on == "stressed":
        figures = _figures(pool_labels, sigmoid(pool_logits / temperature), threshold, pool_patients)
        figures["split"] = STRESSED_POOL_TEXT
        meta["validation_stressed"] = figures
    if net.has_subtype:
        meta["subtype"] = fit_subtype(
            config, net, subtype_targets(datamodule.val_records), val_features, pool_features, patients, pool_patients,
            p_pneumonia=sigmoid(val_logits / temperature), threshold=threshold, labels=val_labels,
        )
    if card_sections:
        meta["card_sections"] = card_sections
    save_bundle(run_dir, config, net, meta, ood=ood_stats)
    write_card(run_dir)
    torch.set_grad_enabled(True)
    return meta


def originals_pixels(folder: Path, size: int) -> np.ndarray:
    """Every image under ``folder`` as an upload reaches the network (reduced decode, resize, the
    training copies' format): what the refusal line must clear."""
    from pneumoscope.data.images import IMAGE_SUFFIXES, decode_image, to_network

    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ConfigError(f"ood.originals: no images under {folder}")
    return np.stack([to_network(decode_image(p, reduce_to=size).grey, size) for p in paths])


STRESSED_POOL_TEXT = ("the validation images pooled with one perturbed copy per condition: "
                      + ", ".join(f"{family} {strength:g}" for family, strength in STRESSED_SET))


def fit_subtype(
    config: Config, net: Any, subtypes: np.ndarray, val_features: np.ndarray, pool_features: np.ndarray | None,
    patients: list[str], pool_patients: list[str], *, p_pneumonia: np.ndarray, threshold: float, labels: np.ndarray,
) -> dict[str, Any]:
    """Temperature and operating point of the subtype head, and its validation figures.

    Fitted on the validation PNEUMONIA films of known subtype (pooled with their perturbed copies
    when ``subtype_threshold.fit_on`` is ``stressed``); bacterial is the positive class.
    """
    from pneumoscope.evaluation.metrics import subtype_metrics
    from pneumoscope.models.forward import subtype_logits

    rule = config.subtype_threshold
    val_logits = subtype_logits(net, val_features)
    known = subtypes >= 0
    fit_logits, fit_targets = val_logits[known], subtypes[known]
    if rule.fit_on == "stressed" and pool_features is not None:
        pool_targets = np.tile(subtypes, len(pool_features) // len(subtypes))
        pool_logits = subtype_logits(net, pool_features)
        fit_logits, fit_targets = pool_logits[pool_targets >= 0], pool_targets[pool_targets >= 0]
    temperature = fit_temperature(fit_logits, fit_targets)
    cut = choose_threshold(fit_targets, sigmoid(fit_logits / temperature), rule)
    p_bacterial = sigmoid(val_logits / temperature)
    full = subtype_metrics(labels, subtypes, p_pneumonia, threshold, p_bacterial, cut, patients, n_boot=200)
    record: dict[str, Any] = {
        "classes": list(SUBTYPE_NAMES),
        "positive_class": SUBTYPE_NAMES[1],
        "threshold": cut,
        "temperature": temperature,
        "threshold_rule": describe_rule(rule, rule.fit_on),
        "validation": {**_subtype_keys(full), "three_way": full["three_way"],
                       "split": "PNEUMONIA films of the patient-level validation split; positive class: bacterial"},
    }
    if rule.fit_on == "stressed" and pool_features is not None:
        pool_labels = np.tile(labels, len(pool_features) // len(labels))
        stressed = subtype_metrics(pool_labels, pool_targets, None, threshold, sigmoid(pool_logits / temperature), cut,
                                   pool_patients, n_boot=200)
        record["validation_stressed"] = {**_subtype_keys(stressed), "split": "PNEUMONIA films of " + STRESSED_POOL_TEXT}
    return record


def _subtype_keys(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("n", "n_viral", "n_bacterial", "auc", "accuracy", "sensitivity", "specificity", "confusion_matrix", "auc_ci95")
    return {k: metrics[k] for k in keys}


def _figures(labels: np.ndarray, probs: np.ndarray, threshold: float, patients: list[str]) -> dict[str, Any]:
    """The validation figures the card and ``model.json`` quote, from the evaluation's own metrics."""
    from pneumoscope.evaluation.metrics import compute_metrics

    m = compute_metrics(labels, probs, threshold, patients, n_boot=200)
    keys = ("n", "n_normal", "n_pneumonia", "auc", "accuracy", "sensitivity", "specificity", "confusion_matrix", "auc_ci95")
    return {**{k: m[k] for k in keys}, "normal_recall": m["specificity"]}


def refinalize(
    folder: str | Path, command: str | None = None, threshold: ThresholdConfig | None = None,
    ood: OodConfig | None = None,
) -> dict[str, Any]:
    """Calibration, threshold, OOD statistics and validation figures of a saved model, computed
    again by the current code: same weights, same split (the model's own manifest).

    For when how those are computed changes after a long training run; the weights and the
    training record are kept, and the record notes the command that recomputed the rest.
    ``threshold`` replaces the model's threshold rule, ``ood`` its out-of-distribution settings
    (its config records the new ones).
    """
    from pneumoscope import heap
    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.models.datamodule import XRayDataModule

    heap.keep_freed_memory()
    folder = Path(folder)
    bundle = load_bundle(folder, migrate=True)
    manifest = folder / "split_manifest.csv"
    datamodule = XRayDataModule(bundle.config, manifest=manifest if manifest.is_file() else None)
    extra = {**bundle.meta.get("training", {}), "finalized_by": command}
    updates = {key: value for key, value in (("threshold", threshold), ("ood", ood)) if value is not None}
    config = bundle.config.model_copy(update=updates)
    return finalize(config, bundle.net, datamodule, folder, extra, bundle.meta.get("card_sections"))
