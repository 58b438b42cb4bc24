"""The two scoring back-ends, behind one interface: what turns a batch of network-sized images
into raw scores (pneumonia logit, subtype logit, OOD distance) and, for a heatmap, Grad-CAM maps.

- :class:`OnnxScorer`, ONNX Runtime (several times faster than eager PyTorch on a CPU), from an
  export cached by the weights' hash: one run gives the logit and the out-of-distribution
  distance and, for a heatmap, the Grad-CAM layer's activation, from which PyTorch takes the
  gradient through the network's small head only;
- :class:`TorchScorer`, without ONNX Runtime, PyTorch: for a heatmap, one forward and a truncated
  backward pass (MONAI's GradCAM) give the logit, the features and the map together.

Both answer :class:`~pneumoscope.inference.prediction.Scores`; deciding (temperature, threshold,
OOD verdict, subtype) is the Predictor's, the same whichever back-end scored. Thread safety:
ONNX Runtime runs (heatmaps included) concurrently; full PyTorch passes go one at a time, under
the :class:`TorchScorer`'s lock, since Grad-CAM's hooks on the shared network must see only their
own pass. Heatmaps always need the PyTorch network: an :class:`OnnxScorer` started from the cached
export without it (the web app's fast start) loads it later, in :meth:`OnnxScorer.load_network`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Protocol

import numpy as np

from pneumoscope.config import HEATMAP_METHOD, CamMethod
from pneumoscope.errors import HeatmapUnavailableError
from pneumoscope.inference.prediction import Scores
from pneumoscope.models.feature_model import mahalanobis

log = logging.getLogger("pneumoscope.predictor")


class Scorer(Protocol):
    """What the Predictor asks of a back-end: raw scores of uint8 (B, S, S) images, and maps."""

    @property
    def backend(self) -> str:
        """What scores an image without a heatmap: ``"onnxruntime"`` or ``"torch"``."""
        ...

    @property
    def net(self) -> Any:
        """The PyTorch network heatmaps need; None while it is not (or cannot be) loaded."""
        ...

    @property
    def can_explain(self) -> bool:
        """Whether heatmaps are available, or will be once the network has loaded."""
        ...

    def score(self, pixels: np.ndarray) -> Scores:
        """Pneumonia logits, subtype logits and OOD distances of uint8 (B, S, S)."""
        ...

    def explain(
        self, pixels: np.ndarray, decision_logit: float, method: CamMethod = HEATMAP_METHOD
    ) -> tuple[Scores, np.ndarray]:
        """The scores and Grad-CAM maps (B, h, w) of the side of ``decision_logit`` each image is on."""
        ...

    def load_network(self) -> None:
        """Load the PyTorch network heatmaps need, if this scorer was started without it."""
        ...


class TorchScorer:
    """Eager PyTorch: the network, MONAI's GradCAM on it, and Mahalanobis distances of its features.

    One pass at a time: Grad-CAM's hooks on the shared network must see only their own pass.
    """

    backend = "torch"
    can_explain = True

    def __init__(self, net: Any, ood_stats: dict[str, Any] | None, subtype: bool) -> None:
        self.net = net
        self._ood_stats = _float64(ood_stats)
        self._subtype = subtype
        """Whether the model has a subtype head whose logits are wanted."""
        self._lock = threading.Lock()
        self._cam: Any = None

    def score(self, pixels: np.ndarray) -> Scores:
        from pneumoscope.models.forward import forward_images

        with self._lock:
            need = self._ood_stats is not None or self._subtype
            logits, features = forward_images(self.net, pixels, batch_size=len(pixels), features=need)
        return self.scores(logits, features)

    def explain(
        self, pixels: np.ndarray, decision_logit: float, method: CamMethod = HEATMAP_METHOD
    ) -> tuple[Scores, np.ndarray]:
        with self._lock:
            if self._cam is None:
                from pneumoscope.inference.explain import GradCam

                self._cam = GradCam(self.net)
            result = self._cam(pixels, decision_logit, method)
        return self.scores(result.logits, result.features), result.maps

    def load_network(self) -> None:
        """Nothing to load: the network came with this scorer."""

    def scores(self, logits: np.ndarray, features: np.ndarray | None) -> Scores:
        """The batch's scores from the network's logits and features (subtype head, OOD distances)."""
        subtype = None
        if self._subtype and features is not None:
            from pneumoscope.models.forward import subtype_logits

            subtype = subtype_logits(self.net, features)
        distances = None if features is None or self._ood_stats is None else mahalanobis(features, self._ood_stats)
        return Scores(logits, subtype, distances)


class OnnxScorer:
    """An ONNX Runtime session; for heatmaps, the PyTorch network too (a :class:`TorchScorer`).

    Runs concurrently. The graph returns what scoring needs in one run; when it also returns the
    Grad-CAM layer's activation, a heatmap takes PyTorch's gradient through the network's head
    only (:func:`~pneumoscope.inference.explain.grad_cam_from_activation`), else it is a full
    PyTorch pass.

    The network may come later: started from the cached export (``network`` None, ``loader``
    given), a heatmap request waits until :meth:`load_network` has run, and fails with its error
    if the network could not be loaded. That state lives here because this is the one back-end
    that can score without PyTorch. Without network and loader (an ``.onnx`` file) there are no
    heatmaps.
    """

    backend = "onnxruntime"

    def __init__(
        self, session: Any, subtype: bool, network: TorchScorer | None = None,
        loader: Callable[[], TorchScorer] | None = None,
    ) -> None:
        self.session = session
        names = [o.name for o in session.get_outputs()]
        self.outputs = ["logit"] + [n for n in ("subtype_logit", "ood_distance") if n in names]
        """What a scoring run asks of the graph."""
        self.graph_has_cam = "cam_activation" in names
        """Whether the graph returns the Grad-CAM layer's activation (heatmaps without a PyTorch pass)."""
        self._subtype = subtype
        self._network = network
        self._loader = loader
        """Loads the network for :meth:`load_network` (None: this scorer never gets one later)."""
        self._net_ready = threading.Event()
        """Set once the PyTorch network is in place, or its loading failed (``_net_error`` says why)."""
        self._net_error: str | None = None
        if network is not None:
            self._net_ready.set()

    @property
    def net(self) -> Any:
        return self._network.net if self._network is not None else None

    @property
    def can_explain(self) -> bool:
        return self._network is not None or (self._loader is not None and self._net_error is None)

    def load_network(self) -> None:
        """Run the loader once; a failure is logged and kept for heatmap requests, scoring goes on."""
        if self._net_ready.is_set() or self._loader is None:
            return
        try:
            self._network = self._loader()
        except Exception as exc:  # noqa: BLE001 - scoring goes on; heatmaps say why they are missing
            self._net_error = f"the PyTorch network could not be loaded ({type(exc).__name__}: {exc})"
            log.warning("heatmaps unavailable: %s", self._net_error)
        finally:
            self._net_ready.set()

    def wait_for_network(self) -> TorchScorer:
        """Block until :meth:`load_network` has run (a heatmap asked for at start-up); the network."""
        if not self._net_ready.wait(timeout=300) or self._network is None:
            raise HeatmapUnavailableError(self._net_error or "the PyTorch network for heatmaps is still loading")
        return self._network

    def score(self, pixels: np.ndarray) -> Scores:
        return self._scores(self.run(self.outputs, pixels))

    def explain(
        self, pixels: np.ndarray, decision_logit: float, method: CamMethod = HEATMAP_METHOD
    ) -> tuple[Scores, np.ndarray]:
        network = self.wait_for_network()
        if not self.graph_has_cam:
            return network.explain(pixels, decision_logit, method)
        from pneumoscope.inference.explain import grad_cam_from_activation

        outputs = self.run([*self.outputs, "cam_activation"], pixels)
        return self._scores(outputs[:-1]), grad_cam_from_activation(network.net, outputs[-1], decision_logit, method)

    def run(self, outputs: list[str], pixels: np.ndarray) -> list[np.ndarray]:
        """The ONNX graph's ``outputs`` for uint8 (B, S, S), fed as its float (B, 1, S, S) input."""
        return self.session.run(outputs, {"pixels": pixels[:, None].astype(np.float32)})

    def _scores(self, outputs: list[np.ndarray]) -> Scores:
        named = dict(zip(self.outputs, outputs))
        return Scores(named["logit"], named.get("subtype_logit") if self._subtype else None, named.get("ood_distance"))


def _float64(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    """OOD statistics as float64, once: feature_model.mahalanobis converts with ``np.asarray(.., float64)``, a
    free no-op on float64 tensors but ~6 ms per call on the 1280 x 1280 float32 precision matrix."""
    return {key: value.double() for key, value in stats.items()} if stats else None
