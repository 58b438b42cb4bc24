"""The one way to get a prediction: the CLI, the web app and the Python API all go through here.

    from pneumoscope import Predictor
    predictor = Predictor.load()                     # the bundled model
    result = predictor.predict("chest.jpeg", heatmap=True)
    result.label, result.probability, result.is_chest_xray, result.overlay

An image is read and resized by :func:`~pneumoscope.inference.prepare.prepare_image`, scored by
a back-end (:mod:`pneumoscope.inference.scoring`: ONNX Runtime where it is installed, else
PyTorch) that :mod:`pneumoscope.inference.loading` chose, and decided here, the same whichever
back-end scored, into a :class:`~pneumoscope.inference.prediction.Prediction`.

The probability is ``sigmoid(logit / temperature)`` (temperature fitted on validation), the label
PNEUMONIA when it reaches the model's threshold. An image that does not look like a chest X-ray
(colour, shape, or features far from the training images) still gets its label computed, but
``is_chest_xray`` is False and ``warnings`` say why and that the label is not a diagnosis.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from pneumoscope.config import HEATMAP_METHOD, INFERENCE_BATCH_SIZE, CamMethod
from pneumoscope.data.images import ImageSource, as_training_copy
from pneumoscope.errors import HeatmapUnavailableError
from pneumoscope.inference import loading
from pneumoscope.inference.loading import Backend, Heatmaps
from pneumoscope.inference.ood import needs_second_reading, needs_upright_reading, verdict
from pneumoscope.inference.prediction import NOT_A_DIAGNOSIS, PixelScores, Prediction, Scores
from pneumoscope.inference.prepare import PreparedImage, prepare_image
from pneumoscope.inference.scoring import Scorer
from pneumoscope.models.decision import decision_logit, label_of, sigmoid, subtype_of


class Predictor:
    """A loaded model that scores chest X-rays; build it with :meth:`load`.

    Thread-safe: ONNX Runtime runs (heatmaps included) concurrently, full PyTorch passes one at a time.
    """

    def __init__(
        self,
        *,
        scorer: Scorer,
        image_size: int,
        threshold: float,
        temperature: float,
        name: str,
        ood_threshold: float | None = None,
        ood_caution: float | None = None,
        model_path: Path | None = None,
        info: dict[str, Any] | None = None,
        subtype: dict[str, Any] | None = None,
    ) -> None:
        self.scorer = scorer
        """The back-end that scores a batch (:class:`~pneumoscope.inference.scoring.Scorer`)."""
        self.image_size = int(image_size)
        self.threshold = float(threshold)
        self.temperature = float(temperature)
        self.name = name
        self.ood_threshold = ood_threshold
        """Feature distance beyond which an image is refused as not a chest X-ray."""
        self.ood_caution = ood_caution
        """Feature distance beyond which (up to ``ood_threshold``) the answer comes with a caution."""
        self.model_path = model_path
        """The model folder or .onnx file; the web app reads its model card from here."""
        self.info = info or {}
        self.subtype_threshold = float(subtype["threshold"]) if subtype else None
        """The subtype head's operating point on ``p_bacterial`` (None: the model has no subtype head)."""
        self.subtype_temperature = float(subtype["temperature"]) if subtype else 1.0
        self.heatmap_method: CamMethod = HEATMAP_METHOD
        """How heatmaps are computed (``config.HEATMAP_METHOD``; ``bench/heatmap_lungs.py`` sets each in turn)."""

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
        return cls(**loading.load(model, backend, threads, spin, heatmaps)._asdict())

    @classmethod
    def from_bundle(
        cls, bundle: Any, backend: Backend = "auto", threads: int | None = None, spin: bool = True
    ) -> "Predictor":
        """A predictor over an already loaded (and hash-checked) model bundle."""
        return cls(**loading.from_bundle(bundle, backend, threads, spin)._asdict())

    def load_heatmap_network(self) -> None:
        """Load the PyTorch network that heatmaps need, if this predictor was started without it.

        ``serve`` calls it once the app answers, with ``ast.parse`` serialised: CPython 3.11.7's AST
        conversion is not thread-safe (gh-106905, fixed in 3.11.8), and importing PyTorch parses source.
        """
        self.scorer.load_network()

    # ------------------------------------------------------------------ properties
    @property
    def backend(self) -> str:
        """What scores an image without a heatmap: ``"onnxruntime"`` or ``"torch"``."""
        return self.scorer.backend

    @property
    def network_loaded(self) -> bool:
        """Whether the PyTorch network is in place (heatmaps answer without waiting)."""
        return self.scorer.net is not None

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
        return self.scorer.can_explain

    # ------------------------------------------------------------------ predicting
    def predict(self, image: ImageSource, heatmap: bool = False) -> Prediction:
        """Score one image: a path, bytes, a PIL image or a numpy array (grey or RGB).

        Raises :class:`~pneumoscope.data.images.ImageLoadError` for an input that is not a usable image.
        """
        return self.predict_prepared([self.prepare(image)], heatmap=heatmap)[0]

    def predict_many(
        self, images: Iterable[ImageSource], heatmap: bool = False, batch_size: int = INFERENCE_BATCH_SIZE
    ) -> list[Prediction]:
        """Score many images in batches (same results as :meth:`predict`, image by image); an
        unreadable image raises, as in :meth:`predict`."""
        decoded = ((index, self.prepare(image), None) for index, image in enumerate(images))
        return [prediction for _, prediction, _ in self.stream(decoded, heatmap=heatmap, batch_size=batch_size)]

    def stream(
        self, decoded: Iterable[tuple[Any, "PreparedImage | None", str | None]], heatmap: bool = False,
        batch_size: int = INFERENCE_BATCH_SIZE,
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
        self, prepared: Sequence[PreparedImage], heatmap: bool = False, batch_size: int = INFERENCE_BATCH_SIZE
    ) -> list[Prediction]:
        """Score images already decoded by :func:`~pneumoscope.inference.prepare.prepare_image` at this model's size."""
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
            if heatmap:
                scores, maps = self.scorer.explain(pixels, self.decision_logit, self.heatmap_method)
            else:
                scores, maps = self.scorer.score(pixels), None
            second = self._second_readings(chunk, pixels, scores)
            for index, item in enumerate(chunk):
                results.append(self._result(item, scores.row(index), None if maps is None else maps[index],
                                            second.get(index, {})))
        return results

    def _second_readings(
        self, chunk: Sequence[PreparedImage], pixels: np.ndarray, scores: Scores
    ) -> dict[int, dict[str, float]]:
        """More passes for the few films whose reading is in doubt: the negative of a film whose
        polarity says inverted (``ood.needs_second_reading``), the film turned a quarter either way
        when it may lie on its side (``ood.needs_upright_reading``). Keyword arguments of ``verdict``."""
        if scores.distances is None:
            return {}
        readings: dict[int, dict[str, float]] = {}
        facts = [item.facts() for item in chunk]
        doubtful = [index for index, film in enumerate(facts)
                    if needs_second_reading(film, float(scores.distances[index]), self.ood_threshold)]
        if doubtful:
            for index, d in zip(doubtful, self.scorer.score(255 - pixels[doubtful]).distances):
                readings.setdefault(index, {})["inverse_distance"] = float(d)
        sideways = [index for index, film in enumerate(facts) if needs_upright_reading(film)]
        if sideways:
            turned = np.concatenate([np.rot90(pixels[sideways], 1, axes=(1, 2)), np.rot90(pixels[sideways], 3, axes=(1, 2))])
            distances = self.scorer.score(np.ascontiguousarray(turned)).distances.reshape(2, len(sideways)).min(axis=0)
            for index, d in zip(sideways, distances):
                readings.setdefault(index, {})["upright_distance"] = float(d)
        return readings

    def score_pixels(self, pixels: np.ndarray, batch_size: int = INFERENCE_BATCH_SIZE) -> PixelScores:
        """What :meth:`predict` computes, for many network-sized uint8 (N, S, S) images at once
        (evaluation, the stress report): calibrated probabilities, feature-space OOD flags (the
        feature distance only, not the file checks) and, with a subtype head, p_bacterial of every
        image (to be read on PNEUMONIA films only)."""
        pixels = np.asarray(pixels)
        if pixels.ndim != 3 or pixels.shape[1:] != (self.image_size, self.image_size):
            raise ValueError(f"pixels are {pixels.shape}, the model takes (N, {self.image_size}, {self.image_size})")
        # As an upload would reach the network: in the training copies' format (a no-op on the copies).
        parts = [self.scorer.score(as_training_copy(np.ascontiguousarray(pixels[start : start + batch_size])))
                 for start in range(0, len(pixels), batch_size)]

        def joined(values: list[np.ndarray | None]) -> np.ndarray | None:
            return np.concatenate(values).astype(np.float64) if values and values[0] is not None else None

        logits = joined([p.logits for p in parts])
        probs = sigmoid(logits / self.temperature) if logits is not None else np.zeros(0)
        distances = joined([p.distances for p in parts])
        ood = None if distances is None or self.ood_threshold is None else distances > self.ood_threshold
        cautioned = None if ood is None or self.ood_caution is None else (distances > self.ood_caution) & ~ood
        subtype = joined([p.subtype for p in parts])
        p_bacterial = None if subtype is None else sigmoid(subtype / self.subtype_temperature)
        return PixelScores(probs, ood, p_bacterial, distances, cautioned)

    def _result(self, item: PreparedImage, scores: tuple[float, float | None, float | None], cam: np.ndarray | None,
                second: dict[str, float] | None = None) -> Prediction:
        logit, subtype_logit, distance = scores
        probability = float(sigmoid(np.float64(logit) / self.temperature))
        label = label_of(probability, self.threshold)
        judged = verdict(item.facts(), distance, self.ood_threshold, self.ood_caution, **(second or {}))
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
            subtype=subtype, p_bacterial=p_bacterial, xray_check=judged.zone, caution=judged.caution,
        )

    def __repr__(self) -> str:
        return (
            f"Predictor(name={self.name!r}, backend={self.backend!r}, image_size={self.image_size}, "
            f"threshold={self.threshold:.4f}, temperature={self.temperature:.3f})"
        )


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
