"""The one way to get a prediction: the CLI, the web app and the Python API all go through here.

    from pneumoscope import Predictor
    predictor = Predictor.load()                     # the bundled model
    result = predictor.predict("chest.jpeg", heatmap=True)
    result.label, result.probability, result.is_chest_xray, result.overlay

An image is read by the project's one loader (:func:`pneumoscope.data.images.decode_image`,
exactly as evaluation reads it), resized to the network's square, and scored:

- by ONNX Runtime when it is available (several times faster than eager PyTorch on a CPU),
  from an export cached by the weights' hash; one run gives the logit and the
  out-of-distribution distance and, for a heatmap, the Grad-CAM layer's activation, from which
  PyTorch takes the gradient through the network's small head only;
- without ONNX Runtime, by PyTorch: for a heatmap, one forward and a truncated backward pass
  (MONAI's GradCAM) give the logit, the features and the map together.

The probability is ``sigmoid(logit / temperature)`` (temperature fitted on validation), the label
PNEUMONIA when it reaches the model's threshold. An image that does not look like a chest X-ray
(colour, shape, or features far from the training images) still gets its label computed, but
``is_chest_xray`` is False and ``warnings`` say why and that the label is not a diagnosis.
"""

from __future__ import annotations

import logging
import threading
import warnings as _warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, NamedTuple, Sequence

import numpy as np
from PIL import Image

from pneumoscope.data.images import DecodedImage, ImageSource, decode_image, resize_square
from pneumoscope.errors import HeatmapUnavailableError, ModelLoadError
from pneumoscope.inference.ood import verdict
from pneumoscope.models.decision import decision_logit, label_of, sigmoid, subtype_of
from pneumoscope.models.feature_model import mahalanobis

log = logging.getLogger("pneumoscope.predictor")

DISPLAY_MAX = 1024
"""Longest side of the image kept for display: a heatmap overlay needs no more, and memory stays small."""
NOT_A_DIAGNOSIS = (
    "this does not look like a chest X-ray: the label is the network's raw output and must not be "
    "read as a diagnosis"
)
Backend = Literal["auto", "onnx", "torch"]
Heatmaps = Literal["now", "background"]


@dataclass(frozen=True)
class Prediction:
    """The result for one image. Arrays are left out of equality and ``repr``; :meth:`to_dict` is
    what JSON, CSV and the web API show."""

    label: str
    """``"NORMAL"`` or ``"PNEUMONIA"``; when ``is_chest_xray`` is False, not a diagnosis."""
    probability: float
    """Calibrated probability of pneumonia."""
    threshold: float
    """The model's decision threshold: PNEUMONIA when ``probability >= threshold``."""
    is_chest_xray: bool
    warnings: tuple[str, ...] = ()
    """Why the image does not look like a chest X-ray (empty when it does), then a note that the label is no diagnosis."""
    ood_distance: float | None = None
    """Mahalanobis distance of the network's features from the training images' (None without OOD statistics)."""
    heatmap: np.ndarray | None = field(default=None, repr=False, compare=False)
    """Grad-CAM for the predicted class (what raised the pneumonia score for PNEUMONIA, what lowered
    it for NORMAL), float32 (H, W) in [0, 1] relative to this image's strongest region, at the size
    of :attr:`image`."""
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The grey image as read (uint8 (H, W), at most ``DISPLAY_MAX`` pixels a side), for display;
    with a heatmap and no display copy kept (the batch CLI), the network's input."""
    subtype: str | None = None
    """``"bacterial"`` or ``"viral"``: which pattern the film is more typical of. Only for a film
    labelled PNEUMONIA that passes as a chest X-ray, by a model with a subtype head; else None."""
    p_bacterial: float | None = None
    """Calibrated probability of a bacterial rather than viral pattern (None whenever ``subtype`` is)."""

    @cached_property
    def overlay(self) -> Image.Image | None:
        """The heatmap blended over the image in colour (RGB); drawn when first asked for (the web
        page draws its own at the opacity chosen, and a 700 px overlay costs ~8 ms)."""
        if self.heatmap is None or self.image is None:
            return None
        from pneumoscope.inference.explain import overlay_heatmap

        return overlay_heatmap(self.image, self.heatmap)

    @property
    def subtype_pattern(self) -> str | None:
        """The subtype in words, as a pattern and not a diagnosis, with the probability of that pattern."""
        if self.subtype is None or self.p_bacterial is None:
            return None
        p = self.p_bacterial if self.subtype == "bacterial" else 1.0 - self.p_bacterial
        return f"pattern more typical of {self.subtype} pneumonia (p = {p:.2f})"

    def to_dict(self) -> dict[str, Any]:
        """The result without arrays (``RESULT_FIELDS``), for JSON and CSV."""
        values = {name: getattr(self, name) for name in RESULT_FIELDS}
        values["warnings"] = list(self.warnings)
        return values


RESULT_FIELDS = ("label", "probability", "threshold", "is_chest_xray", "warnings", "ood_distance", "subtype",
                 "p_bacterial", "subtype_pattern")
"""What :meth:`Prediction.to_dict` holds, in order: the API's and the page's result fields."""


@dataclass(frozen=True)
class PreparedImage:
    """One decoded image, ready for the network; small, so decoding processes can send it back."""

    pixels: np.ndarray
    """uint8 (S, S): the network's input."""
    original_size: tuple[int, int]
    colourfulness: float
    format: str
    display: np.ndarray | None = None
    """uint8 (H, W) grey image as read, at most ``DISPLAY_MAX`` a side; None when not kept."""

    def facts(self) -> DecodedImage:
        """What the out-of-distribution check reads: the file's facts and the network's own pixels
        (not the display copy), so the API and the batch CLI, which keeps no display copy, judge alike."""
        return DecodedImage(self.pixels, self.original_size, self.colourfulness, self.format)


def prepare_image(source: ImageSource, size: int, *, keep_display: bool = True) -> PreparedImage:
    """Decode ``source`` with the one loader, as evaluation does (``reduce_to=size``), and resize it.

    ``reduce_to`` makes a JPEG decode at a reduced DCT scale that keeps twice ``size`` pixels a
    side (1.3x faster than a full decode and resize, with the same labels: ``bench/fast_paths.py``);
    a numpy array or an already-decoded PIL image has no DCT to scale, so it is resized from full
    resolution (scores then differ slightly from the file's).
    """
    decoded = decode_image(source, reduce_to=size)
    pixels = resize_square(decoded.grey, size)
    display = _fit_display(decoded.grey) if keep_display else None
    return PreparedImage(pixels, decoded.original_size, decoded.colourfulness, decoded.format, display)


def _fit_display(grey: np.ndarray) -> np.ndarray:
    height, width = grey.shape
    scale = DISPLAY_MAX / max(height, width)
    if scale >= 1.0:
        return grey
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(grey).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


class Predictor:
    """A loaded model that scores chest X-rays; build it with :meth:`load`.

    Thread-safe: ONNX Runtime runs (heatmaps included) concurrently, full PyTorch passes one at a time.
    """

    def __init__(
        self,
        *,
        image_size: int,
        threshold: float,
        temperature: float,
        name: str,
        ood_threshold: float | None = None,
        net: Any = None,
        ood_stats: dict[str, Any] | None = None,
        session: Any = None,
        model_path: Path | None = None,
        info: dict[str, Any] | None = None,
        subtype: dict[str, Any] | None = None,
    ) -> None:
        self.image_size = int(image_size)
        self.threshold = float(threshold)
        self.temperature = float(temperature)
        self.name = name
        self.ood_threshold = ood_threshold
        self.model_path = model_path
        """The model folder or .onnx file; the web app reads its model card from here."""
        self.info = info or {}
        self.subtype_threshold = float(subtype["threshold"]) if subtype else None
        """The subtype head's operating point on ``p_bacterial`` (None: the model has no subtype head)."""
        self.subtype_temperature = float(subtype["temperature"]) if subtype else 1.0
        self._net = net
        self._ood_stats = _float64(ood_stats)
        self._session = session
        self._session_outputs: list[str] = []
        self._graph_has_cam = False
        """Whether the ONNX graph returns the Grad-CAM layer's activation (heatmaps without a PyTorch pass)."""
        if session is not None:
            names = [o.name for o in session.get_outputs()]
            self._session_outputs = ["logit"] + [n for n in ("subtype_logit", "ood_distance") if n in names]
            self._graph_has_cam = "cam_activation" in names
        self._cam: Any = None
        self._torch_lock = threading.Lock()
        """One PyTorch pass at a time: Grad-CAM's hooks on the shared network must see only their own pass."""
        self._net_ready = threading.Event()
        """Set once the PyTorch network is in place, or its loading failed (``_net_error`` says why)."""
        self._net_error: str | None = None
        self._net_folder: Path | None = None
        if net is not None:
            self._net_ready.set()

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls, model: str | Path | None = None, backend: Backend = "auto", threads: int | None = None, spin: bool = True,
        heatmaps: Heatmaps = "now",
    ) -> "Predictor":
        """Load the bundled model (``None``), a model folder (a training run) or an ``.onnx`` exported by us.

        ``backend``: ``"auto"`` scores with ONNX Runtime when it is installed and PyTorch
        otherwise; ``"onnx"`` insists on ONNX Runtime; ``"torch"`` uses PyTorch only (no export).
        Heatmaps always use PyTorch, so a predictor loaded from an ``.onnx`` file has none.
        ``threads``: ONNX Runtime threads (default: one per physical core). ``spin``: let them
        busy-wait between runs (lowest latency for one image); the batch CLI turns it off so that
        they leave the cores to its decoding processes.
        ``heatmaps="background"``: when the model's ONNX export is cached, score from it at once and
        leave PyTorch (needed for heatmaps only, a second or more to import) to
        :meth:`load_heatmap_network`; until that has run, a heatmap request waits for it. The web
        app starts this way, so it answers before PyTorch is loaded.
        """
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"backend must be 'auto', 'onnx' or 'torch', not {backend!r}")
        if model is not None and Path(model).suffix.lower() == ".onnx":
            if backend == "torch":
                raise ValueError("an .onnx model runs on ONNX Runtime only; pass the model folder for PyTorch")
            return cls._from_onnx(Path(model), threads, spin)
        if heatmaps == "background" and backend != "torch":
            fast = cls._from_cached_export(model, threads, spin)
            if fast is not None:
                return fast
        from pneumoscope.models.bundle import load_bundle

        return cls.from_bundle(load_bundle(model), backend, threads, spin)

    @classmethod
    def _from_cached_export(cls, model: str | Path | None, threads: int | None, spin: bool) -> "Predictor | None":
        """A predictor on the model's cached ONNX export, without PyTorch; None when there is no
        cached export (or no ONNX Runtime): the caller then loads the whole bundle."""
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
        predictor = cls(
            image_size=record.image_size, threshold=record.threshold, temperature=record.temperature,
            name=record.name,
            ood_threshold=record.ood.distance_threshold if record.ood and "ood.safetensors" in record.files else None,
            session=session, model_path=folder, info={"validation": meta.get("validation")},
            subtype=meta.get("subtype"),
        )
        predictor._net_folder = folder
        return predictor

    def load_heatmap_network(self) -> None:
        """Load the PyTorch network that heatmaps need, if this predictor was started without it.

        ``serve`` calls it once the app answers, with ``ast.parse`` serialised: CPython 3.11.7's AST
        conversion is not thread-safe (gh-106905, fixed in 3.11.8), and importing PyTorch parses source.
        """
        if self._net_ready.is_set() or self._net_folder is None:
            return
        try:
            from pneumoscope.models.bundle import load_bundle

            bundle = load_bundle(self._net_folder)
            bundle.net.requires_grad_(False)
            self._ood_stats = _float64(bundle.ood)
            self._net = bundle.net
        except Exception as exc:  # noqa: BLE001 - scoring goes on; heatmaps say why they are missing
            self._net_error = f"the PyTorch network could not be loaded ({type(exc).__name__}: {exc})"
            log.warning("heatmaps unavailable: %s", self._net_error)
        finally:
            self._net_ready.set()

    @classmethod
    def from_bundle(
        cls, bundle: Any, backend: Backend = "auto", threads: int | None = None, spin: bool = True
    ) -> "Predictor":
        """A predictor over an already loaded (and hash-checked) model bundle."""
        bundle.net.requires_grad_(False)  # inference only: no parameter ever needs a gradient
        session = None
        if backend != "torch":
            session = cls._bundle_session(bundle, threads, spin, required=backend == "onnx")
        record = bundle.record
        return cls(
            image_size=bundle.image_size, threshold=record.threshold, temperature=record.temperature,
            name=record.name,
            ood_threshold=record.ood.distance_threshold if bundle.ood and record.ood else None,
            net=bundle.net, ood_stats=bundle.ood or None, session=session, model_path=bundle.path,
            info={"validation": bundle.meta.get("validation"), "arch": bundle.config.model.arch},
            subtype=bundle.subtype,
        )

    @staticmethod
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
            _warnings.warn(f"ONNX Runtime unavailable for this model ({exc}); scoring with PyTorch", stacklevel=3)
            return None

    @classmethod
    def _from_onnx(cls, path: Path, threads: int | None, spin: bool) -> "Predictor":
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
        return cls(
            image_size=contract["image_size"], threshold=contract["threshold"],
            temperature=contract["temperature"], name=str(contract.get("name", path.stem)),
            ood_threshold=contract.get("ood_distance_threshold"), session=session, model_path=path,
            info={"validation": contract.get("validation")}, subtype=contract.get("subtype"),
        )

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> str:
        """What scores an image without a heatmap: ``"onnxruntime"`` or ``"torch"``."""
        return "onnxruntime" if self._session is not None else "torch"

    @property
    def network_loaded(self) -> bool:
        """Whether the PyTorch network is in place (heatmaps answer without waiting)."""
        return self._net is not None

    @property
    def _session_cam(self) -> bool:
        """Heatmaps from the ONNX run's CAM activation plus PyTorch's head gradient (needs the network)."""
        return self._graph_has_cam and self._net is not None

    @property
    def decision_logit(self) -> float:
        """The raw logit where the label turns PNEUMONIA: heatmaps explain the side an image is on."""
        return decision_logit(self.threshold, self.temperature)

    @property
    def has_subtype(self) -> bool:
        """Whether this model also answers bacterial vs viral pattern."""
        return self.subtype_threshold is not None

    @property
    def can_explain(self) -> bool:
        """Whether heatmaps are available (they need the PyTorch network), or will be once it has loaded."""
        return self._net is not None or (self._net_folder is not None and self._net_error is None)

    def _wait_for_net(self) -> None:
        """Block until :meth:`load_heatmap_network` has run (a heatmap asked for at start-up)."""
        if not self._net_ready.wait(timeout=300) or self._net is None:
            raise HeatmapUnavailableError(self._net_error or "the PyTorch network for heatmaps is still loading")

    # ------------------------------------------------------------------ predicting
    def predict(self, image: ImageSource, heatmap: bool = False) -> Prediction:
        """Score one image: a path, bytes, a PIL image or a numpy array (grey or RGB).

        Raises :class:`~pneumoscope.data.images.ImageLoadError` for an input that is not a usable image.
        """
        return self.predict_prepared([self.prepare(image)], heatmap=heatmap)[0]

    def predict_many(
        self, images: Iterable[ImageSource], heatmap: bool = False, batch_size: int = 32
    ) -> list[Prediction]:
        """Score many images in batches (same results as :meth:`predict`, image by image); an
        unreadable image raises, as in :meth:`predict`."""
        decoded = ((index, self.prepare(image), None) for index, image in enumerate(images))
        return [prediction for _, prediction, _ in self.stream(decoded, heatmap=heatmap, batch_size=batch_size)]

    def stream(
        self, decoded: Iterable[tuple[Any, "PreparedImage | None", str | None]], heatmap: bool = False,
        batch_size: int = 32,
    ) -> Iterator[tuple[Any, "Prediction | None", str | None]]:
        """The one batch loop (``predict_many``, ``pneumoscope predict``, the app's Batch tab):
        ``(key, prepared image, None)`` or ``(key, None, error)`` in, ``(key, prediction, None)`` or
        ``(key, None, error)`` out, in input order, scored ``batch_size`` images at a time."""
        pending: list[tuple[Any, PreparedImage | None, str | None]] = []

        def flush() -> Iterator[tuple[Any, Prediction | None, str | None]]:
            scored = iter(self.predict_prepared([item for _, item, _ in pending if item is not None],
                                                heatmap=heatmap, batch_size=batch_size))
            for key, item, error in pending:
                yield key, (next(scored) if item is not None else None), error
            pending.clear()

        for entry in decoded:
            pending.append(entry)
            if sum(item is not None for _, item, _ in pending) >= batch_size:
                yield from flush()
        yield from flush()

    def prepare(self, image: ImageSource, keep_display: bool = True) -> PreparedImage:
        """Decode and resize ``image`` for this model (what the batch CLI does in worker processes)."""
        return prepare_image(image, self.image_size, keep_display=keep_display)

    def predict_prepared(
        self, prepared: Sequence[PreparedImage], heatmap: bool = False, batch_size: int = 32
    ) -> list[Prediction]:
        """Score images already decoded by :func:`prepare_image` at this model's size."""
        if heatmap and not self.can_explain:
            raise HeatmapUnavailableError(
                f"heatmaps need the PyTorch model, and this predictor was loaded from {self.model_path}: "
                "load the model folder instead of its ONNX export"
            )
        results: list[Prediction] = []
        for start in range(0, len(prepared), batch_size):
            chunk = prepared[start : start + batch_size]
            for item in chunk:
                if item.pixels.shape != (self.image_size, self.image_size):
                    raise ValueError(f"prepared image is {item.pixels.shape}, the model takes {self.image_size} px")
            pixels = np.stack([item.pixels for item in chunk])
            scores, maps = self._explain(pixels) if heatmap else (self._score(pixels), None)
            for index, item in enumerate(chunk):
                results.append(self._result(item, scores.row(index), None if maps is None else maps[index]))
        return results

    def score_pixels(self, pixels: np.ndarray, batch_size: int = 32) -> "PixelScores":
        """What :meth:`predict` computes, for many network-sized uint8 (N, S, S) images at once
        (evaluation, the stress report): calibrated probabilities, feature-space OOD flags (the
        feature distance only, not the file checks) and, with a subtype head, p_bacterial of every
        image (to be read on PNEUMONIA films only)."""
        pixels = np.asarray(pixels)
        if pixels.ndim != 3 or pixels.shape[1:] != (self.image_size, self.image_size):
            raise ValueError(f"pixels are {pixels.shape}, the model takes (N, {self.image_size}, {self.image_size})")
        parts = [self._score(np.ascontiguousarray(pixels[start : start + batch_size]))
                 for start in range(0, len(pixels), batch_size)]

        def joined(values: list[np.ndarray | None]) -> np.ndarray | None:
            return np.concatenate(values).astype(np.float64) if values and values[0] is not None else None

        logits = joined([p.logits for p in parts])
        probs = sigmoid(logits / self.temperature) if logits is not None else np.zeros(0)
        distances = joined([p.distances for p in parts])
        ood = None if distances is None or self.ood_threshold is None else distances > self.ood_threshold
        subtype = joined([p.subtype for p in parts])
        p_bacterial = None if subtype is None else sigmoid(subtype / self.subtype_temperature)
        return PixelScores(probs, ood, p_bacterial)

    def _score(self, pixels: np.ndarray) -> "_Scores":
        """Pneumonia logits, subtype logits and OOD distances of uint8 (B, S, S)."""
        if self._session is not None:
            return self._session_scores(self._run_session(self._session_outputs, pixels))
        from pneumoscope.models.forward import forward_images

        with self._torch_lock:
            need = self._ood_stats is not None or self.has_subtype
            logits, features = forward_images(self._net, pixels, batch_size=len(pixels), features=need)
        return self._torch_scores(logits, features)

    def _session_scores(self, outputs: list[np.ndarray]) -> "_Scores":
        named = dict(zip(self._session_outputs, outputs))
        return _Scores(named["logit"], named.get("subtype_logit") if self.has_subtype else None, named.get("ood_distance"))

    def _torch_scores(self, logits: np.ndarray, features: np.ndarray | None) -> "_Scores":
        subtype = None
        if self.has_subtype and features is not None:
            from pneumoscope.models.forward import subtype_logits

            subtype = subtype_logits(self._net, features)
        return _Scores(logits, subtype, self._distances(features))

    def _run_session(self, outputs: list[str], pixels: np.ndarray) -> list[np.ndarray]:
        """The ONNX graph's ``outputs`` for uint8 (B, S, S), fed as its float (B, 1, S, S) input."""
        return self._session.run(outputs, {"pixels": pixels[:, None].astype(np.float32)})

    def _explain(self, pixels: np.ndarray) -> tuple["_Scores", np.ndarray]:
        self._wait_for_net()
        if self._session_cam:
            from pneumoscope.inference.explain import grad_cam_from_activation

            outputs = self._run_session([*self._session_outputs, "cam_activation"], pixels)
            return self._session_scores(outputs[:-1]), grad_cam_from_activation(self._net, outputs[-1], self.decision_logit)
        with self._torch_lock:
            if self._cam is None:
                from pneumoscope.inference.explain import GradCam

                self._cam = GradCam(self._net)
            result = self._cam(pixels, self.decision_logit)
        return self._torch_scores(result.logits, result.features), result.maps

    def _distances(self, features: np.ndarray | None) -> np.ndarray | None:
        if features is None or self._ood_stats is None:
            return None
        return mahalanobis(features, self._ood_stats)

    def _result(self, item: PreparedImage, scores: tuple[float, float | None, float | None], cam: np.ndarray | None) -> Prediction:
        logit, subtype_logit, distance = scores
        probability = float(sigmoid(np.float64(logit) / self.temperature))
        label = label_of(probability, self.threshold)
        judged = verdict(item.facts(), distance, self.ood_threshold)
        subtype, p_bacterial = None, None
        if subtype_logit is not None and label == "PNEUMONIA" and judged.is_chest_xray:
            p_bacterial = float(sigmoid(np.float64(subtype_logit) / self.subtype_temperature))
            subtype = subtype_of(p_bacterial, self.subtype_threshold)
        notes = judged.reasons + ((NOT_A_DIAGNOSIS,) if not judged.is_chest_xray else ())
        heat, shown = None, item.display
        if cam is not None:
            from pneumoscope.inference.explain import upsample_map

            shown = item.display if item.display is not None else item.pixels
            heat = upsample_map(cam, shown.shape)
        return Prediction(
            label=label, probability=probability, threshold=self.threshold, is_chest_xray=judged.is_chest_xray,
            warnings=notes, ood_distance=distance, heatmap=heat, image=shown,
            subtype=subtype, p_bacterial=p_bacterial,
        )

    def __repr__(self) -> str:
        return (
            f"Predictor(name={self.name!r}, backend={self.backend!r}, image_size={self.image_size}, "
            f"threshold={self.threshold:.4f}, temperature={self.temperature:.3f})"
        )


class PixelScores(NamedTuple):
    """:meth:`Predictor.score_pixels`' answer for N images."""

    probs: np.ndarray
    """Calibrated pneumonia probabilities (N,)."""
    ood: np.ndarray | None
    """Whether each image's features are too far from the training images' (None without statistics)."""
    p_bacterial: np.ndarray | None
    """Calibrated bacterial-vs-viral probabilities (N,), None without a subtype head."""


@dataclass(frozen=True)
class _Scores:
    """What one pass over a batch gives: pneumonia logits (B,), subtype logits (B,) or None (no
    head), OOD distances (B,) or None (no statistics)."""

    logits: np.ndarray
    subtype: np.ndarray | None
    distances: np.ndarray | None

    def row(self, index: int) -> tuple[float, float | None, float | None]:
        pick = lambda values: None if values is None else float(values[index])  # noqa: E731
        return float(self.logits[index]), pick(self.subtype), pick(self.distances)


def _float64(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """OOD statistics as float64, once: feature_model.mahalanobis converts with ``np.asarray(.., float64)``, a
    free no-op on float64 tensors but ~6 ms per call on the 1280 x 1280 float32 precision matrix."""
    return {key: value.double() for key, value in stats.items()} if stats else None


_DEFAULT: dict[str, Predictor] = {}
_DEFAULT_LOCK = threading.Lock()


def pneumonia_prediction(image: ImageSource, model: str | Path | None = None, heatmap: bool = False) -> Prediction:
    """The bootcamp's one call, kept: score ``image`` with the bundled model (loaded once, then reused)."""
    key = str(Path(model).resolve()) if model is not None else ""
    with _DEFAULT_LOCK:
        predictor = _DEFAULT.get(key)
        if predictor is None:
            predictor = _DEFAULT[key] = Predictor.load(model)
    return predictor.predict(image, heatmap=heatmap)
