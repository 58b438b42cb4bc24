"""ONNX Runtime sessions on pneumoscope's exported graphs, and where those exports are cached.

The graph (written by :mod:`pneumoscope.inference.export`) takes the project's pixel contract,
``pixels`` float32 ``(B, 1, S, S)`` holding grey values 0..255 (normalisation is inside the
network), and gives these outputs:

- ``logit`` ``(B,)``: the pneumonia logit; probability = ``sigmoid(logit / temperature)``;
- ``subtype_logit`` ``(B,)``: bacterial-vs-viral logit, only for a model with a subtype head;
  p_bacterial = ``sigmoid(subtype_logit / subtype.temperature)``, meaningful on PNEUMONIA films only;
- ``features`` ``(B, D)``: the penultimate features;
- ``ood_distance`` ``(B,)``: their Mahalanobis distance to the training features (only when the
  bundle has out-of-distribution statistics);
- ``cam_activation`` ``(B, C, h, w)``: the output of the network's Grad-CAM layer, from which a
  heatmap costs microseconds of PyTorch (:func:`~pneumoscope.inference.explain.grad_cam_from_activation`).

The threshold, the temperatures, the class names and the preprocessing contract travel in the
file's ``metadata_props``, so an exported ``.onnx`` alone answers both "how likely is pneumonia"
and "is this a chest X-ray at all".

Nothing here imports PyTorch: a cached export opens in well under a second, so ``serve`` can answer
before PyTorch (needed only for heatmaps) has loaded. The cache is keyed by the hashes in
``model.json`` and by the decision values, so any change to the model misses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from pneumoscope.errors import ModelLoadError
from pneumoscope.machine import physical_cores

EXPORT_VERSION = 6
"""Bumped whenever the graph's inputs, outputs or metadata change: old cached exports are then ignored."""
OPSET = 18
INPUT = "pixels"
OUTPUTS = ("logit", "subtype_logit", "features", "ood_distance", "cam_activation")
META_PREFIX = "pneumoscope."
PREPROCESSING = (
    "Decode with pneumoscope.data.images.decode_image(source, reduce_to=image_size): one grey uint8 "
    "channel (DICOM modality/VOI LUT and MONOCHROME1 inversion applied, deeper bit depths stretched "
    "linearly, JPEG decoded at the smallest DCT scale that keeps at least 3 x image_size pixels a side); "
    "resize to image_size x image_size with PIL bilinear (antialiased), aspect ratio not kept; re-encode "
    "as a quality-75 JPEG and decode again, as the training copies were made "
    "(pneumoscope.data.images.as_training_copy); feed "
    "float32 (B, 1, image_size, image_size) with values 0..255. Normalisation is inside the graph."
)


def output_names(has_ood: bool, has_subtype: bool = False) -> list[str]:
    skipped = {"ood_distance"} if not has_ood else set()
    skipped |= {"subtype_logit"} if not has_subtype else set()
    return [name for name in OUTPUTS if name not in skipped]


def subtype_contract(subtype: dict[str, Any] | None) -> dict[str, Any] | None:
    if not subtype:
        return None
    return {
        "threshold": subtype["threshold"], "temperature": subtype["temperature"],
        "classes": subtype["classes"], "positive_class": subtype["positive_class"],
        "probability": "sigmoid(subtype_logit / temperature), for films labelled PNEUMONIA",
        "label_rule": f"{subtype['classes'][1]} if probability >= threshold else {subtype['classes'][0]}",
        "validation": {k: v for k, v in subtype.get("validation", {}).items() if k != "three_way"},
    }


def read_contract(model: Any) -> dict[str, Any]:
    """The contract stored in an ONNX model's ``metadata_props`` (``model``: an ``onnx.ModelProto``
    or an ``onnxruntime`` session's ``get_modelmeta().custom_metadata_map``)."""
    if isinstance(model, dict):
        props = model
    else:
        props = {p.key: p.value for p in model.metadata_props}
    found = {k[len(META_PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)}
    missing = {"image_size", "threshold", "temperature"} - found.keys()
    if missing:
        raise ModelLoadError(
            f"this ONNX file was not exported by pneumoscope (metadata lacks {', '.join(sorted(missing))})"
        )
    return found


def cache_path(meta: dict[str, Any]) -> Path:
    """Where the export of this exact model lives: keyed by the hashes of its weights and OOD
    statistics, its decision values (the ones sealed in the weights) and the PyTorch that exports
    it, all read from ``model.json``, so finding a cached export never needs PyTorch."""
    from pneumoscope.config import parse_record
    from pneumoscope.data.cache import default_cache_dir
    from pneumoscope.models.bundle import decision_values

    record = parse_record(meta)
    key = hashlib.sha256(
        json.dumps([EXPORT_VERSION, _torch_version(), record.files.get("model.safetensors"),
                    record.files.get("ood.safetensors"), decision_values(record),
                    *sorted(h for n, h in record.files.items() if n.startswith("model-member"))], sort_keys=True).encode()
    ).hexdigest()[:24]
    return default_cache_dir() / "onnx" / f"{record.name}-{key}.onnx"


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def open_session(path: str | Path, threads: int | None = None, spinning: bool = True) -> Any:
    """An ONNX Runtime CPU session with all graph optimisations and one thread per physical core.

    ``spinning=False`` makes idle ORT threads sleep instead of busy-waiting: slower by a hair for
    one image, but they no longer steal the cores that decoding processes need in a batch run.
    With spinning, the threads still stop spinning when a run returns
    (``session.force_spinning_stop``): the PyTorch head gradient and the overlay that follow a
    heatmap run get the cores (heatmap p50 38 -> 33 ms here), and an idle server burns no CPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise ModelLoadError(f"ONNX Runtime cannot open {Path(path).name}: {exc}") from None
