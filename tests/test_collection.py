"""Collections on disk: patient ids from file names, scanning, the patient split, the manifest,
duplicates and the decode cache, on the real data (read in place) and on small trees built in
``tmp_path`` (symlinks or derived copies, never in the repository).

The patient split is what keeps validation honest: one child's radiographs on both sides
would inflate every score, so its guarantees are checked on the real 5,216 training images.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pneumoscope.data import cache as cache_module
from pneumoscope.data.cache import cache_key, cached_images
from pneumoscope.data.collection import (
    CollectionError,
    Record,
    find_duplicates,
    patient_of,
    patient_split,
    read_manifest,
    records_for,
    scan_collection,
    write_manifest,
)
from pneumoscope.data.images import load_image

# --- patient ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("person1000_bacteria_2931.jpeg", ("person1000", "bacteria")),
    ("person1000_virus_1681.jpeg", ("person1000", "virus")),
    ("person1_virus_6.jpeg", ("person1", "virus")),
    ("person0042_bacteria_7.jpeg", ("person42", "bacteria")),  # numeric id: leading zeros dropped
    ("PERSON12_Virus_3.JPEG", ("person12", "virus")),
    ("person1671_virus_2887_0001.jpeg", ("person1671", "virus")),  # the one odd virus name style
    ("IM-0115-0001.jpeg", ("IM-0115", "normal")),
    ("IM-0429-0001-0001.jpeg", ("IM-0429", "normal")),
    ("IM-0429-0001-0002.jpeg", ("IM-0429", "normal")),
    ("NORMAL2-IM-1427-0001.jpeg", ("NORMAL2-IM-1427", "normal")),
    ("NORMAL2-IM-0587-0001-0002.jpeg", ("NORMAL2-IM-0587", "normal")),
    ("normal2-im-0587-0001.jpeg", ("NORMAL2-IM-0587", "normal")),
    ("train/NORMAL/IM-0115-0001.jpeg", ("IM-0115", "normal")),  # a path: only the name counts
])
def test_patient_of_known_names(name: str, expected: tuple[str, str]) -> None:
    assert patient_of(name) == expected


@pytest.mark.parametrize("name", [
    "scan_001.png", "chest.jpeg", "IM0115.jpeg", "person_bacteria_1.jpeg", "personX_virus_1.jpeg",
    "patient12_bacteria_3.jpeg", "NORMAL-IM-0115-0001.jpeg", "", "IM-.jpeg",
])
def test_patient_of_unknown_names(name: str) -> None:
    assert patient_of(name) == (None, None)


def test_patient_namespaces_do_not_collide() -> None:
    """IM-0115 and NORMAL2-IM-0115 are different series, person115 a different child."""
    ids = {patient_of(n)[0] for n in ("IM-0115-0001.jpeg", "NORMAL2-IM-0115-0001.jpeg", "person115_virus_1.jpeg")}
    assert len(ids) == 3


# --- scanning the real data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_scan(chest_xray: Path) -> tuple[dict[str, list[Record]], int]:
    """One scan of the real root shared by the tests below (5,232 file names)."""
    return scan_collection(chest_xray)


def test_scan_real_kaggle_root(real_scan: tuple[dict[str, list[Record]], int]) -> None:
    found, unknown = real_scan
    assert set(found) == {"train", "val"}
    assert unknown == 0
    counts = {split: Counter(r.class_name for r in records) for split, records in found.items()}
    assert counts["train"] == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert counts["val"] == {"NORMAL": 8, "PNEUMONIA": 8}
    train = found["train"]
    assert all(r.split == "train" for r in train)
    assert all(Path(r.path).parent.name == r.class_name for r in train)
    assert {r.subtype for r in train if r.label == 0} == {"normal"}
    assert {r.subtype for r in train if r.label == 1} == {"bacteria", "virus"}


def test_scan_single_split_folder(chest_xray: Path) -> None:
    found, unknown = scan_collection(chest_xray / "val")
    assert list(found) == ["all"] and unknown == 0
    assert Counter(r.class_name for r in found["all"]) == {"NORMAL": 8, "PNEUMONIA": 8}
    train = records_for(chest_xray / "train")
    assert Counter(r.class_name for r in train) == {"NORMAL": 1341, "PNEUMONIA": 3875}


def test_records_for_splits(chest_xray: Path) -> None:
    assert [Path(r.path).name for r in records_for(chest_xray / "val", "train")][0].startswith("NORMAL2-IM"), (
        "a single folder ignores the split name"
    )
    with pytest.raises(CollectionError, match="no 'test' split"):
        records_for(chest_xray)  # the sealed test split is deliberately absent


def test_scan_errors(tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match="folder not found"):
        scan_collection(tmp_path / "missing")
    (tmp_path / "empty" / "NORMAL").mkdir(parents=True)
    with pytest.raises(CollectionError, match="holds no images"):
        scan_collection(tmp_path / "empty")


def test_scan_counts_unknown_names_and_skips_other_files(tmp_path: Path, chest_xray: Path) -> None:
    sources = sorted((chest_xray / "val" / "NORMAL").iterdir())
    root = tmp_path / "upload"
    (root / "NORMAL").mkdir(parents=True)
    (root / "PNEUMONIA").mkdir()
    (root / "NORMAL" / sources[0].name).symlink_to(sources[0])
    (root / "NORMAL" / "scan 001.jpeg").symlink_to(sources[1])
    (root / "PNEUMONIA" / "whatever.png").symlink_to(sources[2])
    (root / "PNEUMONIA" / "notes.txt").write_text("not an image")
    (root / "PNEUMONIA" / "folder.jpeg").mkdir()
    found, unknown = scan_collection(root)
    records = found["all"]
    assert len(records) == 3 and unknown == 2
    by_name = {Path(r.path).name: r for r in records}
    assert by_name["scan 001.jpeg"].subtype == "unknown"
    assert by_name["scan 001.jpeg"].patient == "file:NORMAL/scan 001.jpeg", "each unknown file is its own patient"
    assert by_name[sources[0].name].patient == patient_of(sources[0].name)[0]


# --- the patient split -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_records(real_scan: tuple[dict[str, list[Record]], int]) -> list[Record]:
    return real_scan[0]["train"]


def test_patient_split_has_no_patient_on_both_sides(train_records: list[Record]) -> None:
    split = patient_split(train_records, val_fraction=0.15, seed=42)
    assert sorted(r.path for r in split) == sorted(r.path for r in train_records)
    train_patients = {r.patient for r in split if r.split == "train"}
    val_patients = {r.patient for r in split if r.split == "val"}
    assert val_patients and train_patients
    assert not train_patients & val_patients
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        in_class = [r for r in split if r.label == label]
        share = sum(r.split == "val" for r in in_class) / len(in_class)
        assert abs(share - 0.15) < 0.02, f"{name}: {share:.3f} of images in validation"


def test_patient_split_is_reproducible_per_seed(train_records: list[Record]) -> None:
    def val_paths(seed: int) -> set[str]:
        return {r.path for r in patient_split(train_records, 0.15, seed) if r.split == "val"}

    first = val_paths(42)
    assert val_paths(42) == first
    other = val_paths(7)
    assert other != first
    assert len(other & first) < 0.5 * len(first), "another seed draws mostly other patients"


# --- manifest -----------------------------------------------------------------------------


def test_manifest_round_trip(tmp_path: Path, train_records: list[Record]) -> None:
    records = patient_split(train_records[:40] + train_records[-40:], 0.2, seed=1)
    records.append(Record('odd/na,me "quoted" 胸部.jpeg', 1, "file:PNEUMONIA/x", "unknown", "val"))
    path = tmp_path / "deep" / "manifest.csv"
    write_manifest(records, path)
    assert read_manifest(path) == records


# --- duplicates -----------------------------------------------------------------------------


def test_find_duplicates_across_folders_and_splits(tmp_path: Path, chest_xray: Path) -> None:
    normal = sorted((chest_xray / "train" / "NORMAL").iterdir())[:3]
    pneumonia = sorted((chest_xray / "train" / "PNEUMONIA").iterdir())[:2]
    root = tmp_path / "dups"
    for split in ("train", "val"):
        for name in ("NORMAL", "PNEUMONIA"):
            (root / split / name).mkdir(parents=True)
    # Derived copies in tmp_path: byte-identical files under other names, splits and labels.
    shutil.copyfile(normal[0], root / "train" / "NORMAL" / "IM-9001-0001.jpeg")
    shutil.copyfile(normal[0], root / "train" / "NORMAL" / "IM-9001-0002.jpeg")
    shutil.copyfile(normal[1], root / "train" / "NORMAL" / "IM-9002-0001.jpeg")
    shutil.copyfile(normal[1], root / "val" / "NORMAL" / "IM-9003-0001.jpeg")
    shutil.copyfile(pneumonia[0], root / "train" / "PNEUMONIA" / "person9001_virus_1.jpeg")
    shutil.copyfile(pneumonia[0], root / "val" / "PNEUMONIA" / "person9002_virus_2.jpeg")
    near = bytearray(normal[2].read_bytes())
    shutil.copyfile(normal[2], root / "train" / "NORMAL" / "IM-9004-0001.jpeg")
    near[-3] ^= 0xFF  # one byte differs: not a duplicate
    (root / "val" / "NORMAL" / "IM-9005-0001.jpeg").write_bytes(bytes(near))
    shutil.copyfile(pneumonia[1], root / "train" / "PNEUMONIA" / "person9003_bacteria_1.jpeg")

    found, _ = scan_collection(root)
    groups = find_duplicates([r for records in found.values() for r in records])
    as_names = sorted(sorted(f"{r.split}/{Path(r.path).name}" for r in group) for group in groups)
    assert as_names == [
        ["train/IM-9001-0001.jpeg", "train/IM-9001-0002.jpeg"],
        ["train/IM-9002-0001.jpeg", "val/IM-9003-0001.jpeg"],
        ["train/person9001_virus_1.jpeg", "val/person9002_virus_2.jpeg"],
    ]


def test_no_duplicates_in_a_clean_folder(real_scan: tuple[dict[str, list[Record]], int]) -> None:
    assert find_duplicates(real_scan[0]["val"]) == []


# --- cache --------------------------------------------------------------------------------


@pytest.fixture()
def image_copies(tmp_path: Path, chest_xray: Path) -> list[str]:
    """Derived copies in tmp_path, so a test may touch their modification times."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for source in sorted((chest_xray / "val" / "PNEUMONIA").iterdir())[:6]:
        target = folder / source.name
        shutil.copyfile(source, target)
        paths.append(str(target))
    return paths


def test_cached_images_builds_once_then_reuses(
    tmp_path: Path, image_copies: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    calls: list[int] = []
    real_decode_all = cache_module.decode_all

    def counting_decode_all(paths, size, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(paths))
        return real_decode_all(paths, size, **kwargs)

    monkeypatch.setattr(cache_module, "decode_all", counting_decode_all)
    first = cached_images(image_copies, 64, cache_dir=cache_dir, progress=False)
    assert first.shape == (6, 64, 64) and first.dtype == np.uint8
    for index, path in enumerate(image_copies):
        np.testing.assert_array_equal(first[index], load_image(path, 64))
    files = list(cache_dir.glob("*.npy"))
    assert len(files) == 1 and calls == [6]
    built_at = files[0].stat().st_mtime_ns

    again = cached_images(image_copies, 64, cache_dir=cache_dir, progress=False)
    assert calls == [6], "the second call must read the cache, not decode"
    assert isinstance(again, np.memmap)
    np.testing.assert_array_equal(np.asarray(again), first)
    assert files[0].stat().st_mtime_ns == built_at

    # A changed source file (new mtime) or another size is a new key, never a stale array.
    stat = os.stat(image_copies[0])
    os.utime(image_copies[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    cached_images(image_copies, 64, cache_dir=cache_dir, progress=False)
    cached_images(image_copies, 32, cache_dir=cache_dir, progress=False)
    assert calls == [6, 6, 6]
    assert len(list(cache_dir.glob("*.npy"))) == 3
    assert not list(cache_dir.glob("*.tmp.npy")), "partial files are renamed into place"


def test_cache_key_and_wrong_shape_rebuild(tmp_path: Path, image_copies: list[str]) -> None:
    assert cache_key(image_copies, 64) == cache_key(list(image_copies), 64)
    assert cache_key(image_copies, 64) != cache_key(image_copies, 96)
    assert cache_key(image_copies, 64) != cache_key(image_copies[:-1], 64)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    target = cache_dir / f"images-64px-{cache_key(image_copies, 64)}.npy"
    np.save(target, np.zeros((2, 64, 64), dtype=np.uint8))  # a damaged or foreign file
    rebuilt = cached_images(image_copies, 64, cache_dir=cache_dir, progress=False)
    assert rebuilt.shape == (6, 64, 64) and rebuilt.any()
