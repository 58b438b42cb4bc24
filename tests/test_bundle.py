"""The bundled model: loads offline without unpickling, verifies its files, and its card is true."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pneumoscope.models.bundle import DEFAULT_MODEL_DIR, ModelLoadError, load_bundle

REPO = Path(__file__).resolve().parent.parent


def test_bundled_model_loads_and_is_the_committed_config() -> None:
    from pneumoscope.config import load_config

    from pneumoscope.models.feature_model import stat_blocks

    bundle = load_bundle()
    assert bundle.config.name == "ensemble_l1x2" and bundle.net.has_subtype
    assert bundle.image_size == 224
    assert 0.0 < bundle.threshold < 1.0
    # one Gaussian per feature block of the members the check reads (ood.members: the first ones)
    read = bundle.config.ood.members or len(bundle.net.feature_blocks)
    assert [mean.shape[0] for mean, _ in stat_blocks(bundle.ood)] == bundle.net.feature_blocks[:read]
    # the config committed beside the model is the one it was trained and finalized with; the saved
    # copy also records each member's network, which the committed one names by config file
    members = [load_config(REPO / chain[-1]).model for chain in bundle.config.ensemble.members]
    assert bundle.config.model.members == [m.model_copy(update={"pretrained": False}) for m in members]
    saved = bundle.config.model_copy(update={"model": bundle.config.model.model_copy(update={"members": []})})
    assert saved == load_config(REPO / "configs" / "ensemble_l1x2.yaml")


def test_bundle_holds_no_pickles_and_fits_the_size_budget() -> None:
    files = [p for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".yaml", ".md", ".png", ".csv"}
    weights = sum(p.stat().st_size for p in files if p.suffix == ".safetensors")
    # three ensemble members (one Lite0 of 13.7 MB of float32 weights, two Lite1 of about 16.8 MB) and
    # 6.5 MB of OOD statistics for each of the two whose features the check reads
    assert weights <= 60 * 1024 * 1024


def test_card_matches_the_model_record() -> None:
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    meta = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert "Not a medical device" in card
    assert "pneumoscope train --config configs/ensemble_l1x2.yaml" in card
    assert all(f"configs/{name}_subtype.yaml" in card for name in ("robust", "robust_l1", "robust_l1b"))
    assert f"{meta['threshold']:.4f}" in card
    assert f"{meta['validation']['auc']:.4f}" in card
    for digest in meta["files"].values():
        assert digest in card


@pytest.fixture()
def bundle_copy(tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, target)
    return target


def test_tampered_weights_are_refused(bundle_copy: Path) -> None:
    weights = bundle_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="SHA-256"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(("key", "change"), [
    ("threshold", lambda meta: meta.update(threshold=0.9)),
    ("temperature", lambda meta: meta.update(temperature=meta["temperature"] * 2)),
    ("ood_distance_threshold", lambda meta: meta["ood"].update(distance_threshold=1e9)),
])
def test_edited_decision_values_are_refused(bundle_copy: Path, key: str, change) -> None:
    """model.json cannot hash itself: its decision values are sealed in the hashed weights file."""
    meta = json.loads((bundle_copy / "model.json").read_text())
    change(meta)
    (bundle_copy / "model.json").write_text(json.dumps(meta, indent=2))
    with pytest.raises(ModelLoadError, match=f"tampered with: {key} differ"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(("change", "named"), [
    (lambda meta: meta.update(threshold=1.5), r"threshold: Input should be less than or equal to 1"),
    (lambda meta: meta.update(thresold=0.5), r"thresold: Extra inputs are not permitted"),  # a typo is refused
    (lambda meta: meta["subtype"].update(temperature=-1), r"subtype\.temperature"),
    (lambda meta: meta.pop("name"), r"name: Field required"),
])
def test_model_record_is_validated_on_load(bundle_copy: Path, change, named: str) -> None:
    """model.json is a typed ModelRecord: a damaged or mistyped record is refused by field name,
    before any value reaches the Predictor."""
    meta = json.loads((bundle_copy / "model.json").read_text())
    change(meta)
    (bundle_copy / "model.json").write_text(json.dumps(meta, indent=2))
    with pytest.raises(ModelLoadError, match=f"not a valid model record: .*{named}"):
        load_bundle(bundle_copy)


def test_record_is_typed_and_matches_the_file() -> None:
    bundle = load_bundle()
    record = bundle.record
    meta = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert record.threshold == meta["threshold"] and record.subtype.threshold == meta["subtype"]["threshold"]
    assert record.validation.auc == meta["validation"]["auc"] and record.ood.distance_threshold > 0
    assert bundle.meta == meta  # the card and reports read the record as written


def test_descriptive_edits_still_load_but_swapped_weights_do_not(bundle_copy: Path, tmp_path: Path) -> None:
    meta = json.loads((bundle_copy / "model.json").read_text())
    meta["card_sections"] = {"Note": "a reader's note"}
    (bundle_copy / "model.json").write_text(json.dumps(meta))
    assert load_bundle(bundle_copy).threshold == meta["threshold"]
    # Weights re-saved without the seal (and model.json's hash updated to match): refused.
    from safetensors.torch import load_file, save_file

    from pneumoscope.data.collection import content_hash

    save_file(load_file(str(bundle_copy / "model.safetensors")), str(bundle_copy / "model.safetensors"))
    meta["files"]["model.safetensors"] = content_hash(bundle_copy / "model.safetensors")
    (bundle_copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="no sealed decision values"):
        load_bundle(bundle_copy)
    # A format-1 bundle (hashes, no seal) is refused for predicting, read only to be re-saved.
    meta["format"] = 1
    (bundle_copy / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="format 1, this pneumoscope reads format 2"):
        load_bundle(bundle_copy)
    assert load_bundle(bundle_copy, migrate=True).threshold == meta["threshold"]


def test_missing_or_broken_files_are_clear_errors(bundle_copy: Path, tmp_path: Path) -> None:
    (bundle_copy / "ood.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="missing"):
        load_bundle(bundle_copy)
    (bundle_copy / "model.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_bundle(bundle_copy)
    with pytest.raises(ModelLoadError, match="not found"):
        load_bundle(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="not a pneumoscope model"):
        load_bundle(empty)
