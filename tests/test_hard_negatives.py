"""The hard-negative generator (photos of films on a monitor or lightbox, CT-like slices, document
scans, drawings): deterministic, every kind present, sane sizes, photos built from the films given.
Nothing here is about the model's verdicts on these images."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from pneumoscope.evaluation import ood_sets
from pneumoscope.evaluation.hard_negatives import CORPORA, COUNTS, hard_negatives, load_films

FILM_KINDS = ("monitor", "lightbox")


@pytest.fixture(scope="module")
def films(data_root: Path) -> list[np.ndarray]:
    """One NORMAL and one PNEUMONIA original, full resolution, read in place."""
    return load_films(data_root, 2)


@pytest.fixture(scope="module")
def images(films: list[np.ndarray]) -> dict[str, np.ndarray]:
    return dict(hard_negatives(films, seed=0))


def _first(films: list, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The first ``count`` images only (the generator is lazy): the monitor and lightbox photos."""
    return dict(islice(hard_negatives(films, seed=seed), count))


def test_every_kind_is_yielded_with_its_prefix(images: dict[str, np.ndarray]) -> None:
    kinds = [name.split("-")[0] for name in images]
    assert {kind: kinds.count(kind) for kind in set(kinds)} == COUNTS
    assert set(COUNTS) == set(CORPORA)
    assert len(images) == sum(COUNTS.values())


def test_corpora_are_printable_one_liners_with_credits() -> None:
    for name, line in CORPORA.items():
        assert isinstance(line, str) and line and "\n" not in line, name
    for kind in FILM_KINDS + ("scan",):
        assert "CC BY 4.0" in CORPORA[kind]
    assert "BSD" in CORPORA["ct"]


def test_sizes_and_dtypes_are_sane(images: dict[str, np.ndarray]) -> None:
    for name, image in images.items():
        assert image.dtype == np.uint8, name
        assert image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3), (name, image.shape)
        assert 500 <= min(image.shape[:2]) and max(image.shape[:2]) <= 2000, (name, image.shape)
        assert image.std() > 20, name  # not blank
        assert 10 < image.mean() < 245, name
    assert any(image.ndim == 2 for image in images.values())
    assert any(image.ndim == 3 for image in images.values())


def test_same_seed_gives_identical_images(films: list[np.ndarray], images: dict[str, np.ndarray]) -> None:
    again = dict(hard_negatives(films, seed=0))
    assert list(again) == list(images)
    for name, image in images.items():
        assert np.array_equal(again[name], image), name


def test_another_seed_gives_other_images(films: list[np.ndarray], images: dict[str, np.ndarray]) -> None:
    other = _first(films, 2, seed=1)
    for name, image in other.items():
        assert image.shape != images[name].shape or not np.array_equal(image, images[name]), name


def test_photos_are_built_from_the_films_given(films: list[np.ndarray], images: dict[str, np.ndarray]) -> None:
    count = COUNTS["monitor"] + COUNTS["lightbox"]
    swapped = _first(films[::-1], count)
    assert sorted(swapped) == sorted(name for name in images if name.split("-")[0] in FILM_KINDS)
    for name, image in swapped.items():
        assert image.shape == images[name].shape, name
        assert np.abs(image.astype(int) - images[name]).mean() > 2, name  # another film, another photo
        for film in films:
            assert image.shape[:2] != film.shape or not np.array_equal(image, film), name


def test_photos_are_neither_blank_nor_trivially_colourful(images: dict[str, np.ndarray]) -> None:
    for name, image in images.items():
        if name.split("-")[0] not in FILM_KINDS:
            continue
        assert image.std() > 25, name
        if image.ndim == 3:
            chroma = image.max(axis=2).astype(int) - image.min(axis=2)
            assert chroma.mean() < 40, (name, chroma.mean())  # a grey film in a dim room, slight cast
        grey = image if image.ndim == 2 else image.mean(axis=2)
        centre = grey[grey.shape[0] // 4: 3 * grey.shape[0] // 4, grey.shape[1] // 4: 3 * grey.shape[1] // 4]
        assert centre.std() > 20, name  # the film's structure, not a flat screen


def test_films_may_be_paths_and_are_required(data_root: Path, films: list[np.ndarray]) -> None:
    path = sorted((data_root / "originals" / "NORMAL").glob("*.jpeg"))[0]
    from_path, from_array = _first([path], 1), _first([films[0]], 1)
    assert np.array_equal(from_path["monitor-0"], from_array["monitor-0"])
    with pytest.raises(ValueError):
        next(hard_negatives([]))


def test_ood_sets_exposes_the_generator() -> None:
    assert ood_sets.hard_negatives is hard_negatives
    assert ood_sets.CORPORA is CORPORA
