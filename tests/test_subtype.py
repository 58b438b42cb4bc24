"""The bacterial-vs-viral head (issue 12): targets, masking, sampling, metrics, training, and the
bundled model's answers through the Predictor, the batch CLI and the page."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pneumoscope.config import ConfigError, load_config
from pneumoscope.data.collection import Record, subtype_targets
from pneumoscope.evaluation.metrics import subtype_metrics, three_way_confusion

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SUBTYPE_CONFIG = REPO / "configs" / "robust_subtype.yaml"
JOINT = {"train.trainable": "all", "train.init_from": None, "train.balance": "sampler_subtype"}
"""robust_subtype.yaml trained jointly instead of on a frozen network: the recipe the study compared."""


def _record(name: str, label: int, subtype: str) -> Record:
    return Record(name, label, name, subtype, "train")


def test_targets_come_from_the_file_names_and_mask_everything_else() -> None:
    records = [_record("a", 1, "bacteria"), _record("b", 1, "virus"), _record("c", 0, "normal"),
               _record("d", 1, "unknown"), _record("e", 0, "bacteria")]  # a NORMAL film is never a target
    assert subtype_targets(records).tolist() == [1, 0, -1, -1, -1]


def test_subtype_settings_need_the_head() -> None:
    with pytest.raises(ConfigError, match="sampler_subtype needs model.subtype_head"):
        load_config(SUBTYPE_CONFIG, **JOINT, **{"model.subtype_head": False})
    with pytest.raises(ConfigError, match="trainable subtype_head needs model.subtype_head and train.init_from"):
        load_config(SUBTYPE_CONFIG, **{"train.init_from": None})


def _tiny_module() -> "object":
    from pneumoscope.models.module import PneumoniaModule

    config = load_config(SUBTYPE_CONFIG, **JOINT, **{"model.arch": "simple_cnn", "model.pretrained": False,
                                            "model.freeze_blocks": 0, "model.width": 4, "data.image_size": 32})
    return PneumoniaModule(config)


def test_subtype_loss_is_masked_to_pneumonia_films() -> None:
    module = _tiny_module()
    module.net.eval()  # no dropout: the same features give the same loss
    features = torch.randn(6, module.net.feature_dim)
    targets = torch.tensor([1, 0, -1, -1, 1, -1])
    loss = module._subtype_loss(features, targets)
    # Features of masked films may be anything: the loss does not move.
    changed = features.clone()
    changed[targets < 0] = torch.randn(3, module.net.feature_dim) * 100
    assert torch.allclose(module._subtype_loss(changed, targets), loss)
    # Flipping a known target does move it.
    assert not torch.allclose(module._subtype_loss(features, torch.tensor([0, 0, -1, -1, 1, -1])), loss)
    # No known film: zero loss, but the head stays in the graph (DDP needs every parameter used).
    empty = module._subtype_loss(features.requires_grad_(), torch.full((6,), -1))
    assert float(empty.detach()) == 0.0 and empty.requires_grad


def test_balanced_sampler_draws_normal_viral_and_bacterial_alike(chest_xray: Path) -> None:
    """In the training folder bacterial films are half of all, viral and NORMAL a quarter each."""
    from pneumoscope.models.datamodule import XRayDataModule

    config = load_config(SUBTYPE_CONFIG, **JOINT, **{"data.image_size": 32, "train.batch_size": 16})
    datamodule = XRayDataModule(config, root=chest_xray)
    groups = datamodule.sampling_groups()
    stored = np.bincount(groups, minlength=3)[:3] / len(groups)
    sampler = datamodule.train_dataloader().sampler
    drawn = groups[np.fromiter(iter(sampler), dtype=np.int64)]
    shares = np.bincount(drawn, minlength=3)[:3] / len(drawn)
    assert stored[2] > 0.45 and stored[0] < 0.3 and stored[1] < 0.3, stored
    assert np.all(np.abs(shares - 1 / 3) < 0.03), shares


def test_subtype_metrics_match_scikit_learn_on_the_known_films() -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * 30 + [1] * 70)
    subtypes = np.array([-1] * 30 + [1] * 40 + [0] * 25 + [-1] * 5)
    p_pneumonia = np.where(labels == 1, rng.uniform(0.3, 1, 100), rng.uniform(0, 0.7, 100))
    p_bacterial = np.clip(0.5 + 0.3 * (subtypes == 1) - 0.2 * (subtypes == 0) + rng.normal(0, 0.2, 100), 0, 1)
    m = subtype_metrics(labels, subtypes, p_pneumonia, 0.5, p_bacterial, 0.55, [str(i) for i in range(100)], n_boot=50)
    known = subtypes >= 0
    assert m is not None and m["n"] == 65 and m["n_bacterial"] == 40 and m["n_viral"] == 25
    assert m["auc"] == pytest.approx(roc_auc_score(subtypes[known], p_bacterial[known]))
    assert m["sensitivity"] == pytest.approx(np.mean(p_bacterial[subtypes == 1] >= 0.55))
    assert m["specificity"] == pytest.approx(np.mean(p_bacterial[subtypes == 0] < 0.55))
    assert set(m["per_class"]) == {"viral", "bacterial"}
    three = m["three_way"]
    matrix = np.array(three["matrix"])
    assert three["classes"] == ["NORMAL", "bacterial", "viral"] and matrix.sum() == 95  # 5 of unknown subtype left out
    assert matrix[0].sum() == 30 and matrix[0, 0] == np.sum(p_pneumonia[:30] < 0.5)
    # a viral film called PNEUMONIA with p_bacterial below the cut lands in the viral column
    viral = (subtypes == 0) & (p_pneumonia >= 0.5)
    assert matrix[2, 2] == np.sum(viral & (p_bacterial < 0.55))
    assert subtype_metrics(labels, np.where(subtypes == 0, -1, subtypes), p_pneumonia, 0.5, p_bacterial, 0.5) is None
    assert three_way_confusion(labels, subtypes, p_pneumonia, 0.5, p_bacterial, 0.55) == three


@pytest.mark.slow
def test_tiny_joint_training_records_the_subtype(small_collection: Path, tmp_path: Path) -> None:
    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.training import train

    config = load_config(SUBTYPE_CONFIG, **JOINT, **{
        "train.epochs": 1, "train.limit_train_batches": 3, "data.image_size": 64, "model.pretrained": False,
    })
    run = train(config, tmp_path / "run", root=small_collection, progress=False)
    assert run is not None
    assert "val_subtype_auc" in (run / "history.csv").read_text().splitlines()[0].split(",")
    meta = json.loads((run / "model.json").read_text())
    sub = meta["subtype"]
    assert sub["classes"] == ["viral", "bacterial"] and 0 < sub["threshold"] < 1 and sub["temperature"] > 0
    assert sub["validation"]["n"] == sub["validation"]["n_bacterial"] + sub["validation"]["n_viral"] > 0
    assert sub["validation_stressed"]["n"] > sub["validation"]["n"]
    assert "Bacterial or viral pattern" in (run / "MODEL_CARD.md").read_text()
    bundle = load_bundle(run)
    assert bundle.net.has_subtype and bundle.subtype["threshold"] == sub["threshold"]
    # The subtype's operating point is sealed into the weights like the pneumonia threshold.
    sub["threshold"] = 0.01
    (run / "model.json").write_text(json.dumps(meta))
    from pneumoscope.models.bundle import ModelLoadError

    with pytest.raises(ModelLoadError, match="subtype_threshold"):
        load_bundle(run)


@pytest.mark.slow
def test_head_on_a_frozen_network_leaves_its_answers_alone(small_collection: Path, tmp_path: Path) -> None:
    """The bundled recipe: a network trained without the head, then the head fitted on its frozen
    features. Every pneumonia weight, the threshold, the temperature and the OOD statistics are
    the network's own; only the subtype head is new."""
    from safetensors.torch import load_file

    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.training import train

    tiny = {"train.epochs": 1, "train.limit_train_batches": 3, "data.image_size": 64, "model.pretrained": False}
    base = train(load_config(REPO / "configs" / "robust.yaml", **tiny), tmp_path / "base", root=small_collection,
                 progress=False)
    config = load_config(SUBTYPE_CONFIG, **{"data.image_size": 64, "model.pretrained": False,
                                            "train.init_from": str(base), "train.epochs": 2})
    run = train(config, tmp_path / "head", root=small_collection, progress=False)
    before, after = load_file(base / "model.safetensors"), load_file(run / "model.safetensors")
    assert set(after) - set(before) == {"subtype_head.1.weight", "subtype_head.1.bias"}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.isfinite(after["subtype_head.1.weight"]).all()  # its quality: test_bundled_subtype_matches_its_card
    old, new = load_bundle(base).meta, load_bundle(run).meta
    for key in ("threshold", "temperature", "validation", "validation_stressed"):
        assert _rounded(new[key]) == _rounded(old[key]), key  # recomputed: float noise at 1e-9 aside
    # The OOD statistics are fitted to the same features: their mean matches to float noise. This
    # barely trained net's features are near-constant, so its precision matrix has entries of 1e20
    # and the distance threshold moves by several % with float noise alone; what it decides, which
    # validation and training films it flags, is compared instead (on the bundled model every
    # value matched exactly).
    ood_before, ood_after = load_file(base / "ood.safetensors"), load_file(run / "ood.safetensors")
    assert torch.allclose(ood_before["mean"], ood_after["mean"], atol=1e-6)
    for key in ("val_flagged_rate", "train_flagged_rate", "distance_quantile"):
        assert new["ood"][key] == old["ood"][key], key
    assert (run / "split_manifest.csv").read_text() == (base / "split_manifest.csv").read_text()
    assert 0 <= new["subtype"]["validation"]["auc"] <= 1
    card = (run / "MODEL_CARD.md").read_text()
    assert "frozen network" in card and "the pneumonia output is the network's, unchanged" in card


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _tiny_subtype_bundle(folder: Path, name: str, seed: int) -> Path:
    from pneumoscope.config import parse_config
    from pneumoscope.models.bundle import save_bundle
    from pneumoscope.models.nets import build_net

    config = parse_config({"name": name, "data": {"image_size": 64},
                           "model": {"arch": "simple_cnn", "width": 4, "subtype_head": True}})
    torch.manual_seed(seed)
    net = build_net(config.model, config.data.image_size).eval()
    subtype = {"classes": ["viral", "bacterial"], "positive_class": "bacterial", "threshold": 0.5,
               "temperature": 0.05, "threshold_rule": "fixed", "validation": {}}
    return save_bundle(folder, config, net, {"name": name, "threshold": 0.5, "temperature": 1.0, "subtype": subtype})


def test_evaluate_and_compare_report_the_subtype(small_collection: Path, chest_xray: Path, tmp_path: Path) -> None:
    from pneumoscope.evaluation.report import compare, evaluate

    models = [_tiny_subtype_bundle(tmp_path / n, n, s) for n, s in (("sub-a", 0), ("sub-b", 1))]
    result = evaluate(small_collection, "train", models[0], tmp_path / "eval", n_boot=50, progress=False, quiet=True)
    sub = json.loads((tmp_path / "eval" / "metrics.json").read_text())["subtype"]
    assert sub["measured"] and sub["n"] == sub["n_bacterial"] + sub["n_viral"] == result["n_pneumonia"]
    with (tmp_path / "eval" / "predictions.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r["class"] == "PNEUMONIA"]
    truth = np.array(["bacteria" in Path(r["path"]).name for r in rows], dtype=int)
    p = np.array([float(r["p_bacterial"]) for r in rows])
    # The CSV holds 6 decimals, and this tiny net's temperature (0.05) saturates a few p_bacterial at
    # 1.000000: their ties move the AUC recomputed from the file by a few 1e-4.
    assert sub["auc"] == pytest.approx(roc_auc_score(truth, p), abs=2e-3)
    assert sub["sensitivity"] == pytest.approx(np.mean(p[truth == 1] >= 0.5), abs=1e-6)
    assert sum(map(sum, sub["three_way"]["matrix"])) == result["n"]
    assert sub["auc_ci95"][0] <= sub["auc"] <= sub["auc_ci95"][1]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Bacterial vs viral pattern" in report and (tmp_path / "eval" / "subtype_roc.png").is_file()
    # The official val folder's 8 PNEUMONIA films are all bacterial: nothing to measure, and it says so.
    alone = evaluate(chest_xray, "val", models[0], tmp_path / "val", n_boot=20, progress=False, quiet=True)
    assert alone["subtype"] == {"measured": False, "reason": alone["subtype"]["reason"]} and "both subtypes" in alone["subtype"]["reason"]
    both = compare([str(m) for m in models], small_collection, "train", tmp_path / "cmp", n_boot=20, progress=False, quiet=True)
    assert both["subtype_compared"] and "subtype AUC (PNEUMONIA films)" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_stress_report_covers_the_subtype_output(small_collection: Path, tmp_path: Path) -> None:
    from pneumoscope.evaluation.stress import run_stress

    model = _tiny_subtype_bundle(tmp_path / "m", "sub-m", 0)
    report = run_stress(small_collection, "train", model, tmp_path / "stress", per_class=12,
                        families=("crop_center",), progress=False, quiet=True)
    assert 0 <= report["clean"]["subtype_auc"] <= 1 and 0 <= report["stressed"]["subtype_auc"] <= 1
    rows = report["conditions"]
    assert [r["family"] for r in rows] == ["crop_center"] * 3
    assert all(0 <= r["subtype_flips"] <= 12 and "subtype_auc" in r for r in rows)
    assert "subtype AUC | subtype flips" in (tmp_path / "stress" / "stress.md").read_text()


def test_bundled_model_answers_both_questions(originals: Path) -> None:
    """On the 48 full-resolution originals: a pattern for every PNEUMONIA X-ray, none otherwise;
    ONNX Runtime and PyTorch agree on it; the wording is a pattern with its probability."""
    from pneumoscope.inference.predictor import Predictor

    fast, eager = Predictor.load(), Predictor.load(backend="torch")
    assert fast.backend == "onnxruntime" and fast.has_subtype and 0 < fast.subtype_threshold < 1
    files = sorted(originals.glob("*/*.jpeg"))
    answered = fast.predict_many(files)
    reference = eager.predict_many(files)
    shown = 0
    for path, a, b in zip(files, answered, reference):
        if a.label == "PNEUMONIA" and a.is_chest_xray:
            shown += 1
            assert a.subtype == ("bacterial" if a.p_bacterial >= fast.subtype_threshold else "viral")
            assert a.p_bacterial == pytest.approx(b.p_bacterial, abs=2e-3), path.name
            p = a.p_bacterial if a.subtype == "bacterial" else 1 - a.p_bacterial
            assert a.subtype_pattern == f"pattern more typical of {a.subtype} pneumonia (p = {p:.2f})"
            assert a.to_dict()["p_bacterial"] == a.p_bacterial
        else:
            assert a.subtype is None and a.p_bacterial is None and a.subtype_pattern is None
    assert shown >= 15  # most of the 24 PNEUMONIA originals


def test_bundled_subtype_matches_its_card(chest_xray: Path) -> None:
    """A model-quality check: the bundled head's validation AUC, recomputed through the Predictor
    from the model's own split, is the one its card states (and no worse than the floor we reached)."""
    from pneumoscope.data.cache import cached_images
    from pneumoscope.data.collection import read_manifest
    from pneumoscope.inference.predictor import Predictor
    from pneumoscope.models.bundle import DEFAULT_MODEL_DIR, load_bundle

    card = load_bundle().meta["subtype"]["validation"]
    records = [r for r in read_manifest(DEFAULT_MODEL_DIR / "split_manifest.csv") if r.split == "val" and r.label == 1]
    targets = subtype_targets(records)
    images = np.asarray(cached_images([r.path for r in records], 224, progress=False))
    p = Predictor.load().score_pixels(images).p_bacterial
    auc = roc_auc_score(targets[targets >= 0], p[targets >= 0])
    assert auc == pytest.approx(card["auc"], abs=0.005) and auc >= 0.80


def test_batch_cli_writes_subtype_columns(originals: Path, tmp_path: Path) -> None:
    from pneumoscope.cli import main

    out = tmp_path / "results.csv"
    assert main(["predict", str(originals / "PNEUMONIA"), str(originals / "NORMAL"), "--out", str(out)]) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 48 and {"subtype", "p_bacterial"} <= set(rows[0])
    for row in rows:
        if row["label"] == "PNEUMONIA" and row["is_chest_xray"] == "True":
            assert row["subtype"] in ("bacterial", "viral") and 0 <= float(row["p_bacterial"]) <= 1
        else:
            assert row["subtype"] == "" and row["p_bacterial"] == ""
    assert sum(row["subtype"] != "" for row in rows) >= 15
