"""Grad-CAM: a map of the displayed image's size, not constant, from the one pass that scores."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from _inference import model_path, predictor, torch_predictor  # noqa: F401
from pneumoscope.inference.explain import overlay_heatmap, upsample_map
from pneumoscope.inference.predictor import Predictor


def test_heatmap_has_the_image_size_and_is_not_constant(predictor: Predictor, pneumonia_original: Path) -> None:
    result = predictor.predict(pneumonia_original, heatmap=True)
    assert result.heatmap is not None and result.image is not None
    assert result.heatmap.shape == result.image.shape
    assert result.heatmap.dtype == np.float32
    assert 0.0 <= result.heatmap.min() and result.heatmap.max() <= 1.0
    assert result.heatmap.std() > 0.05, "the map is (nearly) constant"
    assert result.overlay.mode == "RGB"
    assert result.overlay.size == (result.image.shape[1], result.image.shape[0])


def test_heatmap_comes_from_the_scoring_pass(predictor: Predictor, torch_predictor: Predictor, normal_original: Path) -> None:
    """One network forward gives the probability, the OOD distance and the map: ONNX is not run too."""
    forwards = []  # every pass through the network starts with its normalisation layer
    handle = predictor._net.normalize.register_forward_hook(lambda *args: forwards.append(1))
    session = predictor._session
    runs = []

    class Counting:
        def __getattr__(self, name):
            return getattr(session, name)

        def run(self, *args, **kwargs):
            runs.append(1)
            return session.run(*args, **kwargs)

    predictor._session = Counting() if session is not None else None
    try:
        with_map = predictor.predict(normal_original, heatmap=True)
    finally:
        handle.remove()
        predictor._session = session
    assert len(forwards) == 1 and not runs
    without = torch_predictor.predict(normal_original)
    assert with_map.probability == pytest.approx(without.probability, abs=1e-5)
    assert with_map.ood_distance == pytest.approx(without.ood_distance, rel=1e-5)
    assert with_map.is_chest_xray == without.is_chest_xray


def test_heatmap_costs_little_more_than_scoring(predictor: Predictor, torch_predictor: Predictor, pneumonia_original: Path) -> None:
    """The backward pass stops at the CAM layer: a map costs well under twice a PyTorch scoring
    pass (a full backward through the network would cost about three times)."""
    prepared = [predictor.prepare(pneumonia_original)]

    def median(function, repeats: int = 7) -> float:
        function()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    scoring = median(lambda: torch_predictor.predict_prepared(prepared))
    mapping = median(lambda: predictor.predict_prepared(prepared, heatmap=True))
    assert mapping < 2.0 * scoring, f"heatmap {mapping * 1000:.0f} ms vs scoring {scoring * 1000:.0f} ms"


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
