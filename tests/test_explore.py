"""``pneumoscope data summary`` on the real collection (read in place) and on a small odd
folder built in ``tmp_path``: the counts a reader of the report relies on, the consistency
between them, and the files the report promises."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from _dicom import make_dicom

from pneumoscope.data.explore import FIGURES, write_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def real_summary(chest_xray: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """One run on the real Kaggle-layout root (about 5 s of CPU), shared by the tests below."""
    out = tmp_path_factory.mktemp("summary")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        summary = write_summary(chest_xray, out)
    return summary, out, printed.getvalue()


def test_image_counts(real_summary: tuple[dict[str, Any], Path, str]) -> None:
    summary, _, _ = real_summary
    assert summary["layout"] == "splits"
    assert set(summary["splits"]) == {"train", "val"}
    train, val = summary["splits"]["train"], summary["splits"]["val"]
    assert train["images"] == {"NORMAL": 1341, "PNEUMONIA": 3875, "total": 5216}
    assert val["images"] == {"NORMAL": 8, "PNEUMONIA": 8, "total": 16}
    assert summary["overall"]["images"] == {"NORMAL": 1349, "PNEUMONIA": 3883, "total": 5232}
    assert train["normal_share"] == pytest.approx(1341 / 5216, abs=1e-4)
    assert train["pneumonia_per_normal"] == pytest.approx(3875 / 1341, abs=1e-3)
    assert summary["unrecognised_patient_ids"] == 0


def test_patient_counts_are_consistent(real_summary: tuple[dict[str, Any], Path, str]) -> None:
    summary, _, _ = real_summary
    for split, info in {**summary["splits"], "overall": summary["overall"]}.items():
        for name in ("NORMAL", "PNEUMONIA"):
            images, patients = info["images"][name], info["patients"][name]
            stats = info["images_per_patient"][name]
            assert 0 < patients <= images, (split, name)
            distribution = {int(k): v for k, v in stats["distribution"].items()}
            assert sum(distribution.values()) == patients
            assert sum(k * v for k, v in distribution.items()) == images
            assert stats["max"] == max(distribution)
            assert stats["mean"] == pytest.approx(images / patients, abs=1e-3)
            assert stats["patients_with_several"] == patients - distribution.get(1, 0)
        assert info["patients"]["total"] == info["patients"]["NORMAL"] + info["patients"]["PNEUMONIA"]
        assert info["subtypes"]["bacteria"] + info["subtypes"]["virus"] == info["images"]["PNEUMONIA"]
        assert info["subtypes"]["normal"] == info["images"]["NORMAL"]
    # The facts of this data set, as reported in docs and the summary.
    assert summary["splits"]["train"]["patients"] == {"NORMAL": 1211, "PNEUMONIA": 1635, "total": 2846}
    assert summary["splits"]["val"]["patients"] == {"NORMAL": 8, "PNEUMONIA": 7, "total": 15}
    assert summary["patients_in_several_splits"]["count"] == 0
    mix = summary["pneumonia_patients_by_subtype"]
    assert sum(mix.values()) == summary["overall"]["patients"]["PNEUMONIA"]


def test_duplicates_and_sizes(real_summary: tuple[dict[str, Any], Path, str], chest_xray: Path) -> None:
    summary, _, _ = real_summary
    dups = summary["duplicates"]
    assert dups["groups"] == 24 and dups["redundant_files"] == 26
    assert dups["across_splits"] == 0 and dups["across_classes"] == 0 and dups["across_patients"] == 0
    for group in dups["examples"]:
        contents = {(chest_xray / relative).read_bytes() for relative in group}
        assert len(group) > 1 and len(contents) == 1
    sizes = summary["image_sizes"]
    assert sizes["read"] == 5232 and sizes["unreadable"] == 0
    assert sizes["distinct_sizes"] == 1 and sizes["most_common"][0] == {"width": 224, "height": 224, "count": 5232}


def test_promised_files(real_summary: tuple[dict[str, Any], Path, str]) -> None:
    summary, out, _ = real_summary
    figures = summary["figures"]
    assert set(FIGURES.values()) <= set(figures.values())
    assert "duplicates" in figures, "this collection has duplicates, so their figure is drawn"
    for name in figures.values():
        path = out / name
        assert path.read_bytes()[:8] == PNG_MAGIC, name
        with Image.open(path) as image:
            assert min(image.size) > 200
    assert json.loads((out / "summary.json").read_text()) == summary
    markdown = (out / "summary.md").read_text()
    for name in figures.values():
        assert f"]({name})" in markdown, f"summary.md does not embed {name}"
    assert "NORMAL is the minority" in markdown
    assert "1,341" in markdown and "3,875" in markdown
    assert len(summary["samples"]) == 12


def test_printed_table(real_summary: tuple[dict[str, Any], Path, str]) -> None:
    _, _, printed = real_summary
    assert re.search(r"\|\s*train\s*\|\s*1,341\s*\|\s*3,875\s*\|\s*5,216\s*\|", printed)
    assert re.search(r"\|\s*val\s*\|\s*8\s*\|\s*8\s*\|\s*16\s*\|", printed)
    assert re.search(r"\|\s*train\s*\|\s*1,211\s*\|\s*1,635\s*\|", printed), "patients per class"
    assert "file names with no recognised patient id: 0" in printed


def test_cli_data_summary(chest_xray: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "pneumoscope.cli", "data", "summary", str(chest_xray), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"\|\s*train\s*\|\s*1,341\s*\|\s*3,875\s*\|", result.stdout)
    assert (out / "summary.md").is_file() and (out / "class_counts.png").is_file()


def test_cli_reports_an_empty_folder_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pneumoscope.cli import main

    (tmp_path / "NORMAL").mkdir()
    assert main(["data", "summary", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("pneumoscope data: error:") and "holds no images" in error
    assert "\n" not in error


def test_single_odd_folder(tmp_path: Path, chest_xray: Path) -> None:
    """A user's folder: no splits, a DICOM (sized through the loader), a broken file, a copy
    under another name, a name without a patient id."""
    normal = sorted((chest_xray / "val" / "NORMAL").iterdir())[:3]
    pneumonia = sorted((chest_xray / "val" / "PNEUMONIA").iterdir())[:3]
    root = tmp_path / "upload"
    (root / "NORMAL").mkdir(parents=True)
    (root / "PNEUMONIA").mkdir()
    for source in normal:
        (root / "NORMAL" / source.name).symlink_to(source)
    for source in pneumonia:
        (root / "PNEUMONIA" / source.name).symlink_to(source)
    (root / "PNEUMONIA" / "copy of scan.jpeg").symlink_to(pneumonia[0])
    (root / "PNEUMONIA" / "person9999_virus_1.jpeg").write_bytes(b"<html>not an image</html>")

    grey = np.asarray(Image.open(normal[0]).convert("L").resize((256, 200)))
    (root / "NORMAL" / "IM-9999-0001.dcm").write_bytes(make_dicom(grey.astype(np.uint16) * 16))

    out = tmp_path / "out"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        summary = write_summary(root, out)
    assert summary["layout"] == "single folder" and list(summary["splits"]) == ["all"]
    assert summary["splits"]["all"]["images"] == {"NORMAL": 4, "PNEUMONIA": 5, "total": 9}
    assert summary["unrecognised_patient_ids"] == 1
    sizes = summary["image_sizes"]
    assert sizes["unreadable"] == 1 and sizes["unreadable_files"] == ["PNEUMONIA/person9999_virus_1.jpeg"]
    assert {"width": 256, "height": 200, "count": 1} in sizes["most_common"]
    assert summary["duplicates"]["groups"] == 1 and summary["duplicates"]["across_patients"] == 1
    assert "PNEUMONIA/person9999_virus_1.jpeg" not in summary["samples"], "unreadable files are not shown"
    assert "NORMAL/IM-9999-0001.dcm" in summary["samples"]
    assert "no recognised patient id: 1" in printed.getvalue()
    for name in summary["figures"].values():
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
