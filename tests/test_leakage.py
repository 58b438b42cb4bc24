"""The image-level split hook and the leakage study, at a scale that runs in seconds."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from pneumoscope.config import ConfigError, parse_config
from pneumoscope.data.collection import Record, image_split, patient_split, records_for
from pneumoscope.evaluation.leakage import hold_out_patients, leaked_share, link_collection, run_leakage_study
from pneumoscope.models.datamodule import make_split


@pytest.fixture(scope="module")
def train_records(chest_xray: Path) -> list[Record]:
    return records_for(chest_xray, "train")


def _val_share(records: list[Record], label: int) -> float:
    of_class = [r for r in records if r.label == label]
    return sum(r.split == "val" for r in of_class) / len(of_class)


def test_image_split_keeps_fraction_and_strata_but_leaks(train_records: list[Record]) -> None:
    leaky = image_split(train_records, 0.15, seed=42)
    clean = patient_split(train_records, 0.15, seed=42)
    for label in (0, 1):
        assert _val_share(leaky, label) == pytest.approx(0.15, abs=0.002)
        assert _val_share(clean, label) == pytest.approx(0.15, abs=0.02)
    assert leaked_share(clean) == 0.0
    assert leaked_share(leaky) > 0.1  # many PNEUMONIA patients have several radiographs
    assert image_split(train_records, 0.15, seed=42) == leaky  # reproducible


def test_make_split_honours_split_level(chest_xray: Path) -> None:
    patient = make_split(parse_config({"name": "p", "data": {"root": str(chest_xray)}}))
    image = make_split(parse_config({"name": "i", "data": {"root": str(chest_xray), "split_level": "image"}}))
    assert leaked_share(patient) == 0.0 and leaked_share(image) > 0.1


def test_held_out_patients_are_disjoint_from_the_pool(train_records: list[Record]) -> None:
    pool, held = hold_out_patients(train_records)
    assert not {r.patient for r in pool} & {r.patient for r in held}
    assert len(held) / len(train_records) == pytest.approx(0.15, abs=0.02)


@pytest.fixture
def tiny_collection(train_records: list[Record], tmp_path: Path) -> Path:
    """50 NORMAL images and 70 of PNEUMONIA patients with several radiographs each."""
    by_patient: dict[tuple[int, str], list[Record]] = defaultdict(list)
    for record in train_records:
        by_patient[(record.label, record.patient)].append(record)
    normal = [r for (label, _), rs in sorted(by_patient.items()) if label == 0 for r in rs][:50]
    pneumonia = [r for (label, _), rs in sorted(by_patient.items()) if label == 1 and len(rs) >= 2 for r in rs][:70]
    root = tmp_path / "tiny"
    link_collection(normal + pneumonia, root / "train")
    return root


@pytest.mark.slow
def test_leakage_study_runs_end_to_end(tiny_collection: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMOSCOPE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "study"
    tiny = {"train.batch_size": 8, "train.limit_train_batches": 2, "data.image_size": 64}
    result = run_leakage_study(tiny_collection, out, epochs=1, overrides=tiny, n_boot=100, progress=False)
    for name in ("leakage.json", "leakage.md", "leakage.png", "heldout_manifest.csv"):
        assert (out / name).is_file(), name
    assert json.loads((out / "leakage.json").read_text())["runs"][0]["split_level"] == "image"
    image, patient = result["runs"]
    assert image["val_images_of_training_patients"] > 0 and patient["val_images_of_training_patients"] == 0
    assert image["n_val"] == pytest.approx(patient["n_val"], abs=4)  # same validation share
    for run in result["runs"]:
        assert run["heldout"]["n"] == result["heldout"]["n_images"]  # both scored on the same patients
        assert run["validation"]["auc"] == pytest.approx(run["validation_reported_by_run"]["auc"], abs=1e-4)
        assert run["overstatement"]["auc"] == pytest.approx(run["validation"]["auc"] - run["heldout"]["auc"])
    assert "image-level" in (out / "leakage.md").read_text()


def test_a_foreign_pool_folder_is_never_deleted(tiny_collection: Path, tmp_path: Path) -> None:
    (tmp_path / "out" / "pool").mkdir(parents=True)
    (tmp_path / "out" / "pool" / "precious.txt").write_text("not the study's")
    with pytest.raises(ConfigError, match="not a leakage pool"):
        run_leakage_study(tiny_collection, tmp_path / "out", epochs=1, progress=False)
    assert (tmp_path / "out" / "pool" / "precious.txt").is_file()


@pytest.mark.slow
def test_default_config_comes_from_an_installed_wheel(tmp_path: Path) -> None:
    """The leakage study's baseline config is package data: an installed wheel, run from a folder
    that is not the checkout, finds it (and the bundled model, the examples) inside the package."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(repo),
                    "-w", str(tmp_path / "wheel")], check=True, timeout=300)
    wheel = next((tmp_path / "wheel").glob("pneumoscope-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, timeout=300)
    script = ("import pneumoscope, sys; from pneumoscope.evaluation.leakage import default_config_path; "
              "from pneumoscope.config import load_config; path = default_config_path(); "
              "print(path.is_relative_to(sys.argv[1]), load_config(path).name, pneumoscope.__file__)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "site")], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
                          timeout=300)
    assert done.returncode == 0, done.stderr
    inside, name, module = done.stdout.split()
    assert inside == "True" and name == "baseline" and module.startswith(str(tmp_path / "site")), done.stdout
