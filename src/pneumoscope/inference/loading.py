"""The routes from a model on disk to a scorer and the model's decision values.

Four routes, one per way a model arrives:

- a model bundle (the bundled model or a training run's folder), hash-checked by
  :func:`~pneumoscope.models.bundle.load_bundle`: PyTorch always, and ONNX Runtime on its export,
  cached by the weights' hash, when it is installed (:func:`from_bundle`);
- the bundle's cached ONNX export alone, without importing PyTorch (``heatmaps="background"``:
  the web app answers before PyTorch is loaded);
- the background PyTorch network for that route's heatmaps (:func:`heatmap_network`), loaded
  when :meth:`~pneumoscope.inference.predictor.Predictor.load_heatmap_network` is called;
- an ``.onnx`` file exported by pneumoscope, whose contract travels in its metadata (no heatmaps).

Each answers a :class:`LoadedModel`, what the Predictor is built from; this module builds no
Predictor itself, so it imports neither the Predictor nor anything that does.
"""

from __future__ import annotations

import functools
import warnings as _warnings
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pneumoscope.errors import ModelLoadError
from pneumoscope.inference.scoring import OnnxScorer, Scorer, TorchScorer

Backend = Literal["auto", "onnx", "torch"]
Heatmaps = Literal["now", "background"]


class LoadedModel(NamedTuple):
    """A loaded model: its scorer and the Predictor's keyword arguments (``Predictor(**loaded._asdict())``)."""

    scorer: Scorer
    image_size: int
    threshold: float
    temperature: float
    name: str
    ood_threshold: float | None
    ood_caution: float | None
    model_path: Path | None
    """The model folder or .onnx file; the web app reads its model card from here."""
    info: dict[str, Any]
    subtype: dict[str, Any] | None
    """The subtype head's threshold and temperature (None: the model has no subtype head)."""


def load(
    model: str | Path | None, backend: Backend, threads: int | None, spin: bool, heatmaps: Heatmaps
) -> LoadedModel:
    """The route for ``model`` and ``backend`` (see :meth:`~pneumoscope.inference.predictor.Predictor.load`)."""
    if backend not in ("auto", "onnx", "torch"):
        raise ValueError(f"backend must be 'auto', 'onnx' or 'torch', not {backend!r}")
    if model is not None and Path(model).suffix.lower() == ".onnx":
        if backend == "torch":
            raise ValueError("an .onnx model runs on ONNX Runtime only; pass the model folder for PyTorch")
        return _from_onnx(Path(model), threads, spin)
    if heatmaps == "background" and backend != "torch":
        fast = _from_cached_export(model, threads, spin)
        if fast is not None:
            return fast
    from pneumoscope.models.bundle import load_bundle

    return from_bundle(load_bundle(model), backend, threads, spin)


def from_bundle(bundle: Any, backend: Backend, threads: int | None, spin: bool) -> LoadedModel:
    """An already loaded (and hash-checked) model bundle, on ONNX Runtime unless ``backend`` is "torch"."""
    bundle.net.requires_grad_(False)  # inference only: no parameter ever needs a gradient
    session = None
    if backend != "torch":
        session = _bundle_session(bundle, threads, spin, required=backend == "onnx")
    record, subtype = bundle.record, bundle.subtype
    network = TorchScorer(bundle.net, bundle.ood or None, bool(subtype))
    return LoadedModel(
        scorer=network if session is None else OnnxScorer(session, bool(subtype), network=network),
        image_size=bundle.image_size, threshold=record.threshold, temperature=record.temperature,
        name=record.name,
        ood_threshold=record.ood.distance_threshold if bundle.ood and record.ood else None,
        ood_caution=record.ood.caution_distance if bundle.ood and record.ood else None,
        model_path=bundle.path,
        info={"validation": bundle.meta.get("validation"), "arch": bundle.config.model.arch},
        subtype=subtype,
    )


def heatmap_network(folder: Path, subtype: bool) -> TorchScorer:
    """The PyTorch network of the model in ``folder``, for heatmaps (the background route)."""
    from pneumoscope.models.bundle import load_bundle

    bundle = load_bundle(folder)
    bundle.net.requires_grad_(False)
    return TorchScorer(bundle.net, bundle.ood, subtype)


def _from_cached_export(model: str | Path | None, threads: int | None, spin: bool) -> LoadedModel | None:
    """The model's cached ONNX export, without PyTorch; None when there is no cached export (or no
    ONNX Runtime): the caller then loads the whole bundle."""
    from pneumoscope.config import parse_record
    from pneumoscope.inference.onnx import cache_path, open_session
    from pneumoscope.models.bundle import verified_meta

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    folder, meta = verified_meta(model)
    path = cache_path(meta)
    if not path.is_file():
        return None
    try:
        session = open_session(path, threads, spinning=spin)
    except ModelLoadError:
        return None
    record = parse_record(meta)
    subtype = meta.get("subtype")
    return LoadedModel(
        scorer=OnnxScorer(session, bool(subtype), loader=functools.partial(heatmap_network, folder, bool(subtype))),
        image_size=record.image_size, threshold=record.threshold, temperature=record.temperature,
        name=record.name,
        ood_threshold=record.ood.distance_threshold if record.ood and "ood.safetensors" in record.files else None,
        ood_caution=record.ood.caution_distance if record.ood and "ood.safetensors" in record.files else None,
        model_path=folder, info={"validation": meta.get("validation")}, subtype=subtype,
    )


def _bundle_session(bundle: Any, threads: int | None, spin: bool, required: bool) -> Any:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if required:
            raise ModelLoadError("backend 'onnx' needs the onnxruntime package") from None
        return None
    from pneumoscope.errors import ExportError
    from pneumoscope.inference.export import cached_export
    from pneumoscope.inference.onnx import open_session

    try:
        path = cached_export(bundle)
        try:
            return open_session(path, threads, spinning=spin)
        except ModelLoadError:  # a damaged cached export: make it again, once
            path.unlink(missing_ok=True)
            return open_session(cached_export(bundle), threads, spinning=spin)
    except (ExportError, ModelLoadError, OSError) as exc:
        if required:
            raise
        # stacklevel 4, past this module's two frames and the Predictor's entry point: the frame the
        # warning has always named (Predictor.load, or the caller of Predictor.from_bundle).
        _warnings.warn(f"ONNX Runtime unavailable for this model ({exc}); scoring with PyTorch", stacklevel=4)
        return None


def _from_onnx(path: Path, threads: int | None, spin: bool) -> LoadedModel:
    from pneumoscope.inference.onnx import INPUT, open_session, read_contract

    if not path.is_file():
        raise ModelLoadError(f"ONNX model not found: {path}")
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ModelLoadError("an .onnx model needs the onnxruntime package") from None
    session = open_session(path, threads, spinning=spin)
    contract = read_contract(session.get_modelmeta().custom_metadata_map)
    if [i.name for i in session.get_inputs()] != [INPUT]:
        raise ModelLoadError(f"{path.name} does not take the '{INPUT}' input pneumoscope exports")
    subtype = contract.get("subtype")
    return LoadedModel(
        scorer=OnnxScorer(session, bool(subtype)),
        image_size=contract["image_size"], threshold=contract["threshold"],
        temperature=contract["temperature"], name=str(contract.get("name", path.stem)),
        ood_threshold=contract.get("ood_distance_threshold"), ood_caution=contract.get("ood_caution_distance"),
        model_path=path,
        info={"validation": contract.get("validation")}, subtype=subtype,
    )
