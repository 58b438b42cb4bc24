"""``evaluate`` and ``compare`` on the shared validation images (16 real radiographs).

A tiny untrained network saved as a real bundle stands in for a trained model: the tests check
the plumbing and the consistency of the numbers, which do not depend on the model being good,
and need no training run to exist. The bundled default is tested too as soon as it ships.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscope.cli import main
from pneumoscope.config import ConfigError, parse_config
from pneumoscope.data.collection import CollectionError
from pneumoscope.evaluation.report import EVALUATE_FILES, compare, evaluate
from pneumoscope.models.bundle import load_bundle, save_bundle
from pneumoscope.models.nets import build_net



def _tiny_bundle(folder: Path, name: str, seed: int, threshold: float) -> Path:
    config = parse_config({"name": name, "data": {"image_size": 64}, "model": {"arch": "simple_cnn", "width": 4}})
    torch.manual_seed(seed)
    net = build_net(config.model, config.data.image_size).eval()
    return save_bundle(folder, config, net, {"name": name, "threshold": threshold, "temperature": 1.5})


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    base = tmp_path_factory.mktemp("models")
    return [_tiny_bundle(base / "a", "tiny-a", 0, 0.5), _tiny_bundle(base / "b", "tiny-b", 1, 0.45)]


def check_evaluation(out: Path, result: dict, expected_threshold: float) -> None:
    """Every file exists and the numbers agree with one another and with the files."""
    for name in EVALUATE_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("n", "n_normal", "n_pneumonia", "threshold", "auc", "accuracy", "sensitivity", "specificity",
                "precision", "f1", "per_class", "confusion_matrix", "auc_ci95", "accuracy_ci95", "brier", "ece"):
        assert key in saved, key
        if isinstance(saved[key], float):
            assert saved[key] == pytest.approx(result[key])
        else:
            assert saved[key] == result[key], key
    (tn, fp), (fn, tp) = saved["confusion_matrix"]
    n = saved["n"]
    assert (saved["n_normal"], saved["n_pneumonia"]) == (8, 8) and n == 16
    assert tn + fp + fn + tp == n
    assert (tn + fp, fn + tp) == (saved["n_normal"], saved["n_pneumonia"])
    assert saved["accuracy"] == pytest.approx((tn + tp) / n)
    assert saved["sensitivity"] == pytest.approx(tp / (tp + fn))
    assert saved["specificity"] == pytest.approx(tn / (tn + fp))
    assert saved["per_class"]["NORMAL"]["support"] == saved["n_normal"]
    assert saved["per_class"]["PNEUMONIA"]["support"] == saved["n_pneumonia"]
    assert saved["per_class"]["NORMAL"]["recall"] == pytest.approx(saved["specificity"])
    assert saved["per_class"]["PNEUMONIA"]["recall"] == pytest.approx(saved["sensitivity"])
    assert saved["threshold"] == pytest.approx(expected_threshold)
    assert 0 <= saved["brier"] <= 1 and 0 <= saved["ece"] <= 1
    for key in ("auc", "accuracy"):
        low, high = saved[f"{key}_ci95"]
        assert low <= saved[key] <= high
    with (out / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == n
    assert sum(int(r["correct"]) for r in rows) == tn + tp
    assert all((float(r["prob"]) >= saved["threshold"]) == bool(int(r["predicted"])) for r in rows)
    report = (out / "classification_report.txt").read_text()
    assert "NORMAL" in report and "PNEUMONIA" in report
    markdown = (out / "report.md").read_text()
    for name in EVALUATE_FILES:
        if name.endswith(".png"):
            assert f"({name})" in markdown, name


def test_evaluate_writes_every_file_with_consistent_numbers(
    tiny_models: list[Path], chest_xray: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = evaluate(chest_xray, split="val", model=tiny_models[0], out=tmp_path, n_boot=200, progress=False)
    check_evaluation(tmp_path, result, expected_threshold=0.5)
    assert result["threshold_source"] == "model" and result["data"]["split"] == "val"
    printed = capsys.readouterr().out
    assert "AUC" in printed and "specificity" in printed and "report.md" in printed


def test_threshold_override(tiny_models: list[Path], chest_xray: Path, tmp_path: Path) -> None:
    result = evaluate(chest_xray, "val", tiny_models[0], tmp_path, threshold=0.0, n_boot=50, progress=False, quiet=True)
    check_evaluation(tmp_path, result, expected_threshold=0.0)
    assert result["confusion_matrix"] == [[0, 8], [0, 8]]  # everything reaches a threshold of 0
    assert result["threshold_source"] == "override"
    with pytest.raises(ConfigError, match="between 0 and 1"):
        evaluate(chest_xray, "val", tiny_models[0], tmp_path, threshold=1.5, progress=False)


def test_plain_class_folder_is_accepted(tiny_models: list[Path], chest_xray: Path, tmp_path: Path) -> None:
    result = evaluate(chest_xray / "val", "test", tiny_models[0], tmp_path, n_boot=50, progress=False, quiet=True)
    assert result["n"] == 16 and result["data"]["split"] == "folder"


def test_evaluate_with_the_bundled_model(chest_xray: Path, tmp_path: Path) -> None:
    result = evaluate(chest_xray, split="val", model=None, out=tmp_path, n_boot=200, progress=False, quiet=True)
    check_evaluation(tmp_path, result, expected_threshold=load_bundle().threshold)
    assert result["model"]["bundled_default"] is True


def test_compare_puts_models_side_by_side(
    tiny_models: list[Path], chest_xray: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = compare([str(m) for m in tiny_models], chest_xray, split="val", out=tmp_path, n_boot=100, progress=False)
    for name in ("comparison.json", "comparison.md", "confusion_matrices.png", "roc.png", "pr.png", "predictions.csv"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert [e["name"] for e in saved["models"]] == ["tiny-a", "tiny-b"]
    assert [e["metrics"]["threshold"] for e in saved["models"]] == pytest.approx([0.5, 0.45])
    for entry in saved["models"]:
        assert sum(map(sum, entry["metrics"]["confusion_matrix"])) == 16
    assert "difference_from_first" in saved["models"][1]
    # compare and evaluate go through the same code: the same model gives the same numbers.
    alone = evaluate(chest_xray, "val", tiny_models[1], tmp_path / "b", n_boot=100, progress=False, quiet=True)
    assert alone["auc"] == pytest.approx(result["models"][1]["metrics"]["auc"])
    assert alone["confusion_matrix"] == result["models"][1]["metrics"]["confusion_matrix"]
    printed = capsys.readouterr().out
    assert "tiny-a" in printed and "tiny-b" in printed


@pytest.fixture
def one_class_folder(chest_xray: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "one_class"
    (folder / "NORMAL").mkdir(parents=True)
    (folder / "PNEUMONIA").mkdir()
    source = sorted((chest_xray / "val" / "NORMAL").iterdir())[0]
    os.symlink(source, folder / "NORMAL" / source.name)
    return folder


def test_missing_folder_and_empty_class_are_clear_errors(one_class_folder: Path, tmp_path: Path, chest_xray: Path) -> None:
    with pytest.raises(CollectionError, match="folder not found"):
        evaluate(tmp_path / "nowhere", "test", out=tmp_path / "out")
    with pytest.raises(CollectionError, match="no PNEUMONIA images"):
        evaluate(one_class_folder, "test", out=tmp_path / "out")
    with pytest.raises(CollectionError, match="no 'test' split"):
        evaluate(chest_xray, "test", out=tmp_path / "out")


@pytest.mark.parametrize("problem", ["missing", "empty_class"])
def test_cli_prints_one_line_and_exits_2(
    problem: str, one_class_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "nowhere" if problem == "missing" else one_class_folder
    assert main(["evaluate", str(root), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pneumoscope evaluate: error:")
    assert ("folder not found" if problem == "missing" else "no PNEUMONIA images") in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_cli_evaluate_succeeds(tiny_models: list[Path], chest_xray: Path, tmp_path: Path) -> None:
    code = main(["evaluate", str(chest_xray), "--split", "val", "--model", str(tiny_models[1]), "--out", str(tmp_path)])
    assert code == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["threshold"] == pytest.approx(0.45)
    assert np.isfinite(json.loads((tmp_path / "metrics.json").read_text())["auc"])
