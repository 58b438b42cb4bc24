"""The Python API: Predictor.load / predict / predict_many and pneumonia_prediction, on real originals."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _inference import colour_photo
from pneumoscope.config import CLASS_NAMES
from pneumoscope.data.images import ImageLoadError
from pneumoscope.inference.prediction import NOT_A_DIAGNOSIS, Prediction
from pneumoscope.inference.predictor import Predictor, pneumonia_prediction
from pneumoscope.inference.prepare import DISPLAY_MAX


def _check(prediction: Prediction, predictor: Predictor) -> None:
    assert prediction.label in CLASS_NAMES
    assert 0.0 < prediction.probability < 1.0
    assert prediction.threshold == pytest.approx(predictor.threshold)
    assert prediction.label == (CLASS_NAMES[1] if prediction.probability >= prediction.threshold else CLASS_NAMES[0])
    assert prediction.heatmap is None and prediction.overlay is None


@pytest.mark.parametrize("which", ["normal_original", "pneumonia_original"])
def test_every_input_kind_gives_the_same_probability(which: str, predictor: Predictor, tmp_path: Path, request) -> None:
    path: Path = request.getfixturevalue(which)
    # A JPEG file: path, bytes and a lazily opened PIL image all decode through the same DCT-scaled read.
    from_file = [predictor.predict(path), predictor.predict(str(path)), predictor.predict(path.read_bytes()),
                 predictor.predict(Image.open(path))]
    for result in from_file:
        _check(result, predictor)
        assert result.probability == pytest.approx(from_file[0].probability, abs=1e-5)
        assert result.label == from_file[0].label and result.is_chest_xray == from_file[0].is_chest_xray
    assert from_file[0].is_chest_xray, from_file[0].warnings
    # The full-resolution pixels as an array, as PNG bytes, as a PNG path and as a decoded PIL image.
    pixels = np.asarray(Image.open(path).convert("L"))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png = tmp_path / "copy.png"
    png.write_bytes(buffer.getvalue())
    full = [predictor.predict(pixels), predictor.predict(np.stack([pixels] * 3, axis=-1)),
            predictor.predict(buffer.getvalue()), predictor.predict(png), predictor.predict(Image.fromarray(pixels))]
    for result in full:
        _check(result, predictor)
        assert result.probability == pytest.approx(full[0].probability, abs=1e-5)
    # The image as read is kept for display, grey and at most DISPLAY_MAX a side.
    assert full[0].image.dtype == np.uint8 and full[0].image.ndim == 2
    assert max(full[0].image.shape) <= DISPLAY_MAX


def test_predict_many_equals_predict(predictor: Predictor, some_originals: list[Path]) -> None:
    one_by_one = [predictor.predict(path) for path in some_originals]
    batched = predictor.predict_many(some_originals, batch_size=4)  # 4 + 2: a partial last batch
    assert len(batched) == len(one_by_one)
    for single, many in zip(one_by_one, batched):
        assert many.probability == pytest.approx(single.probability, abs=1e-5)
        assert (many.label, many.is_chest_xray) == (single.label, single.is_chest_xray)
        assert many.ood_distance == pytest.approx(single.ood_distance, rel=1e-4)


def test_a_colour_photo_is_not_a_chest_xray(predictor: Predictor) -> None:
    result = predictor.predict(colour_photo())
    assert result.is_chest_xray is False
    assert result.label in CLASS_NAMES  # still computed, but flagged
    assert any("colour" in warning for warning in result.warnings)
    assert result.warnings[-1] == NOT_A_DIAGNOSIS


def test_an_absurd_shape_is_not_a_chest_xray(predictor: Predictor) -> None:
    strip = np.tile(np.linspace(0, 255, 1600, dtype=np.uint8), (400, 1))  # 4:1, grey
    result = predictor.predict(strip)
    assert result.is_chest_xray is False
    assert any("aspect" in warning for warning in result.warnings)


def test_a_large_array_is_kept_small_for_display(predictor: Predictor, normal_original: Path) -> None:
    big = np.asarray(Image.open(normal_original).convert("L").resize((2400, 1800)))
    result = predictor.predict(big)
    assert result.image.shape == (768, 1024)


def test_result_is_json_ready(predictor: Predictor, pneumonia_original: Path) -> None:
    result = predictor.predict(pneumonia_original)
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {"label", "probability", "threshold", "is_chest_xray", "xray_check", "caution", "warnings",
                         "ood_distance", "subtype", "p_bacterial", "subtype_pattern"}
    assert data["xray_check"] in ("pass", "caution") and (data["caution"] is None) == (data["xray_check"] == "pass")
    assert "heatmap" not in repr(result)


def test_unreadable_input_raises_a_clear_error(predictor: Predictor) -> None:
    with pytest.raises(ImageLoadError, match="not a readable image"):
        predictor.predict(b"this is not an image")
    with pytest.raises(ImageLoadError, match="not found"):
        predictor.predict("/nonexistent/chest.png")


def test_pneumonia_prediction_is_the_predictor(model_path: Path, predictor: Predictor, normal_original: Path) -> None:
    result = pneumonia_prediction(normal_original, model=model_path)
    assert isinstance(result, Prediction)
    assert result.probability == pytest.approx(predictor.predict(normal_original).probability, abs=1e-5)


def test_unknown_backend_is_refused(model_path: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        Predictor.load(model_path, backend="tensorflow")  # type: ignore[arg-type]


def test_cached_export_answers_before_pytorch_is_imported(predictor: Predictor, pneumonia_original: Path) -> None:
    """The web app's start (issue 13): from the cached ONNX export, a prediction needs neither
    PyTorch nor the training stack; heatmaps follow once the network is loaded, identical to the
    ordinary predictor's."""
    import subprocess
    import sys

    assert predictor.backend == "onnxruntime"  # the export is cached by now
    code = (
        "import sys\n"
        "from pneumoscope.inference.predictor import Predictor\n"
        "p = Predictor.load(heatmaps='background')\n"
        f"r = p.predict({str(pneumonia_original)!r})\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'monai', 'gradio') if m in sys.modules)\n"
        "print(r.label, repr(r.probability), p.can_explain, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    label, probability, can_explain, heavy = out.stdout.strip().split(" ", 3)
    expected = predictor.predict(pneumonia_original)
    assert label == expected.label and float(probability) == pytest.approx(expected.probability, abs=1e-6)
    assert can_explain == "True" and heavy == "[]"

    lazy = Predictor.load(heatmaps="background")
    assert lazy.scorer.net is None and not lazy.network_loaded and lazy.can_explain
    lazy.load_heatmap_network()
    with_map, reference = lazy.predict(pneumonia_original, heatmap=True), predictor.predict(pneumonia_original, heatmap=True)
    assert with_map.probability == reference.probability and with_map.subtype == reference.subtype
    np.testing.assert_allclose(with_map.heatmap, reference.heatmap, atol=1e-5)
