"""``pneumoscope train``: one run folder from one config.

After Lightning has fitted the network, the best epoch's weights are calibrated (temperature
scaling), the decision threshold is chosen, and the out-of-distribution statistics are fitted:
all on the patient-level validation split, all stored in the run folder, which is itself a
loadable model bundle.
"""

from __future__ import annotations

import csv
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.config import Config, ConfigError
from pneumoscope.finalize import finalize


def resolve_precision(precision: str, accelerator: str = "cpu") -> str:
    """``auto`` -> bf16 only where it is fast: a GPU, or a CPU with native bf16 arithmetic."""
    if precision != "auto":
        return precision
    if accelerator not in ("cpu",):
        return "bf16-mixed"
    from pneumoscope.machine import has_native_bf16

    return "bf16-mixed" if has_native_bf16() else "32-true"


def machine_description() -> str:
    from pneumoscope.machine import describe

    return describe()


HISTORY_COLUMNS = ("epoch", "train_loss", "train_auc", "train_acc", "val_loss", "val_auc", "val_acc", "val_stress_auc",
                   "val_subtype_auc")
"""history.csv's columns, in this order; those a run did not log are left out."""
LOG_FOLDER = "logs"
"""Where Lightning's CSVLogger writes ``metrics.csv`` inside a run folder."""


def write_history(run_dir: Path) -> list[dict[str, float]]:
    """One row per epoch in ``history.csv``, and ``curves.png``, from the ``metrics.csv`` that
    Lightning's CSVLogger wrote (a row per logging call: train and validation figures of one epoch
    land on different rows, and the epoch's mean loss is named ``train_loss_epoch``)."""
    logged = run_dir / LOG_FOLDER / "metrics.csv"
    if not logged.is_file():
        return []
    epochs: dict[int, dict[str, float]] = {}
    with logged.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            merged = epochs.setdefault(int(float(row["epoch"])), {})
            for key, value in row.items():
                name = "train_loss" if key == "train_loss_epoch" else key
                if value not in ("", None) and name in HISTORY_COLUMNS:
                    merged[name] = float(value)
    history = [{**values, "epoch": epoch} for epoch, values in sorted(epochs.items())]
    columns = [c for c in HISTORY_COLUMNS if any(c in row for row in history)]
    with (run_dir / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**row, "epoch": int(row["epoch"])} for row in history)
    plot_history(history, run_dir / "curves.png")
    return history


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    """Loss, AUC and accuracy per epoch, train beside validation (the Figure API: no pyplot state)."""
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(13, 3.6))
    for index, metric in enumerate(("loss", "auc", "acc")):
        ax = fig.add_subplot(1, 3, index + 1)
        for split in ("train", "val"):
            values = [row.get(f"{split}_{metric}", np.nan) for row in history]
            ax.plot(epochs, values, marker="o", label=split)
        ax.set_title(metric.upper() if metric == "auc" else metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _log_interval(config: Config, n_train: int) -> int:
    """Steps between two training-loss rows in metrics.csv: Lightning's 50, or fewer when an epoch
    is shorter (a tiny run would otherwise log no step at all, and say so)."""
    steps = max(1, n_train // config.train.batch_size)
    limit = config.train.limit_train_batches
    if isinstance(limit, int) and limit > 0:
        steps = min(steps, limit)
    elif isinstance(limit, float) and 0 < limit < 1:
        steps = max(1, int(steps * limit))
    return max(1, min(50, steps))


def train(
    config: Config,
    out: str | Path,
    root: str | Path | None = None,
    accelerator: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    progress: bool = True,
    reuse_members: str | Path | None = None,
) -> Path | None:
    """Train, then calibrate, choose the threshold, fit OOD statistics and save the bundle.

    Returns the run folder on the global-zero process (None on other DDP ranks).
    ``reuse_members``: for an ensemble config, a combined ensemble whose members are unpacked
    into their run folders before any is trained (``ensembling.unpack_members``).
    """
    if config.train.trainable == "subtype_head":
        return train_subtype_head(config, out, progress=progress)
    if config.ensemble is not None:
        from pneumoscope.ensembling import combine, train_members

        return combine(config, train_members(config, progress=progress, reuse=reuse_members), out, _command_line())
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers import CSVLogger

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
        log_every_n_steps=_log_interval(config, len(datamodule.train_records)),
        # The best epoch's weights are kept in memory (module.best_state) and saved as safetensors by
        # finalize: no pickled Lightning checkpoint is ever written.
        callbacks=[EarlyStopping(monitor=module.monitor, mode="max", patience=config.train.patience),
                   *_notebook_progress_bar(progress)],
        enable_checkpointing=False,
        # Lightning's model summary cannot size bf16 weights and warns on every run that uses them
        # (an AMX machine's "auto" precision): the table is printed where it is right, only.
        enable_model_summary=not precision.startswith("bf16"),
        logger=CSVLogger(run_dir, name=LOG_FOLDER, version=""),
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
    _end_distributed()
    if not trainer.is_global_zero:
        return None
    write_history(run_dir)
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
        "command": _command_line(),
    })
    return run_dir


def train_subtype_head(config: Config, out: str | Path, progress: bool = True) -> Path:
    """A subtype head on the frozen network of ``train.init_from`` (``train.trainable: subtype_head``).

    The starting model's weights and split are kept; the penultimate features of its training
    PNEUMONIA films of known subtype are computed in ``train.epochs`` passes (the first on the films
    as they are, the others under this config's augmentation, seeded), and the head is fitted to
    them as an L2-penalised logistic regression, viral and bacterial weighted alike. ``finalize`` then recomputes everything on validation as
    for any run: for the frozen pneumonia output that reproduces the starting model's values.
    """
    import torch

    from pneumoscope.data.collection import subtype_targets
    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.models.datamodule import XRayDataModule
    from pneumoscope.models.nets import build_net

    started = time.perf_counter()
    source = load_bundle(config.train.init_from)
    net = build_net(config.model.model_copy(update={"pretrained": False}), config.data.image_size)
    missing, unexpected = net.load_state_dict(source.net.state_dict(), strict=False)
    if unexpected or any(not key.startswith("subtype_head.") for key in missing):
        raise ConfigError(f"{config.train.init_from} is not the network this config describes "
                          f"(missing {missing}, unexpected {unexpected})")
    datamodule = XRayDataModule(config, manifest=Path(config.train.init_from) / "split_manifest.csv")
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    datamodule.write_manifest(run_dir / "split_manifest.csv")
    (run_dir / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")

    images, _ = datamodule.arrays("train")
    targets = subtype_targets(datamodule.train_records)
    known = np.flatnonzero(targets >= 0)
    net = net.float().eval()
    features = frozen_features(net, images[known], config.augment, config.train.epochs, config.train.seed,
                               progress=progress)
    weight, bias = fit_logistic(np.concatenate(features), np.tile(targets[known], len(features)),
                                 config.train.subtype_l2)
    with torch.no_grad():
        net.subtype_head[1].weight.copy_(torch.from_numpy(weight)[None, :])
        net.subtype_head[1].bias.fill_(bias)
    seconds = time.perf_counter() - started
    from pneumoscope.models.card import selection_text

    training = dict(source.meta.get("training", {}))
    training["selection"] = selection_text(source.config.to_yaml())
    finalize(config, net, datamodule, run_dir, extra={
        "train_seconds": round(seconds, 1),
        "epochs_run": config.train.epochs,
        "best_epoch": config.train.epochs - 1,
        "precision": "32-true",
        "machine": machine_description(),
        "class_counts_train": [int(c) for c in datamodule.class_counts()],
        "seed": config.train.seed,
        "split_seed": config.data.split_seed,
        "command": _command_line(),
        "subtype_head_on": str(config.train.init_from),
        "backbone_training": training,
    }, card_sections=source.meta.get("card_sections"))
    return run_dir


def frozen_features(
    net: Any, images: np.ndarray, augment: Any, passes: int, seed: int, progress: bool = False
) -> list[np.ndarray]:
    """Penultimate features of uint8 ``images`` (N, S, S), one (N, D) array per pass: the first on
    the films as they are, the others under ``augment`` (seeded), in batches of 64."""
    import torch

    from pneumoscope.models.augment import augment_batch
    from pneumoscope.models.forward import forward_images

    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    passes_out = []
    for index in range(passes):
        chunks = []
        for start in range(0, len(images), 64):
            pixels = np.asarray(images[start : start + 64])
            if index > 0:
                batch = torch.from_numpy(pixels.astype(np.float32)).unsqueeze(1)
                pixels = augment_batch(batch, augment, generator)[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
            chunks.append(forward_images(net, pixels, features=True)[1])
        passes_out.append(np.concatenate(chunks))
        if progress:
            print(f"features of pass {index + 1}/{passes} ({len(images)} films, "
                  f"{time.perf_counter() - started:.0f} s)", flush=True)
    return passes_out


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-penalised logistic regression, both classes weighted alike (L-BFGS)."""
    import torch

    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    counts = torch.bincount(torch.as_tensor(labels), minlength=2).double()
    sample_weight = (counts.sum() / (2 * counts))[torch.as_tensor(labels)]
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        losses = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y, reduction="none")
        loss = (losses * sample_weight).mean() + l2 * (w * w).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return w.detach().float().numpy(), float(b.detach())


def _notebook_progress_bar(progress: bool) -> list[Any]:
    """tqdm's text bar when training runs in a Jupyter kernel (the walkthrough notebook), else none
    (Lightning's default). Lightning's default bar is Rich's whenever rich is installed (Gradio brings
    it), and in a kernel Rich's live display needs ipywidgets, without which it shows nothing but a
    warning; tqdm's bar draws in every frontend, and a saved notebook keeps its last line."""
    if not progress or "ipykernel" not in sys.modules:
        return []
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

    class EpochBars(TQDMProgressBar):
        """One bar per epoch, left in place (a saved notebook shows every epoch's loss and AUC); the
        validation pass draws none, since a nested bar redraws with cursor moves a notebook keeps."""

        def on_train_start(self, *_: Any) -> None:
            """No bar before the first epoch: each epoch opens its own, and this one would stay at 0."""

        def init_validation_tqdm(self) -> Tqdm:
            return Tqdm(disable=True)

    return [EpochBars(leave=True)]


def _command_line() -> str | None:
    """The command that runs now, for the run's record (None when not run from the command line)."""
    return "pneumoscope " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else None


def _end_distributed() -> None:
    """Tear the DDP process group down on every rank once fitting is over.

    Left to interpreter exit, gloo's threads are sometimes still alive when a worker rank returns,
    and it aborts ("terminate called without an active exception", exit -6) while rank 0 is still
    finalizing; calibration and the bundle need no process group.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
