"""``pneumoscope train``: one run folder from one config.

After Lightning has fitted the network, the best epoch's weights are calibrated (temperature
scaling), the decision threshold is chosen, and the out-of-distribution statistics are fitted:
all on the patient-level validation split, all stored in the run folder, which is itself a
loadable model bundle.
"""

from __future__ import annotations

import csv
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.config import Config, ThresholdConfig


def resolve_precision(precision: str, accelerator: str = "cpu") -> str:
    """``auto`` -> bf16 only where it is fast: a GPU, or a CPU with native bf16 arithmetic."""
    if precision != "auto":
        return precision
    if accelerator not in ("cpu",):
        return "bf16-mixed"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "32-true"
    return "bf16-mixed" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "32-true"


def choose_threshold(labels: np.ndarray, probs: np.ndarray, rule: ThresholdConfig) -> float:
    """The decision threshold on validation probabilities.

    ``min_sensitivity``: the highest threshold that still finds at least ``min_sensitivity`` of
    the pneumonia cases; a higher threshold gives fewer false alarms on NORMAL, the error that
    dominates on new hospitals' images. ``youden``: maximises sensitivity + specificity - 1.

    The rule picks a validation score; the threshold returned lies halfway between it and the
    next lower score. Both split validation the same way, but a threshold *on* a score lets
    float noise (ONNX vs PyTorch, another machine) move that image across it, and the model's
    card and a later evaluation would then disagree by one image.
    """
    from sklearn.metrics import roc_curve

    if rule.rule == "fixed":
        return float(rule.value)
    fpr, tpr, thresholds = roc_curve(labels, probs)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if rule.rule == "youden":
        chosen = thresholds[int(np.argmax(tpr - fpr))]
    else:
        ok = np.flatnonzero(tpr >= rule.min_sensitivity)
        chosen = thresholds[ok[0]] if len(ok) else thresholds[-1]
    below = probs[probs < chosen]
    return float((chosen + below.max()) / 2) if below.size else float(chosen)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the validation log-loss of sigmoid(logit / T) (Guo et al., 2017)."""
    import torch

    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def machine_description() -> str:
    import os

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} (Python {platform.python_version()})"


def write_history(history: list[dict[str, float]], run_dir: Path) -> None:
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    with (run_dir / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    plot_history(history, run_dir / "curves.png")


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, metric in zip(axes, ("loss", "auc", "acc")):
        for split in ("train", "val"):
            values = [row.get(f"{split}_{metric}", np.nan) for row in history]
            ax.plot(epochs, values, marker="o", label=split)
        ax.set_title(metric.upper() if metric == "auc" else metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(
    config: Config,
    out: str | Path,
    root: str | Path | None = None,
    accelerator: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    progress: bool = True,
) -> Path | None:
    """Train, then calibrate, choose the threshold, fit OOD statistics and save the bundle.

    Returns the run folder on the global-zero process (None on other DDP ranks).
    """
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from pneumoscope import heap
    from pneumoscope.models.datamodule import XRayDataModule
    from pneumoscope.models.module import PneumoniaModule

    heap.keep_freed_memory()  # +19 % training steps/s, half the system time (pneumoscope/heap.py)
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    datamodule = XRayDataModule(config, root=root)
    counts = tuple(int(c) for c in datamodule.class_counts())
    module = PneumoniaModule(config, class_counts=counts)
    module.net.to(memory_format=torch.channels_last)
    precision = resolve_precision(config.train.precision, accelerator)
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=precision,
        max_epochs=config.train.epochs,
        max_time={"minutes": config.train.max_minutes} if config.train.max_minutes else None,
        limit_train_batches=config.train.limit_train_batches,
        callbacks=[
            ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor="val_auc", mode="max", save_top_k=1, save_last=True),
            EarlyStopping(monitor="val_auc", mode="max", patience=config.train.patience),
        ],
        logger=False,
        enable_progress_bar=progress,
        default_root_dir=run_dir,
        deterministic=False,
        num_sanity_val_steps=0,
    )
    if trainer.is_global_zero:
        datamodule.write_manifest(run_dir / "split_manifest.csv")
        (run_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    fit_seconds = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None
    write_history(module.history, run_dir)
    if module.best_state is not None:
        module.net.load_state_dict(module.best_state)
    finalize(config, module.net, datamodule, run_dir, extra={
        "train_seconds": round(fit_seconds, 1),
        "epochs_run": int(trainer.current_epoch),
        "best_epoch": int(module.best_epoch),
        "precision": precision,
        "machine": machine_description(),
        "devices": str(devices),
        "num_nodes": num_nodes,
        "class_counts_train": list(counts),
        "seed": config.train.seed,
        "split_seed": config.data.split_seed,
        "command": "pneumoscope " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None,
    })
    return run_dir


def finalize(
    config: Config, net: Any, datamodule: Any, run_dir: Path, extra: dict[str, Any],
    card_sections: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Calibrate, choose the threshold, fit the OOD model, measure validation, save the bundle."""
    import torch
    from sklearn.metrics import confusion_matrix, roc_auc_score

    from pneumoscope.inference.ood import fit_feature_model
    from pneumoscope.models.bundle import save_bundle
    from pneumoscope.models.card import write_card
    from pneumoscope.models.forward import forward_images

    net = net.float().eval()
    val_images, val_labels = datamodule.arrays("val")
    train_images, _ = datamodule.arrays("train")
    val_logits, val_features = forward_images(net, val_images, features=True)
    _, train_features = forward_images(net, train_images, features=True)
    temperature = fit_temperature(val_logits, val_labels)
    probs = sigmoid(val_logits / temperature)
    threshold = choose_threshold(val_labels, probs, config.threshold)
    predicted = (probs >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(val_labels, predicted, labels=[0, 1]).ravel()
    ood_stats, ood_info = fit_feature_model(train_features, val_features)
    validation = {
        "split": "patient-level validation split of the training folder",
        "n": int(len(val_labels)),
        "n_normal": int((val_labels == 0).sum()),
        "n_pneumonia": int((val_labels == 1).sum()),
        "auc": float(roc_auc_score(val_labels, probs)),
        "accuracy": float((predicted == val_labels).mean()),
        "sensitivity": float(tp / max(tp + fn, 1)),
        "specificity": float(tn / max(tn + fp, 1)),
        "normal_recall": float(tn / max(tn + fp, 1)),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
    }
    rule = config.threshold
    meta = {
        "name": config.name,
        "threshold": threshold,
        "threshold_rule": {
            "min_sensitivity": f"highest threshold with validation sensitivity >= {rule.min_sensitivity}",
            "youden": "Youden's J (max sensitivity + specificity - 1) on validation",
            "fixed": f"fixed at {rule.value} (not tuned)",
        }[rule.rule],
        "temperature": temperature,
        "image_size": config.data.image_size,
        "validation": validation,
        "ood": ood_info,
        "training": extra,
    }
    if card_sections:
        meta["card_sections"] = card_sections
    save_bundle(run_dir, config, net, meta, ood=ood_stats)
    write_card(run_dir)
    (run_dir / "summary.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    torch.set_grad_enabled(True)
    return meta


def refinalize(folder: str | Path, command: str | None = None) -> dict[str, Any]:
    """Calibration, threshold, OOD statistics and validation figures of a saved model, computed
    again by the current code: same weights, same split (the model's own manifest).

    For when how those are computed changes after a long training run; the weights and the
    training record are kept, and the record notes the command that recomputed the rest.
    """
    from pneumoscope import heap
    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.models.datamodule import XRayDataModule

    heap.keep_freed_memory()
    folder = Path(folder)
    bundle = load_bundle(folder, migrate=True)
    manifest = folder / "split_manifest.csv"
    datamodule = XRayDataModule(bundle.config, manifest=manifest if manifest.is_file() else None)
    extra = {**bundle.meta.get("training", {}), "finalized_by": command}
    return finalize(bundle.config, bundle.net, datamodule, folder, extra, bundle.meta.get("card_sections"))
