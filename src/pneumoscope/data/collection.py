"""Chest X-ray collections on disk: which files, which class, which patient, which split.

Splits are made by patient. The Kermany file names carry the patient, and one child can have
several radiographs; an image-level split puts the same lungs on both sides and inflates the
validation score (measured in ``docs/leakage.md``).
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.config import CLASS_NAMES
from pneumoscope.data.images import IMAGE_SUFFIXES
from pneumoscope.errors import CollectionError

SPLITS = ("train", "val", "test")

_PERSON = re.compile(r"^person(\d+)_(bacteria|virus)_\d+", re.IGNORECASE)
_IM = re.compile(r"^(NORMAL2-IM|IM)-(\d+)-", re.IGNORECASE)


@dataclass(frozen=True)
class Record:
    """One image of a collection, a row of the manifest."""

    path: str
    label: int
    patient: str
    subtype: str
    """``bacteria``, ``virus``, ``normal`` or ``unknown``."""
    split: str

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


SUBTYPE_TARGETS = {"virus": 0, "bacteria": 1}
"""The subtype head's target per :attr:`Record.subtype` (``SUBTYPE_NAMES`` order); any other is -1."""


def subtype_targets(records: list[Record]) -> np.ndarray:
    """0 viral, 1 bacterial, -1 where there is no subtype (NORMAL films, unparsed names): masked out."""
    return np.array([SUBTYPE_TARGETS.get(r.subtype, -1) if r.label == 1 else -1 for r in records], dtype=np.int64)


def patient_of(file_name: str) -> tuple[str | None, str | None]:
    """(patient id, subtype) parsed from a Kermany file name, or (None, None) when unknown.

    ``personN_*`` ids and ``IM-XXXX`` ids are different namespaces, as are ``IM`` and
    ``NORMAL2-IM`` series, so each id is prefixed with its namespace.
    """
    stem = Path(file_name).name
    if match := _PERSON.match(stem):
        return f"person{int(match.group(1))}", match.group(2).lower()
    if match := _IM.match(stem):
        return f"{match.group(1).upper()}-{match.group(2)}", "normal"
    return None, None


def scan_folder(folder: Path, split: str) -> tuple[list[Record], int]:
    """Records of ``folder/{NORMAL,PNEUMONIA}/*``; also returns how many names had no patient id."""
    records: list[Record] = []
    unknown = 0
    for label, class_name in enumerate(CLASS_NAMES):
        class_dir = folder / class_name
        if not class_dir.is_dir():
            continue
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            patient, subtype = patient_of(path.name)
            if patient is None:
                unknown += 1
                patient, subtype = f"file:{class_name}/{path.name}", "unknown"
            records.append(Record(str(path), label, patient, subtype or "unknown", split))
    return records, unknown


def is_split_folder(folder: Path) -> bool:
    return any((folder / name).is_dir() for name in CLASS_NAMES)


def scan_collection(root: str | Path) -> tuple[dict[str, list[Record]], int]:
    """Records per split of a Kaggle-layout root, or of a single ``NORMAL/ PNEUMONIA/`` folder.

    A single folder is returned under the split name ``"all"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise CollectionError(f"folder not found: {root}")
    found: dict[str, list[Record]] = {}
    unknown = 0
    if is_split_folder(root):
        found["all"], unknown = scan_folder(root, "all")
    else:
        for split in SPLITS:
            if is_split_folder(root / split):
                found[split], count = scan_folder(root / split, split)
                unknown += count
    if not any(found.values()):
        raise CollectionError(
            f"{root} holds no images in NORMAL/ and PNEUMONIA/ folders "
            "(expected ROOT/{train,val,test}/{NORMAL,PNEUMONIA}/ or ROOT/{NORMAL,PNEUMONIA}/)"
        )
    return found, unknown


def records_for(root: str | Path, split: str | None = None) -> list[Record]:
    """The records of one split (or of the single folder); a missing split or empty class is an error."""
    found, _ = scan_collection(root)
    if "all" in found:
        records = found["all"]
    else:
        key = split or "test"
        if key not in found:
            raise CollectionError(f"{root} has no '{key}' split (found: {', '.join(found)})")
        records = found[key]
    return records


def require_both_classes(records: list[Record], where: str) -> None:
    present = {r.label for r in records}
    for label, name in enumerate(CLASS_NAMES):
        if label not in present:
            raise CollectionError(f"{where} has no {name} images: both classes are needed")


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks (duplicate images; a model's files in model.json)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def find_duplicates(records: list[Record]) -> list[list[Record]]:
    """Groups of records whose file contents are byte-identical (across splits too)."""
    by_hash: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_hash[content_hash(record.path)].append(record)
    return [group for group in by_hash.values() if len(group) > 1]


def patient_split(
    records: list[Record], val_fraction: float = 0.15, seed: int = 42
) -> list[Record]:
    """Assign ``train``/``val`` by patient, stratified by class, reproducibly from ``seed``.

    Patients are grouped by (class, patient) so a patient's images all land on one side; the
    share of *images* in validation is close to ``val_fraction`` per class.
    """
    rng = np.random.default_rng(seed)
    by_patient: dict[tuple[int, str], list[Record]] = defaultdict(list)
    for record in records:
        by_patient[(record.label, record.patient)].append(record)
    val_patients: set[str] = set()
    for label in range(len(CLASS_NAMES)):
        patients = sorted(p for (lab, p) in by_patient if lab == label)
        order = rng.permutation(len(patients))
        target = val_fraction * sum(len(by_patient[(label, p)]) for p in patients)
        taken = 0
        for index in order:
            patient = patients[index]
            if taken >= target:
                break
            val_patients.add(patient)
            taken += len(by_patient[(label, patient)])
    return [replace(r, split="val" if r.patient in val_patients else "train") for r in records]


def image_split(
    records: list[Record], val_fraction: float = 0.15, seed: int = 42
) -> list[Record]:
    """Assign ``train``/``val`` per *image*, stratified by class: the leaky split.

    Same share of images per class in validation as :func:`patient_split`, but a patient's
    radiographs can land on both sides. It exists only to measure the leakage (the study in
    ``pneumoscope.evaluation.leakage``); never train a model meant for use with it.
    """
    rng = np.random.default_rng(seed)
    val_paths: set[str] = set()
    for label in range(len(CLASS_NAMES)):
        paths = sorted(r.path for r in records if r.label == label)
        count = int(np.ceil(val_fraction * len(paths))) if paths else 0
        val_paths.update(paths[i] for i in rng.permutation(len(paths))[:count])
    return [replace(r, split="val" if r.path in val_paths else "train") for r in records]


def write_manifest(records: list[Record], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "label", "patient", "subtype", "split"])
        writer.writeheader()
        for record in records:
            writer.writerow(asdict(record))


def read_manifest(path: str | Path) -> list[Record]:
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [
            Record(row["path"], int(row["label"]), row["patient"], row["subtype"], row["split"])
            for row in csv.DictReader(handle)
        ]


# ---------------------------------------------------------------------------- what an evaluation reads
@dataclass
class EvaluationSet:
    """The labelled images of one evaluation: read once, shared by every model compared."""

    root: Path
    split: str
    records: list[Record]

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.records]

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=int)

    @property
    def patients(self) -> list[str]:
        return [r.patient for r in self.records]

    @property
    def subtypes(self) -> np.ndarray:
        """0 viral, 1 bacterial, -1 unknown (NORMAL films, names that carry no subtype)."""
        return subtype_targets(self.records)

    def describe(self) -> dict[str, Any]:
        return {"root": str(self.root), "split": self.split, "n_images": len(self.records),
                "n_patients": len(set(self.patients))}


def load_evaluation_set(root: str | Path, split: str = "test") -> EvaluationSet:
    """The records of ``split`` (or of a plain NORMAL/ PNEUMONIA/ folder), both classes required.

    Raises :class:`~pneumoscope.data.collection.CollectionError` for a missing folder, a missing
    split or an empty class: each is a one-line error on the command line.
    """
    root = Path(root)
    if root.suffix.lower() == ".csv" and root.is_file():
        # A split manifest written by `pneumoscope train`: evaluate exactly that run's split.
        records = [r for r in read_manifest(root) if r.split == split]
        if not records:
            raise CollectionError(f"manifest {root} has no rows for split '{split}'")
        missing = [r.path for r in records if not Path(r.path).is_file()]
        if missing:
            raise CollectionError(f"manifest {root} lists {len(missing)} missing files, e.g. {missing[0]}")
        require_both_classes(records, f"{root} ({split})")
        return EvaluationSet(root, split, records)
    records = records_for(root, split)
    name = records[0].split if records else split
    where = str(root) if name == "all" else f"{root} ({name})"
    require_both_classes(records, where)
    return EvaluationSet(root, "folder" if name == "all" else name, records)
