"""Export a model bundle to ONNX, self-describing, and open ONNX Runtime sessions on it.

The graph takes the project's pixel contract, ``pixels`` float32 ``(B, 1, S, S)`` holding grey
values 0..255 (normalisation is inside the network), and gives three outputs:

- ``logit`` ``(B,)``: the pneumonia logit; probability = ``sigmoid(logit / temperature)``;
- ``subtype_logit`` ``(B,)``: bacterial-vs-viral logit, only for a model with a subtype head;
  p_bacterial = ``sigmoid(subtype_logit / subtype.temperature)``, meaningful on PNEUMONIA films only;
- ``features`` ``(B, D)``: the penultimate features;
- ``ood_distance`` ``(B,)``: their Mahalanobis distance to the training features (only when the
  bundle has out-of-distribution statistics);
- ``cam_activation`` ``(B, C, h, w)``: the output of the network's Grad-CAM layer. Grad-CAM's
  backward pass needs only the small head above it, so with this output a heatmap costs one
  ONNX Runtime run plus microseconds of PyTorch (:func:`~pneumoscope.inference.explain.grad_cam_from_activation`).

Computing the distance inside the graph is what lets one ONNX run answer both "how likely is
pneumonia" and "is this a chest X-ray at all", and lets an exported ``.onnx`` file alone do
the whole out-of-distribution check: the statistics travel in the graph, the threshold, the
temperature, the class names and the preprocessing contract in its ``metadata_props``.

Exports are cached by the SHA-256 of the weights (and of the OOD statistics), so a Predictor
pays the export (tens of seconds) once per model, not once per start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pneumoscope.config import CLASS_NAMES
from pneumoscope.models.bundle import Bundle, ModelLoadError, load_bundle
from pneumoscope.errors import ExportError

EXPORT_VERSION = 3
"""Bumped whenever the graph's inputs, outputs or metadata change: old cached exports are then ignored."""
OPSET = 18
INPUT = "pixels"
OUTPUTS = ("logit", "subtype_logit", "features", "ood_distance", "cam_activation")
META_PREFIX = "pneumoscope."
PREPROCESSING = (
    "Decode with pneumoscope.data.images.decode_image(source, reduce_to=image_size): one grey uint8 "
    "channel (DICOM modality/VOI LUT and MONOCHROME1 inversion applied, deeper bit depths stretched "
    "linearly, JPEG decoded at the smallest DCT scale that keeps at least image_size pixels a side); "
    "resize to image_size x image_size with PIL bicubic, aspect ratio not kept; feed float32 "
    "(B, 1, image_size, image_size) with values 0..255. Normalisation is inside the graph."
)


class _ExportedGraph(nn.Module):
    """What the ONNX file computes: logit, features and (optionally) the OOD distance, in one pass."""

    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.net = bundle.net
        self.has_ood = bool(bundle.ood)
        self.has_subtype = bool(bundle.net.has_subtype)
        if self.has_ood:
            self.register_buffer("ood_mean", bundle.ood["mean"].float().clone())
            self.register_buffer("ood_precision", bundle.ood["precision"].float().clone())

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        activation = self.net.cam_activation(pixels)
        features = self.net.features_from_cam(activation)
        outputs = [self.net.classify(features)]
        if self.has_subtype:
            outputs.append(self.net.subtype(features))
        outputs.append(features)
        if self.has_ood:
            centred = features - self.ood_mean
            squared = ((centred @ self.ood_precision) * centred).sum(dim=1)
            outputs.append(torch.sqrt(torch.clamp(squared, min=0.0)))
        return (*outputs, activation)


def output_names(has_ood: bool, has_subtype: bool = False) -> list[str]:
    skipped = {"ood_distance"} if not has_ood else set()
    skipped |= {"subtype_logit"} if not has_subtype else set()
    return [name for name in OUTPUTS if name not in skipped]


def contract(bundle: Bundle) -> dict[str, Any]:
    """Everything a consumer of the ONNX file needs besides the graph (stored in ``metadata_props``)."""
    ood = bundle.meta.get("ood") or {}
    return {
        "format": EXPORT_VERSION,
        "name": bundle.meta.get("name", bundle.config.name),
        "image_size": bundle.image_size,
        "threshold": bundle.threshold,
        "temperature": bundle.temperature,
        "class_names": list(CLASS_NAMES),
        "positive_class": CLASS_NAMES[1],
        "probability": "sigmoid(logit / temperature)",
        "label_rule": f"{CLASS_NAMES[1]} if probability >= threshold else {CLASS_NAMES[0]}",
        "input": {"name": INPUT, "dtype": "float32", "shape": ["batch", 1, bundle.image_size, bundle.image_size],
                  "range": [0, 255]},
        "outputs": output_names(bool(bundle.ood), bundle.net.has_subtype),
        "preprocessing": PREPROCESSING,
        "ood_distance_threshold": ood.get("distance_threshold") if bundle.ood else None,
        "weights_sha256": bundle.meta.get("files", {}).get("model.safetensors"),
        "validation": bundle.meta.get("validation"),
        "subtype": _subtype_contract(bundle.subtype),
    }


def _subtype_contract(subtype: dict[str, Any] | None) -> dict[str, Any] | None:
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


def export_bundle(bundle: Bundle, out: Path) -> Path:
    """Write ``bundle`` as ONNX to ``out`` (atomically), check it, and stamp its contract in."""
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    graph = _ExportedGraph(bundle).eval()
    size = bundle.image_size
    example = torch.full((2, 1, size, size), 128.0)
    outputs = output_names(graph.has_ood, graph.has_subtype)
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        _torch_export(graph, example, partial, outputs)
        model = onnx.load(str(partial))
        for key, value in contract(bundle).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = META_PREFIX + key, json.dumps(value)
        model.producer_name = "pneumoscope"
        model.doc_string = "Pneumonia logit (and bacterial-vs-viral logit), penultimate features and OOD distance from grey chest X-ray pixels."
        onnx.checker.check_model(model)
        onnx.save(model, str(partial))
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
        for extra in partial.parent.glob(partial.name + "*.data"):
            extra.unlink(missing_ok=True)
    return out


def _torch_export(graph: nn.Module, example: torch.Tensor, path: Path, outputs: list[str]) -> None:
    """``torch.onnx.export`` with the torch.export-based exporter (the maintained one since
    torch 2.9); the legacy TorchScript exporter is the fallback if it ever refuses the graph."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "torchvision is not installed" notices: irrelevant here
    try:
        _run_exporters(graph, example, path, outputs, batch)
    finally:
        logger.setLevel(level)


def _run_exporters(graph: nn.Module, example: torch.Tensor, path: Path, outputs: list[str], batch: Any) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                graph, (example,), None, input_names=[INPUT], output_names=outputs,
                dynamic_shapes={"pixels": {0: batch}}, opset_version=OPSET, dynamo=True,
                external_data=False, verbose=False,
            )
            program.save(str(path), external_data=False)
            return
        except Exception as exc:  # noqa: BLE001 - any exporter failure falls back to the legacy one
            first = exc
        try:
            torch.onnx.export(
                graph, (example,), str(path), input_names=[INPUT], output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in [INPUT, *outputs]},
                opset_version=17, dynamo=False,
            )
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"ONNX export failed: {first}; legacy exporter: {exc}") from None


def cache_path(bundle: Bundle) -> Path:
    """Where the export of this exact model lives: keyed by the hashes of its weights and OOD statistics."""
    from pneumoscope.data.cache import default_cache_dir

    files = bundle.meta.get("files", {})
    key = hashlib.sha256(
        json.dumps([EXPORT_VERSION, torch.__version__, files.get("model.safetensors"), files.get("ood.safetensors"),
                    bundle.threshold, bundle.temperature, (bundle.meta.get("ood") or {}).get("distance_threshold"),
                    _subtype_contract(bundle.subtype)])
        .encode()
    ).hexdigest()[:24]
    return default_cache_dir() / "onnx" / f"{bundle.config.name}-{key}.onnx"


def cached_export(bundle: Bundle) -> Path:
    """The ONNX file of ``bundle``, exported now if not cached; a temporary folder if the cache is read-only."""
    target = cache_path(bundle)
    if target.is_file():
        return target
    try:
        return export_bundle(bundle, target)
    except OSError:
        fallback = Path(tempfile.gettempdir()) / "pneumoscope-onnx" / target.name
        return fallback if fallback.is_file() else export_bundle(bundle, fallback)


def export_onnx(model: str | Path | None, out: Path) -> Path:
    """``pneumoscope export --onnx OUT``: the model folder (bundled default when ``None``) as one ONNX file."""
    bundle = load_bundle(model)
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        out = out.with_suffix(out.suffix + ".onnx") if out.suffix else out.with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached_export(bundle), out)
    return out


def physical_cores() -> int:
    """Physical cores available to this process: ONNX Runtime and PyTorch gain nothing from SMT siblings."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        pairs = set()
        block: dict[str, str] = {}
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in [*handle, "\n"]:
                if not line.strip():
                    if "core id" in block:
                        pairs.add((block.get("physical id", "0"), block["core id"]))
                    block = {}
                    continue
                key, _, value = line.partition(":")
                block[key.strip()] = value.strip()
        if pairs:
            return max(1, min(len(pairs), available))
    except OSError:
        pass
    return max(1, available)


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
