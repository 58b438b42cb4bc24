"""A model on disk: safetensors weights, the config, and ``model.json`` (threshold, calibration,
out-of-distribution statistics, validation figures, and each file's SHA-256).

A training run folder *is* a bundle, and so is the default model shipped in
``pneumoscope/weights/default``. Loading never unpickles anything, and a file whose hash does
not match ``model.json`` is refused: weights that were corrupted or swapped must not predict.

``model.json`` cannot hold its own hash, so the values in it that decide an answer (threshold,
temperature, image size, the OOD distance threshold) are also sealed into the header of
``model.safetensors``, whose hash ``model.json`` holds: editing either file alone is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pneumoscope.config import ModelRecord, parse_record
from pneumoscope.data.collection import content_hash
from pneumoscope.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:  # PyTorch is imported by what loads or saves weights, not by reading model.json
    import torch

    from pneumoscope.config import Config
    from pneumoscope.models.nets import PneumoNet

WEIGHTS = "model.safetensors"
OOD = "ood.safetensors"
CONFIG = "config.yaml"
META = "model.json"
CARD = "MODEL_CARD.md"
FORMAT_VERSION = 2
SEAL_KEY = "pneumoscope.decision"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights" / "default"


@dataclass
class Bundle:
    config: Config
    net: PneumoNet
    meta: dict[str, Any]
    """``model.json`` as read (validated as a :class:`~pneumoscope.config.ModelRecord`): what the card and reports print."""
    ood: dict[str, "torch.Tensor"] = field(default_factory=dict)
    path: Path | None = None

    @property
    def record(self) -> ModelRecord:
        """``meta``, typed."""
        return parse_record(self.meta)

    @property
    def threshold(self) -> float:
        return self.record.threshold

    @property
    def temperature(self) -> float:
        return self.record.temperature

    @property
    def subtype(self) -> dict[str, Any] | None:
        """The subtype head's record (threshold, temperature, figures), or None without the head."""
        return self.meta.get("subtype") if self.net.has_subtype else None

    @property
    def image_size(self) -> int:
        return self.config.data.image_size


def decision_values(meta: dict[str, Any] | ModelRecord) -> dict[str, Any]:
    """The values of ``model.json`` that change what the model answers."""
    record = meta if isinstance(meta, ModelRecord) else parse_record(meta)
    values = {
        "threshold": record.threshold,
        "temperature": record.temperature,
        "image_size": record.image_size,
        "ood_distance_threshold": record.ood.distance_threshold if record.ood else None,
    }
    if record.ood and record.ood.caution_distance is not None:
        values["ood_caution_distance"] = record.ood.caution_distance
    if record.subtype:
        values["subtype_threshold"] = record.subtype.threshold
        values["subtype_temperature"] = record.subtype.temperature
    return values


def _sealed(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def save_bundle(
    folder: str | Path,
    config: Config,
    net: PneumoNet,
    meta: dict[str, Any],
    ood: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write weights, config and metadata; hashes of the weight and config files go into ``model.json``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"image_size": config.data.image_size, **meta}  # the record says what size the network takes
    shards = _shards(state)
    save_file(shards.pop(WEIGHTS), str(folder / WEIGHTS), metadata={SEAL_KEY: _sealed(decision_values(meta))})
    for name, part in shards.items():
        save_file(part, str(folder / name))
    (folder / CONFIG).write_text(config.to_yaml(), encoding="utf-8")
    files = [WEIGHTS, *shards, CONFIG]
    if ood:
        save_file({k: v.detach().cpu().contiguous() for k, v in ood.items()}, str(folder / OOD))
        files.append(OOD)
    meta = {**meta, "format": FORMAT_VERSION, "files": {name: content_hash(folder / name) for name in files}}
    parse_record(meta, str(folder / META))  # never write a record that reading would refuse
    (folder / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return folder


def _shards(state: dict[str, "torch.Tensor"]) -> dict[str, dict[str, "torch.Tensor"]]:
    """The weight files of a state: ``model.safetensors`` (which carries the seal), plus one
    ``model-member{i}.safetensors`` per further ensemble member, so that no file grows with the
    number of members (an ensemble of two in one file is 27 MB)."""
    shards: dict[str, dict[str, torch.Tensor]] = {WEIGHTS: {}}
    for key, value in state.items():
        parts = key.split(".")
        member = int(parts[1]) if parts[0] == "members" and len(parts) > 1 and parts[1].isdigit() else 0
        shards.setdefault(WEIGHTS if member == 0 else f"model-member{member}.safetensors", {})[key] = value
    return shards


def weight_files(meta: dict[str, Any]) -> list[str]:
    """The weight files a record lists: ``model.safetensors`` first, then any member shards."""
    return [WEIGHTS, *sorted(n for n in meta["files"] if n.startswith("model-member") and n.endswith(".safetensors"))]


def read_meta(folder: Path, migrate: bool = False) -> dict[str, Any]:
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{folder} is not a pneumoscope model (no {META})") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{folder / META} is corrupt: {exc}") from None
    if not isinstance(meta, dict) or "threshold" not in meta or "files" not in meta:
        raise ModelLoadError(f"{folder / META} lacks the threshold or the file hashes")
    if meta.get("format") != FORMAT_VERSION and not (migrate and meta.get("format") == 1):
        raise ModelLoadError(
            f"{folder} is a model of format {meta.get('format')}, this pneumoscope reads format {FORMAT_VERSION}"
        )
    try:
        parse_record(meta, str(folder / META))
    except ConfigError as exc:
        raise ModelLoadError(str(exc)) from None
    return meta


def read_record(folder: Path) -> ModelRecord:
    """A model folder's ``model.json``, typed (no hash check: for reports on a folder just written)."""
    return parse_record(read_meta(Path(folder)), str(Path(folder) / META))


def verify_files(folder: Path, meta: dict[str, Any], seal: bool = True) -> None:
    for name, expected in meta["files"].items():
        path = folder / name
        if not path.is_file():
            raise ModelLoadError(f"model file missing: {path}")
        if content_hash(path) != expected:
            raise ModelLoadError(f"model file {name} does not match its SHA-256 in {META}: corrupt or tampered with")
    if WEIGHTS not in meta["files"]:
        raise ModelLoadError(f"{META} does not list {WEIGHTS}")
    if seal:
        verify_seal(folder, meta)


def verify_seal(folder: Path, meta: dict[str, Any]) -> None:
    """``model.json``'s threshold, temperature, size and OOD threshold must be those sealed in the weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(folder / WEIGHTS), framework="numpy") as weights:  # the header only: no PyTorch
            sealed = (weights.metadata() or {}).get(SEAL_KEY)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types on a bad header
        raise ModelLoadError(f"{folder / WEIGHTS} is not a readable safetensors file: {exc}") from None
    if sealed is None:
        raise ModelLoadError(f"{folder / WEIGHTS} carries no sealed decision values: not saved by pneumoscope")
    try:
        expected = decision_values(meta)
    except ConfigError as exc:
        raise ModelLoadError(f"{folder / META} has an invalid decision value: {exc}") from None
    stored = json.loads(sealed)
    if stored != expected:
        changed = sorted(k for k in stored.keys() | expected.keys() if stored.get(k) != expected.get(k))
        raise ModelLoadError(
            f"{META} was edited or tampered with: {', '.join(changed) or 'its decision values'} "
            f"differ from the values sealed in {WEIGHTS}"
        )


def verified_meta(folder: str | Path | None = None, *, migrate: bool = False) -> tuple[Path, dict[str, Any]]:
    """The model folder (the bundled default when ``None``) and its ``model.json`` (validated as a
    ``ModelRecord``), every file's hash and the sealed decision values checked: all a cached ONNX
    export needs, without PyTorch."""
    folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
    if not folder.is_dir():
        raise ModelLoadError(f"model folder not found: {folder}")
    meta = read_meta(folder, migrate)
    verify_files(folder, meta, seal=meta.get("format") == FORMAT_VERSION)
    return folder, meta


def load_bundle(folder: str | Path | None = None, *, migrate: bool = False) -> Bundle:
    """Load a model folder (the bundled default when ``None``), verifying every file's hash.

    ``migrate``: also read a format-1 folder (hashes, no seal), so ``pneumoscope finalize`` can
    save it again in the current format; never for predicting.
    """
    from safetensors.torch import load_file

    from pneumoscope.config import load_config
    from pneumoscope.models.nets import build_net

    folder, meta = verified_meta(folder, migrate=migrate)
    try:
        config = load_config(folder / CONFIG)
    except ConfigError as exc:
        raise ModelLoadError(str(exc)) from None
    net = build_net(config.model.model_copy(update={"pretrained": False}), config.data.image_size)
    try:
        state = {}
        for name in weight_files(meta):
            state.update(load_file(str(folder / name)))
        net.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelLoadError(f"weights in {folder / WEIGHTS} do not fit the configured network: {exc}") from None
    net.eval()
    ood = load_file(str(folder / OOD)) if (folder / OOD).is_file() else {}
    return Bundle(config=config, net=net, meta=meta, ood=ood, path=folder)
