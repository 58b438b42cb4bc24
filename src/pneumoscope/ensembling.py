"""``pneumoscope train`` of an ensemble config: each member trained by its own config, one at a
time, then the members combined into one model bundle.

A member whose run folder already holds a finished model is reused, so an ensemble interrupted
after its first member resumes at the second; the members of an ensemble already combined (the
bundled model, on a fresh checkout without ``runs/``) can be unpacked into their run folders first
(``reuse``), so that growing it by one member trains that member only; each member stays within the single-run budget of
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


def unpack_members(config: Config, model: str | Path, log: Any = print) -> list[Path]:
    """Write each member network of the combined ensemble ``model`` into the run folder where
    ``config`` expects the member of that name, unless a finished run is there already; the folders
    written. Each is finalized by its own config (calibration, threshold, OOD statistics, card) on
    the ensemble's own split, and keeps the training record the ensemble carries for it, so it is
    the run its config would have left (about 3 minutes a member on 2 cores, instead of 30-40 of
    training). A member of ``model`` that ``config`` does not name is left out."""
    from pneumoscope.finalize import finalize
    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.models.datamodule import XRayDataModule
    from pneumoscope.models.nets import Ensemble

    assert config.ensemble is not None
    bundle = load_bundle(model)
    records = bundle.meta.get("training", {}).get("members", [])
    if not isinstance(bundle.net, Ensemble) or len(records) != len(bundle.net.members):
        raise ConfigError(f"{model} is not an ensemble whose members are named in its record: nothing to reuse")
    wanted = {member.name: member for member in (load_config(chain[-1]) for chain in config.ensemble.members)}
    written = []
    for net, record in zip(bundle.net.members, records):
        member = wanted.get(record["name"])
        if member is None:
            continue
        folder = member_folder(config, member)
        if is_finished(folder):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        manifest = folder / "split_manifest.csv"
        manifest.write_bytes((bundle.path / "split_manifest.csv").read_bytes())
        log(f"{member.name}: unpacked from {model} into {folder}")
        finalize(member, net, XRayDataModule(member, manifest=manifest), folder,
                 extra={**record.get("training", {}), "finalized_by": f"unpacked from {model} (pneumoscope train --reuse-members)"})
        written.append(folder)
    return written


def train_members(config: Config, progress: bool = True, log: Any = print, reuse: str | Path | None = None) -> list[Path]:
    """Train every member's chain of configs in order, skipping finished runs (after unpacking the
    members of the ensemble ``reuse``, if given); the members' folders."""
    from pneumoscope.training import train

    assert config.ensemble is not None
    if reuse is not None:
        unpack_members(config, reuse, log=log)
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
