"""ONNX export: a self-describing file that ONNX Runtime scores exactly as PyTorch does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pneumoscope.errors import HeatmapUnavailableError
from pneumoscope.inference.export import export_onnx
from pneumoscope.inference.onnx import read_contract
from pneumoscope.inference.predictor import Predictor
from pneumoscope.models.bundle import ModelLoadError

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(str(model_path), tmp_path_factory.mktemp("onnx") / "pneumoscope.onnx")


def test_export_is_a_valid_self_describing_model(exported: Path, torch_predictor: Predictor) -> None:
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["pixels"]
    outputs = [o.name for o in model.graph.output]
    assert outputs[:3] == ["logit", "subtype_logit", "features"]  # the bundled model has the subtype head
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch axis
    contract = read_contract(model)
    assert contract["image_size"] == torch_predictor.image_size
    assert contract["threshold"] == pytest.approx(torch_predictor.threshold)
    assert contract["temperature"] == pytest.approx(torch_predictor.temperature)
    assert contract["class_names"] == ["NORMAL", "PNEUMONIA"]
    assert contract["subtype"]["threshold"] == pytest.approx(torch_predictor.subtype_threshold)
    assert contract["subtype"]["temperature"] == pytest.approx(torch_predictor.subtype_temperature)
    assert "0..255" in contract["preprocessing"]


def test_onnx_runtime_and_pytorch_agree_on_real_images(
    predictor: Predictor, torch_predictor: Predictor, some_originals: list[Path], chest_xray: Path
) -> None:
    assert predictor.backend == "onnxruntime" and torch_predictor.backend == "torch"
    files = some_originals + sorted((chest_xray / "val" / "PNEUMONIA").iterdir())[:2]
    prepared = [predictor.prepare(path) for path in files]
    pixels = np.stack([item.pixels for item in prepared])
    ort, eager = predictor.scorer.score(pixels), torch_predictor.scorer.score(pixels)
    (ort_logits, ort_subtype, ort_distances) = (ort.logits, ort.subtype, ort.distances)
    (torch_logits, torch_subtype, torch_distances) = (eager.logits, eager.subtype, eager.distances)
    # Fused kernels round differently: logits agree to a few 1e-5, and a logit difference d moves
    # the probability by at most d / (4 * temperature), so 4e-4 keeps probabilities within 1e-4.
    np.testing.assert_allclose(ort_logits, torch_logits, atol=4e-4 * min(1.0, torch_predictor.temperature))
    np.testing.assert_allclose(ort_subtype, torch_subtype, atol=4e-4 * min(1.0, torch_predictor.subtype_temperature))
    if torch_distances is not None:
        np.testing.assert_allclose(ort_distances, torch_distances, rtol=1e-4)
    for ort_result, torch_result in zip(predictor.predict_prepared(prepared), torch_predictor.predict_prepared(prepared)):
        assert ort_result.probability == pytest.approx(torch_result.probability, abs=1e-4)
        assert (ort_result.label, ort_result.is_chest_xray) == (torch_result.label, torch_result.is_chest_xray)


def test_predictor_loads_the_exported_file_alone(exported: Path, torch_predictor: Predictor, some_originals: list[Path]) -> None:
    from_file = Predictor.load(exported)
    assert from_file.backend == "onnxruntime" and not from_file.can_explain
    assert from_file.threshold == pytest.approx(torch_predictor.threshold)
    for path in some_originals[:2] + some_originals[-2:]:
        a, b = from_file.predict(path), torch_predictor.predict(path)
        assert a.probability == pytest.approx(b.probability, abs=1e-4)
        assert a.is_chest_xray == b.is_chest_xray
        if b.ood_distance is not None:
            assert a.ood_distance == pytest.approx(b.ood_distance, rel=1e-4)
    with pytest.raises(HeatmapUnavailableError, match="model folder"):
        from_file.predict(some_originals[0], heatmap=True)


def test_an_onnx_file_not_from_pneumoscope_is_refused(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["logit"])], "foreign",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    with pytest.raises(ModelLoadError, match="not exported by pneumoscope"):
        Predictor.load(path)
