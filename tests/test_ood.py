"""The "is this a chest X-ray?" check on real X-rays, real non-X-rays and transformed X-rays.

A smaller, faster version of bench/ood.py (whose full figures are in the model card)."""

from __future__ import annotations

import numpy as np
import pytest

from pneumoscope.data.collection import read_manifest
from pneumoscope.data.images import decode_image
from pneumoscope.data.perturb import STRESSED_SET, stressed_copies
from pneumoscope.evaluation.ood_sets import TRANSFORMS, generated_images, hard_negatives, load_films, skimage_images
from pneumoscope.data.images import DecodedImage
from pneumoscope.data.perturb import perturb_images
from pneumoscope.inference.ood import INVERTED, ROTATED, needs_second_reading, needs_upright_reading, polarity, verdict
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


def test_originals_at_full_resolution_are_answered(predictor: Predictor, originals) -> None:
    """What users upload: none of the 48 originals is refused, at most one gets the caution."""
    results = predictor.predict_many(sorted(originals.rglob("*.jpeg")))
    checks = [r.xray_check for r in results]
    assert len(checks) == 48
    assert checks.count("refuse") == 0
    assert checks.count("caution") <= 1


@pytest.mark.slow  # 12,560 films, about 5 min on 2 cores: a sample is no test of a 0.5 % rate (one film
# near the edge refused in four of its crops put 60 films' pool at 0.6 %)
def test_the_stressed_pool_is_rarely_refused(predictor: Predictor, all_val_paths: list[str]) -> None:
    """The acquisition shifts the model is built to survive are answered: at most 0.5 % of the whole
    stressed validation pool refused, through the code users run (every check, second readings too)."""
    greys = np.stack([decode_image(p).grey for p in all_val_paths])
    pool, _ = stressed_copies(greys, np.zeros(len(greys), dtype=int), STRESSED_SET, seed=42)
    refused = [r.xray_check == "refuse" for r in predictor.predict_many(list(pool))]
    assert len(refused) == len(all_val_paths) * (len(STRESSED_SET) + 1)
    assert np.mean(refused) <= 0.005


def test_photos_documents_and_synthetic_images_are_refused(predictor: Predictor) -> None:
    images = [image for _, image in skimage_images()] + [image for _, image in generated_images(count=2)]
    assert len(images) >= 25
    assert _flag_rate(predictor, images) == 1.0


def test_hard_negatives_are_refused(predictor: Predictor, data_root) -> None:
    """Films photographed on a monitor or a lightbox, CT-like slices, scans, drawings: every one refused."""
    named = list(hard_negatives(load_films(data_root)))
    results = predictor.predict_many([image for _, image in named])
    answered = [name for (name, _), r in zip(named, results) if r.is_chest_xray]
    assert not answered, f"answered as chest X-rays: {answered}"


_CROP_REGRESSION = pytest.mark.xfail(strict=True, reason=(
    "open trade-off (issue 20): with its Gaussian fitted on log features of the training films and 2 "
    "stressed copies each (crops down to 0.7 inside it), and its refusal line beyond the stressed pool's "
    "tail, the bundled ensemble refuses 6.7 % of central 30 % crops (bench/ood.py; 36 % with one copy and "
    "raw features, 75 % with the clean fit); of 150 such crops 26 are answered with the caution and 114 "
    "without one"))


@pytest.mark.parametrize("name", [pytest.param(n, marks=_CROP_REGRESSION) if n.startswith("cropped") else n
                                  for n in TRANSFORMS])
def test_transformed_xrays_are_flagged(predictor: Predictor, val_paths: list[str], name: str) -> None:
    greys = [decode_image(p).grey for p in val_paths[:20]]
    assert _flag_rate(predictor, [TRANSFORMS[name](g) for g in greys]) >= 0.9


def test_polarity_separates_films_from_negatives(val_paths: list[str]) -> None:
    greys = [decode_image(p).grey for p in val_paths]
    assert min(polarity(g) for g in greys) > 0
    assert max(polarity(255 - g) for g in greys) < 0


def test_a_film_in_doubt_is_inverted_only_if_its_negative_reads_closer() -> None:
    grey = np.full((224, 224), 200, dtype=np.uint8)
    grey[:, 100:124] = 60  # the centre darker than the sides: polarity says inverted
    film = DecodedImage(grey, (1800, 1400), 0.0, "JPEG")
    assert needs_second_reading(film, 50.0, 80.0)
    assert not needs_second_reading(DecodedImage(255 - grey, (1800, 1400), 0.0, "JPEG"), 50.0, 80.0)
    assert verdict(film, 50.0, 80.0, None).reasons == (INVERTED,)  # no second reading: polarity decides
    assert verdict(film, 50.0, 80.0, None, inverse_distance=40.0).reasons == (INVERTED,)
    assert verdict(film, 50.0, 80.0, None, inverse_distance=70.0).zone == "pass"  # an off-centre film
    colour = DecodedImage(grey, (1800, 1400), 40.0, "JPEG")
    assert not needs_second_reading(colour, 50.0, 80.0)  # a photograph is not asked about anatomy


def test_off_centre_films_are_not_called_inverted(predictor: Predictor, val_paths: list[str]) -> None:
    """Crops that leave the spine off the central strip fool the polarity score (most of them at
    0.7); the second reading answers them, while inverted films stay refused (test above)."""
    greys = np.stack([decode_image(p).grey for p in val_paths])
    crops = perturb_images(greys, "crop_offcentre", 0.7, seed=42)
    doubtful = [c for c in crops if polarity(c) < 0]
    assert len(doubtful) >= 0.4 * len(crops)
    called = [INVERTED in r.warnings for r in predictor.predict_many(doubtful)]
    assert np.mean(called) <= 0.2


def test_a_film_on_its_side_is_refused_only_if_it_reads_closer_upright(val_paths: list[str]) -> None:
    """Polarity raises the doubt (the spine across the image), the network's features settle it."""
    upright = decode_image(val_paths[0]).grey
    film = DecodedImage(upright, (1800, 1400), 0.0, "JPEG")
    sideways = DecodedImage(np.rot90(upright), (1400, 1800), 0.0, "JPEG")
    assert not needs_upright_reading(film) and needs_upright_reading(sideways)
    assert verdict(sideways, 50.0, 80.0, 60.0, upright_distance=35.0).reasons == (ROTATED,)
    assert verdict(sideways, 50.0, 80.0, 60.0, upright_distance=70.0).zone == "pass"  # turned, it reads worse
    colour = DecodedImage(np.rot90(upright), (1400, 1800), 40.0, "JPEG")
    assert not needs_upright_reading(colour)  # a photograph is not asked about anatomy


def test_films_on_their_side_are_refused_and_upright_films_are_not(predictor: Predictor, val_paths: list[str]) -> None:
    greys = [decode_image(p).grey for p in val_paths[:20]]
    turned = predictor.predict_many([np.rot90(g, 1 + 2 * (i % 2)) for i, g in enumerate(greys)])
    assert all(ROTATED in r.warnings for r in turned)
    assert not any(ROTATED in r.warnings for r in predictor.predict_many(greys))
