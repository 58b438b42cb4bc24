"""The "is this a chest X-ray?" check on real X-rays, real non-X-rays and transformed X-rays.

A smaller, faster version of bench/ood.py (whose full figures are in the model card)."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscope.data.collection import read_manifest
from pneumoscope.data.images import decode_image
from pneumoscope.evaluation.ood_sets import TRANSFORMS, generated_images, skimage_images
from pneumoscope.inference.ood import polarity
from pneumoscope.inference.predictor import Predictor
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


@pytest.fixture(scope="module")
def val_paths(data_root) -> list[str]:
    """Validation X-rays of the bundled model's own patient-level split (never trained on)."""
    records = [r for r in read_manifest(DEFAULT_MODEL_DIR / "split_manifest.csv") if r.split == "val"]
    rng = np.random.default_rng(1)
    return [records[i].path for i in rng.choice(len(records), 60, replace=False)]


@pytest.fixture(scope="module")
def all_val_paths(data_root) -> list[str]:
    return [r.path for r in read_manifest(DEFAULT_MODEL_DIR / "split_manifest.csv") if r.split == "val"]


def _flag_rate(predictor: Predictor, images: list) -> float:
    return float(np.mean([not r.is_chest_xray for r in predictor.predict_many(images)]))


def test_real_validation_xrays_are_rarely_flagged(predictor: Predictor, all_val_paths: list[str]) -> None:
    # the distance threshold is the 99.5th percentile of validation distances: about 0.5 % by design
    assert _flag_rate(predictor, all_val_paths) <= 0.01


def test_real_originals_are_not_flagged(predictor: Predictor, originals) -> None:
    paths = sorted(originals.rglob("*.jpeg"))[::4]
    assert _flag_rate(predictor, paths) == 0.0


def test_photos_documents_and_synthetic_images_are_flagged(predictor: Predictor) -> None:
    images = [image for _, image in skimage_images()] + [image for _, image in generated_images(count=2)]
    assert len(images) >= 25
    assert _flag_rate(predictor, images) >= 0.95


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transformed_xrays_are_flagged(predictor: Predictor, val_paths: list[str], name: str) -> None:
    greys = [decode_image(p).grey for p in val_paths[:20]]
    assert _flag_rate(predictor, [TRANSFORMS[name](g) for g in greys]) >= 0.9


def test_polarity_separates_films_from_negatives(val_paths: list[str]) -> None:
    greys = [decode_image(p).grey for p in val_paths]
    assert min(polarity(g) for g in greys) > 0
    assert max(polarity(255 - g) for g in greys) < 0
