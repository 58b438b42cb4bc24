"""Grad-CAM: a map of the displayed image's size, not constant, from the one pass that scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoscope.inference.explain import overlay_heatmap, upsample_map
from pneumoscope.inference.predictor import Predictor
from pneumoscope.models.nets import Ensemble


def test_heatmap_has_the_image_size_and_is_not_constant(predictor: Predictor, pneumonia_original: Path) -> None:
    result = predictor.predict(pneumonia_original, heatmap=True)
    assert result.heatmap is not None and result.image is not None
    assert result.heatmap.shape == result.image.shape
    assert result.heatmap.dtype == np.float32
    assert 0.0 <= result.heatmap.min() and result.heatmap.max() <= 1.0
    assert result.heatmap.std() > 0.05, "the map is (nearly) constant"
    assert result.overlay.mode == "RGB"
    assert result.overlay.size == (result.image.shape[1], result.image.shape[0])


class _CountingSession:
    """An ONNX Runtime session that counts its runs."""

    def __init__(self, session) -> None:
        self.session, self.runs = session, 0

    def __getattr__(self, name):
        return getattr(self.session, name)

    def run(self, *args, **kwargs):
        self.runs += 1
        return self.session.run(*args, **kwargs)


@pytest.mark.parametrize("which", ["onnx", "torch"])
def test_heatmap_comes_from_the_scoring_pass(which: str, predictor: Predictor, torch_predictor: Predictor,
                                             normal_original: Path) -> None:
    """One pass through the network gives the probability, the OOD distance and the map: with
    ONNX Runtime one run and no PyTorch forward; without it one PyTorch forward."""
    chosen = predictor if which == "onnx" else torch_predictor
    if which == "onnx" and chosen.backend != "onnxruntime":
        pytest.skip("onnxruntime not installed")
    forwards = []  # every PyTorch pass through the network starts with its (first member's) normalisation layer
    net = chosen.scorer.net
    first = net.members[0] if isinstance(net, Ensemble) else net
    handle = first.normalize.register_forward_hook(lambda *args: forwards.append(1))
    session = getattr(chosen.scorer, "session", None)
    if session is not None:
        chosen.scorer.session = _CountingSession(session)
    try:
        with_map = chosen.predict(normal_original, heatmap=True)
        runs = chosen.scorer.session.runs if session is not None else 0
    finally:
        handle.remove()
        if session is not None:
            chosen.scorer.session = session
    assert (len(forwards), runs) == ((0, 1) if which == "onnx" else (1, 0))
    without = torch_predictor.predict(normal_original)
    assert with_map.probability == pytest.approx(without.probability, abs=1e-4)
    assert with_map.ood_distance == pytest.approx(without.ood_distance, rel=1e-4)
    assert with_map.is_chest_xray == without.is_chest_xray


def test_onnx_route_gives_monai_grad_cam(predictor: Predictor, torch_predictor: Predictor,
                                          some_originals: list[Path]) -> None:
    """The map from ONNX Runtime's activation + the head's gradient is MONAI's GradCAM map."""
    if predictor.backend != "onnxruntime":
        pytest.skip("onnxruntime not installed")
    for path in some_originals:
        fast = predictor.predict(path, heatmap=True).heatmap
        reference = torch_predictor.predict(path, heatmap=True).heatmap
        assert fast.shape == reference.shape
        assert np.abs(fast - reference).max() < 0.02, path.name
        if not reference.any():  # a borderline film's empty map: both routes must find it empty
            assert not fast.any(), path.name
            continue
        assert np.corrcoef(fast.ravel(), reference.ravel())[0, 1] > 0.999, path.name


# Films the map read before the swish left empty (confident ones of both labels, one in fifteen):
# the map is now the class activation map, whose sum is the label's logit less the bias.
CONFIDENT_FILMS = ("NORMAL/IM-0283-0001.jpeg", "NORMAL/NORMAL2-IM-0622-0001.jpeg", "NORMAL/NORMAL2-IM-0601-0001.jpeg",
                   "PNEUMONIA/person51_bacteria_240.jpeg", "PNEUMONIA/person1034_bacteria_2968.jpeg")


def test_confident_films_get_a_map_with_heat(predictor: Predictor, chest_xray: Path, originals: Path) -> None:
    """A film the model is sure of has regions that drove its label: its map is never empty."""
    films = [chest_xray / "train" / name for name in CONFIDENT_FILMS] + [originals / "NORMAL" / "IM-0283-0001.jpeg"]
    for path, result in zip(films, predictor.predict_many(films, heatmap=True)):
        assert min(result.probability, 1.0 - result.probability) < 0.05, (path.name, result.probability)
        assert result.heatmap.max() > 0.5 and result.heatmap.std() > 0.05, path.name


def test_overlay_blends_grey_and_colour() -> None:
    grey = np.tile(np.arange(0, 200, dtype=np.uint8), (100, 1))
    heat = upsample_map(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32), grey.shape)
    assert heat.shape == grey.shape and heat.min() >= 0 and heat.max() <= 1
    plain = np.asarray(overlay_heatmap(grey, heat, alpha=0.0))
    assert plain.shape == (100, 200, 3) and (plain == grey[..., None]).all()
    coloured = np.asarray(overlay_heatmap(grey, heat, alpha=1.0))
    assert (coloured[..., 0] != coloured[..., 2]).any()  # jet: red and blue differ where the map is hot or cold
    resized = overlay_heatmap(grey, np.zeros((7, 7), dtype=np.float32), alpha=0.5)
    assert resized.size == (200, 100)


def test_map_explains_the_predicted_class(predictor: Predictor, normal_original: Path, pneumonia_original: Path) -> None:
    """A film labelled NORMAL gets the map of what lowered the pneumonia score, not a stretched-out
    map of faint evidence for pneumonia; a film labelled PNEUMONIA, the map of what raised it."""
    from pneumoscope.inference.explain import grad_cam_from_activation
    from pneumoscope.inference.prepare import prepare_image

    if predictor.backend != "onnxruntime":
        pytest.skip("onnxruntime not installed")
    network = predictor.scorer.wait_for_network()
    for path, label in ((normal_original, "NORMAL"), (pneumonia_original, "PNEUMONIA")):
        result = predictor.predict(path, heatmap=True)
        assert result.label == label
        pixels = prepare_image(path, predictor.image_size, keep_display=False).pixels[None]
        activation = predictor.scorer.run(["cam_activation"], pixels)[0]
        toward_pneumonia = grad_cam_from_activation(network.net, activation)  # no decision: +logit
        shown = grad_cam_from_activation(network.net, activation, predictor.decision_logit)
        if label == "PNEUMONIA":
            np.testing.assert_allclose(shown, toward_pneumonia, atol=1e-6)
        else:
            assert np.corrcoef(shown.ravel(), toward_pneumonia.ravel())[0, 1] < 0.5, "NORMAL map is the pneumonia map"
