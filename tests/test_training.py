"""Training on real images: a tiny run, the threshold rule, calibration, and DDP on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pneumoscope.config import ThresholdConfig, load_config
from pneumoscope.data.collection import read_manifest
from pneumoscope.models.bundle import load_bundle
from pneumoscope.models.decision import choose_threshold, fit_temperature, sigmoid
from pneumoscope.training import resolve_precision, train

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_threshold_rule_keeps_sensitivity() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.35, 0.6, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    rule = ThresholdConfig(rule="min_sensitivity", min_sensitivity=0.8)
    threshold = choose_threshold(labels, probs, rule)
    predicted = probs >= threshold
    assert predicted[labels == 1].mean() >= 0.8
    # the highest such threshold: raising it past the lowest score it calls positive loses sensitivity
    lowest_positive = np.sort(probs[probs > threshold])[0]
    assert (probs[labels == 1] > lowest_positive).mean() < 0.8
    # halfway between the score the rule picks (0.5) and the next lower one (0.35): the same
    # split of validation, with no score sitting on the threshold for float noise to flip
    assert threshold == pytest.approx(0.425)
    assert np.abs(probs - threshold).min() == pytest.approx(0.075)
    assert choose_threshold(labels, probs, ThresholdConfig(rule="fixed", value=0.5)) == 0.5
    youden = choose_threshold(labels, probs, ThresholdConfig(rule="youden"))
    assert 0.3 <= youden <= 0.7


def test_temperature_scaling_repairs_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, 4000)
    labels = (rng.random(4000) < sigmoid(true_logits)).astype(int)
    temperature = fit_temperature(true_logits * 3.0, labels)  # three times overconfident
    assert temperature == pytest.approx(3.0, rel=0.15)


def _cpu(flags: str, cores: int, smt: int = 1) -> str:
    """A /proc/cpuinfo of ``cores`` cores, ``smt`` logical CPUs each."""
    blocks = []
    for core in range(cores):
        for _ in range(smt):
            blocks.append(f"processor\t: {len(blocks)}\nmodel name\t: Test CPU\nphysical id\t: 0\n"
                          f"core id\t\t: {core}\nflags\t\t: fpu sse2 {flags}\n")
    return "\n".join(blocks)


@pytest.mark.parametrize("flags, expected", [
    ("avx avx2 fma", "32-true"),  # AMD EPYC, AVX2 only: bf16 is emulated and 8-11x slower (docs/training_speed.md)
    ("avx2 avx512f avx512_bf16 amx_bf16 amx_tile", "bf16-mixed"),  # Sapphire Rapids
    ("avx2 avx512f avx512_vnni", "32-true"),  # AVX-512 without BF16
])
def test_auto_precision_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, flags: str, expected: str) -> None:
    from pneumoscope import machine

    monkeypatch.setattr(machine, "_cpuinfo", lambda: machine.parse_cpuinfo(_cpu(flags, 2)))
    assert resolve_precision("auto") == expected
    assert resolve_precision("auto", accelerator="gpu") == "bf16-mixed"
    assert resolve_precision("32-true") == "32-true"


def test_physical_cores_ignore_smt_siblings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pneumoscope import machine

    monkeypatch.setattr(machine, "_cpuinfo", lambda: machine.parse_cpuinfo(_cpu("avx2", 4, smt=2)))
    monkeypatch.setattr(machine, "logical_cores", lambda: 8)
    assert machine.physical_cores() == 4 and machine.cpu_model() == "Test CPU" and "avx2" in machine.cpu_flags()
    monkeypatch.setattr(machine, "logical_cores", lambda: 2)  # affinity limits it further
    assert machine.physical_cores() == 2
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ())  # no /proc/cpuinfo: what the OS says
    assert machine.physical_cores() == 2


@pytest.mark.slow
def test_tiny_real_training_run_writes_a_loadable_bundle(small_collection: Path, tmp_path: Path) -> None:
    config = load_config(REPO / "configs" / "baseline.yaml", **{"train.epochs": 2, "data.image_size": 64})
    run = train(config, tmp_path / "run", root=small_collection, progress=False)
    assert run is not None
    for name in ("config.yaml", "split_manifest.csv", "history.csv", "curves.png", "model.safetensors",
                 "model.json", "ood.safetensors", "MODEL_CARD.md"):
        assert (run / name).is_file(), name
    records = read_manifest(run / "split_manifest.csv")
    train_patients = {r.patient for r in records if r.split == "train"}
    val_patients = {r.patient for r in records if r.split == "val"}
    assert train_patients and val_patients and not train_patients & val_patients
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss,train_auc,train_acc,val_loss,val_auc,val_acc")
    assert len(history) == 3
    assert [row.split(",")[0] for row in history[1:]] == ["0", "1"]
    assert all("" not in row.split(",") for row in history[1:]), history  # every figure of every epoch
    assert (run / "logs" / "metrics.csv").is_file()  # what Lightning's CSVLogger wrote, history.csv's source
    assert not (run / "checkpoints").exists()  # no pickled checkpoint: the weights are safetensors
    meta = json.loads((run / "model.json").read_text())
    assert 0 < meta["threshold"] < 1
    assert meta["validation"]["n"] == sum(r.split == "val" for r in records)
    bundle = load_bundle(run)
    assert bundle.threshold == meta["threshold"] and bundle.image_size == 64
    assert not list(run.glob("*.pt")) and not list(run.glob("*.pkl"))
    # ``finalize`` recomputes calibration, threshold and OOD statistics on the same weights and
    # split: the same figures again, the record noting the command.
    from pneumoscope.cli import main

    assert main(["finalize", "--model", str(run)]) == 0
    again = json.loads((run / "model.json").read_text())
    assert again["threshold"] == pytest.approx(meta["threshold"], abs=1e-6)
    assert again["validation"]["confusion_matrix"] == meta["validation"]["confusion_matrix"]
    assert again["training"]["finalized_by"] == f"pneumoscope finalize --model {run}"
    assert "pneumoscope finalize" in (run / "MODEL_CARD.md").read_text()
    assert load_bundle(run).threshold == again["threshold"]


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(small_collection: Path, tmp_path: Path) -> None:
    """The same command trains with DDP (gloo) across two processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(BIN / "pneumoscope"), "train", "--config", str(REPO / "configs" / "baseline.yaml"),
         "--data", str(small_collection), "--out", str(tmp_path / "ddp"), "--devices", "2",
         "--strategy", "ddp", "--epochs", "1", "--limit-train-batches", "2", "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    assert (tmp_path / "ddp" / "model.safetensors").is_file()
    load_bundle(tmp_path / "ddp")


@pytest.mark.slow
def test_bf16_training_runs_without_the_model_summary_warning(small_collection: Path, tmp_path: Path,
                                                               recwarn: pytest.WarningsRecorder) -> None:
    """An AMX machine's "auto" precision is bf16, which Lightning's model summary cannot size: that
    table is not printed then, so the run's output carries no warning about it (issue 23)."""
    config = load_config(REPO / "configs" / "baseline.yaml", **{
        "train.epochs": 1, "train.limit_train_batches": 2, "data.image_size": 64, "train.precision": "bf16-mixed"})
    assert train(config, tmp_path / "run", root=small_collection, progress=False) is not None
    messages = [str(w.message) for w in recwarn]
    assert not [m for m in messages if "model summary" in m], messages


@pytest.mark.slow
def test_stressed_selection_and_threshold(small_collection: Path, tmp_path: Path) -> None:
    """The robust recipe picks its epoch on validation pooled with perturbed copies and fits the
    temperature and threshold on the stressed pool; both are recorded, and the card says so."""
    from pneumoscope.data.perturb import STRESSED_SET

    config = load_config(REPO / "configs" / "robust.yaml", **{
        "train.epochs": 1, "train.limit_train_batches": 3, "data.image_size": 64, "model.pretrained": False,
    })
    assert config.train.select_on == "stressed" and config.threshold.fit_on == "stressed"
    run = train(config, tmp_path / "run", root=small_collection, progress=False)
    assert run is not None
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert "val_stress_auc" in header
    meta = json.loads((run / "model.json").read_text())
    n_val = meta["validation"]["n"]
    stressed = meta["validation_stressed"]
    assert stressed["n"] == n_val * (len(STRESSED_SET) + 1)
    assert stressed["split"].startswith("the validation images pooled")
    assert meta["threshold_rule"] == "highest threshold with sensitivity >= 0.97, on stressed validation"
    # the rule holds on the pool it was chosen on
    assert stressed["sensitivity"] >= 0.97
    card = (run / "MODEL_CARD.md").read_text()
    assert "Stressed validation" in card and "perturbed copies" in card
