"""``pneumoscope train`` of an ensemble config: each member trained by its own config, one at a
time, then the members combined into one model bundle.

A member whose run folder already holds a finished model is reused, so an ensemble interrupted
after its first member resumes at the second; each member stays within the single-run budget of
the 2-core machine. The combined network (``models/nets.Ensemble``) is then calibrated, given its
threshold and its out-of-distribution check by the same ``finalize.finalize`` as any run, on the
validation patients that none of the members trained on (their split manifests must agree).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pneumoscope.config import Config, ConfigError, load_config


def member_folder(config: Config, member: Config) -> Path:
    """Where a member's run lives: ``ensemble.runs/NAME``, as ``pneumoscope train`` names a run."""
    assert config.ensemble is not None
    return config.ensemble.runs / member.name


def is_finished(folder: Path) -> bool:
    """A run folder that loads as a model (its files hash-checked): nothing left to train."""
    from pneumoscope.errors import ModelLoadError
    from pneumoscope.models.bundle import verified_meta

    try:
        verified_meta(folder)
    except (ModelLoadError, ConfigError):
        return False
    return True


def train_members(config: Config, progress: bool = True, log: Any = print) -> list[Path]:
    """Train every member's chain of configs in order, skipping finished runs; the members' folders."""
    from pneumoscope.training import train

    assert config.ensemble is not None
    members = []
    for chain in config.ensemble.members:
        steps = [load_config(path) for path in chain]
        folders = [member_folder(config, step) for step in steps]
        if is_finished(folders[-1]):  # the member itself exists: what it was built from is not needed
            log(f"{steps[-1].name}: finished run in {folders[-1]}, reused")
        else:
            for path, step, folder in zip(chain, steps, folders):
                if is_finished(folder):
                    log(f"{step.name}: finished run in {folder}, reused")
                    continue
                log(f"{step.name}: training from {path} into {folder}")
                train(step, folder, progress=progress)
        members.append(folders[-1])
    return members


def combine(config: Config, members: list[Path], out: str | Path, command: str | None = None) -> Path:
    """The members as one network, finalized (calibration, threshold, OOD check, figures) and saved."""
    from pneumoscope import heap
    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.models.datamodule import XRayDataModule
    from pneumoscope.models.nets import Ensemble
    from pneumoscope.finalize import finalize
    from pneumoscope.training import machine_description

    heap.keep_freed_memory()
    started = time.perf_counter()
    bundles = [load_bundle(folder) for folder in members]
    manifests = {(folder / "split_manifest.csv").read_text(encoding="utf-8") for folder in members}
    if len(manifests) != 1:
        raise ConfigError("ensemble members were trained on different splits: their validation patients "
                          "would not be new to every member")
    sizes = {b.image_size for b in bundles}
    if sizes != {config.data.image_size}:
        raise ConfigError(f"ensemble members take {sorted(sizes)} px, the ensemble config {config.data.image_size}")
    combined = config.model_copy(update={"model": config.model.model_copy(
        update={"members": [b.config.model.model_copy(update={"pretrained": False}) for b in bundles]})})
    net = Ensemble([b.net for b in bundles])
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "split_manifest.csv").write_text(manifests.pop(), encoding="utf-8")
    datamodule = XRayDataModule(combined, manifest=run_dir / "split_manifest.csv")
    finalize(combined, net, datamodule, run_dir, extra={
        "members": [{"name": b.record.name, "folder": str(folder), "training": b.meta.get("training", {})}
                    for b, folder in zip(bundles, members)],
        "machine": machine_description(),
        "seed": None,
        "split_seed": config.data.split_seed,
        "class_counts_train": [int(c) for c in datamodule.class_counts()],
        "command": command,
    })
    log_seconds = round(time.perf_counter() - started, 1)
    print(f"ensemble of {len(bundles)} combined and finalized in {log_seconds} s: {run_dir}")
    return run_dir
