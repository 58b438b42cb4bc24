"""``pneumoscope predict``: folders in, one row per file out, broken files reported, never fatal."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _inference import colour_photo
from pneumoscope.cli import main
from pneumoscope.inference.batch import COLUMNS, expand_paths


@pytest.fixture()
def folder(tmp_path: Path, normal_original: Path, pneumonia_original: Path) -> Path:
    """Two real originals, a broken JPEG, an empty PNG, a colour photo, a text file, and a subfolder."""
    root = tmp_path / "inputs"
    (root / "more").mkdir(parents=True)
    shutil.copy(normal_original, root / "normal.jpeg")
    shutil.copy(pneumonia_original, root / "pneumonia.jpeg")
    (root / "broken.jpeg").write_bytes(normal_original.read_bytes()[:3000])  # truncated mid-scan
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(colour_photo()).save(root / "photo.png")
    shutil.copy(normal_original, root / "more" / "deeper.jpeg")
    return root


def _read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and list(rows[0]) == COLUMNS
    return {Path(row["path"]).name: row for row in rows}


def test_folder_with_broken_files_gives_a_row_each_and_exit_1(
    folder: Path, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "results.csv"
    status = main(["predict", str(folder), "--model", str(model_path), "--out", str(out), "--workers", "2"])
    assert status == 1
    rows = _read_csv(out)
    assert set(rows) == {"normal.jpeg", "pneumonia.jpeg", "broken.jpeg", "empty.png", "photo.png"}
    for name in ("normal.jpeg", "pneumonia.jpeg"):
        assert rows[name]["label"] in ("NORMAL", "PNEUMONIA") and not rows[name]["error"]
        assert 0.0 < float(rows[name]["probability"]) < 1.0
        assert rows[name]["is_chest_xray"] == "True"
    assert "truncated" in rows["broken.jpeg"]["error"] and rows["broken.jpeg"]["label"] == "ERROR"
    assert "empty" in rows["empty.png"]["error"]
    assert rows["photo.png"]["is_chest_xray"] == "False" and "colour" in rows["photo.png"]["warnings"]
    # a refused image is answered as refused: its network output only under raw_*, never as the label
    assert rows["photo.png"]["label"] == "NOT A CHEST X-RAY" and rows["photo.png"]["probability"] == ""
    assert rows["photo.png"]["raw_label"] in ("NORMAL", "PNEUMONIA") and 0 <= float(rows["photo.png"]["raw_probability"]) <= 1
    assert rows["photo.png"]["xray_check"] == "refuse"
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "warning:" in err and "photo.png" in err and "not a diagnosis" in err
    assert "--recursive" in err  # the skipped subfolder is mentioned


def test_json_output_recursive_and_heatmaps(folder: Path, model_path: Path, tmp_path: Path) -> None:
    for name in ("broken.jpeg", "empty.png", "photo.png"):
        (folder / name).unlink()
    out, maps = tmp_path / "results.json", tmp_path / "maps"
    status = main(["predict", str(folder), "--recursive", "--model", str(model_path), "--out", str(out),
                   "--heatmaps", str(maps), "--batch-size", "2"])
    assert status == 0
    rows = json.loads(out.read_text())
    assert [Path(r["path"]).name for r in rows] == ["deeper.jpeg", "normal.jpeg", "pneumonia.jpeg"]
    assert all(r["error"] is None and isinstance(r["probability"], float) for r in rows)
    written = sorted(p.name for p in maps.iterdir())
    assert written == ["deeper_gradcam.png", "normal_gradcam.png", "pneumonia_gradcam.png"]
    assert [Path(r["heatmap"]).name for r in rows] == ["deeper_gradcam.png", "normal_gradcam.png", "pneumonia_gradcam.png"]
    with Image.open(maps / "normal_gradcam.png") as overlay:
        # Drawn at a readable size, with a band under the picture: label, probability, what the
        # map explains and a colour bar (the jet map's blue-to-red, a strip of saturated colours).
        assert overlay.mode == "RGB" and max(overlay.size) >= 640 and overlay.height > overlay.width * 0.5
        band = np.asarray(overlay)[-overlay.height // 6:]
        saturation = band.max(axis=2).astype(int) - band.min(axis=2)
        assert (saturation > 150).mean() > 0.05, "no colour bar under the heatmap"


def test_csv_on_stdout(folder: Path, model_path: Path, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    status = main(["predict", str(folder / "normal.jpeg"), str(folder / "missing.png"), "--model", str(model_path)])
    assert status == 1
    lines = capsys.readouterr().out.splitlines()
    rows = list(csv.DictReader(lines))
    assert [Path(r["path"]).name for r in rows] == ["normal.jpeg", "missing.png"]
    assert "not found" in rows[1]["error"]


def test_bad_arguments_are_one_line_errors(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(tmp_path), "--model", str(model_path)]) == 2
    assert "no images found" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--out", str(tmp_path / "r.xlsx")]) == 2
    assert ".csv, .json or .jsonl" in capsys.readouterr().err


def test_expand_paths_keeps_images_and_dicom(tmp_path: Path) -> None:
    for name in ("a.PNG", "b.dcm", "c.txt", ".hidden.png", "sub/d.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    flat, skipped = expand_paths([tmp_path])
    assert [p.name for p in flat] == ["a.PNG", "b.dcm"] and skipped == 1
    deep, _ = expand_paths([tmp_path, tmp_path / "a.PNG"], recursive=True)
    assert [p.name for p in deep] == ["a.PNG", "b.dcm", "d.jpg"]


def _prepare_or_die(path: str, size: int, keep_display: bool):
    """A decoder that kills its worker process on one file, as the OOM killer or a crashing codec would.
    Workers come from a fork server and import this module afresh: nothing patched here reaches them
    but this function itself, which the job names."""
    import os

    from pneumoscope.inference.prepare import prepare_image

    if "crash" in Path(path).name:
        os._exit(9)
    return prepare_image(path, size, keep_display=keep_display)


def test_a_dead_decoding_worker_costs_one_row_not_the_run(
    folder: Path, model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pneumoscope.inference import batch

    shutil.copy(folder / "normal.jpeg", folder / "crash.jpeg")
    monkeypatch.setattr(batch, "_prepare", _prepare_or_die)
    out = tmp_path / "rows.csv"
    status = main(["predict", str(folder), "--model", str(model_path), "--out", str(out), "--workers", "2",
                   "--decode-timeout", "5"])
    assert status == 1
    rows = _read_csv(out)
    assert "did not finish within 5 s" in rows["crash.jpeg"]["error"]
    for name in ("normal.jpeg", "pneumonia.jpeg"):  # the files after the dead worker's are still scored
        assert not rows[name]["error"] and rows[name]["label"] in ("NORMAL", "PNEUMONIA")


def test_cli_version_and_help_state_defaults(capsys: pytest.CaptureFixture) -> None:
    from pneumoscope.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("pneumoscope ")
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: test)" in text and "(default: None)" not in text


def test_batch_without_heatmaps_never_imports_pytorch(model_path: Path, normal_original: Path, tmp_path: Path) -> None:
    """Scoring needs ONNX Runtime only: once the model's export is cached, `predict` without
    --heatmaps starts without PyTorch (1-2 s of imports on two cores)."""
    import subprocess
    import sys

    from pneumoscope.inference.predictor import Predictor

    Predictor.load(str(model_path))  # makes sure the export is cached
    script = ("import sys; from pneumoscope.cli import main; "
              f"status = main(['predict', {str(normal_original)!r}, '--model', "
              f"{str(model_path)!r}, '--out', {str(tmp_path / 'r.csv')!r}]); "
              "print('torch' in sys.modules, status)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["False", "0"], done.stdout + done.stderr
    rows = list(csv.DictReader((tmp_path / "r.csv").read_text().splitlines()))
    assert [row["label"] for row in rows] == [Predictor.load(str(model_path)).predict(normal_original).label]


def test_a_folder_without_images_is_named_beside_other_inputs(tmp_path: Path, normal_original: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "bad.jpeg").write_bytes(b"not a jpeg")
    out = tmp_path / "r.csv"
    status = main(["predict", str(normal_original), str(tmp_path / "bad.jpeg"), str(tmp_path / "emptydir"),
                   "--out", str(out), "--workers", "1"])
    err = capsys.readouterr().err
    assert status == 1  # the bad file is an error row
    assert f"no images found in {tmp_path / 'emptydir'}" in err
    rows = _read_csv(out)
    assert set(rows) == {normal_original.name, "bad.jpeg"}
    assert rows[normal_original.name]["xray_check"] in ("pass", "caution")


def test_every_argument_of_every_command_has_help() -> None:
    """``--help`` explains every argument: walk the parser, subcommands and their subcommands."""
    import argparse

    from pneumoscope.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{prefix} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "pneumoscope")
    assert not missing, f"arguments without help: {missing}"
