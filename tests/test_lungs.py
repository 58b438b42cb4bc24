"""Where a heatmap's mass lies against the lung boxes (``evaluation/lungs.py``, ``bench/heatmap_lungs.py``):
the arithmetic on maps whose answer is known, lungs-finder on a real validation film, and Grad-CAM++
as the bench computes it against MONAI's own GradCAMpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscope.data.collection import read_manifest
from pneumoscope.data.images import decode_image
from pneumoscope.evaluation.lungs import LungBoxes, area_share, find_lung_boxes, mass_inside, peak_inside

SHAPE = (100, 120)
BOXES = LungBoxes(right=(10, 20, 30, 50), left=(70, 20, 30, 50), shape=SHAPE)


def test_a_map_inside_the_boxes_is_all_inside_and_one_outside_none() -> None:
    inside = BOXES.mask()
    assert inside.sum() == 2 * 30 * 50
    on_lungs = np.zeros(SHAPE, np.float32)
    on_lungs[30:60, 15:35] = 1.0  # within the right lung's box
    on_lungs[25:40, 75:95] = 0.5  # within the left lung's box
    assert mass_inside(on_lungs, inside) == pytest.approx(1.0)
    assert peak_inside(on_lungs, inside)
    on_heart = np.zeros(SHAPE, np.float32)
    on_heart[40:80, 45:65] = 1.0  # between the boxes: the mediastinum
    assert mass_inside(on_heart, inside) == 0.0
    assert not peak_inside(on_heart, inside)


def test_a_uniform_map_scores_the_boxes_area_and_half_and_half_scores_half() -> None:
    inside = BOXES.mask()
    assert mass_inside(np.ones(SHAPE), inside) == pytest.approx(area_share(inside)) == pytest.approx(3000 / 12000)
    half = np.zeros(SHAPE)
    half[30, 15] = half[90, 60] = 1.0  # one hot pixel in a box, one below both
    assert mass_inside(half, inside) == pytest.approx(0.5)
    assert np.isnan(mass_inside(np.zeros(SHAPE), inside)), "an empty map has nothing to place"
    with pytest.raises(ValueError):
        mass_inside(np.ones((10, 10)), inside)


def test_plausible_needs_both_boxes_big_enough_and_on_their_sides() -> None:
    assert BOXES.both and BOXES.plausible()
    assert not LungBoxes(BOXES.right, None, SHAPE).both
    assert not LungBoxes(BOXES.right, None, SHAPE).plausible()
    assert not LungBoxes(BOXES.left, BOXES.right, SHAPE).plausible(), "the lungs swapped sides"
    assert not LungBoxes(BOXES.right, (70, 20, 5, 5), SHAPE).plausible(), "a rib-sized box"
    # a missing lung adds nothing to the mask: the union is the one box
    assert LungBoxes(BOXES.right, None, SHAPE).mask().sum() == 30 * 50


def test_lungs_finder_finds_both_lungs_inside_a_real_validation_film(model_path: Path) -> None:
    row = next(r for r in read_manifest(model_path / "split_manifest.csv") if r.split == "val" and r.label == 1)
    grey = decode_image(row.path).grey
    found = find_lung_boxes(grey)
    assert found.shape == grey.shape and found.both
    for x, y, w, h in (found.right, found.left):
        assert 0 <= x and 0 <= y and w > 0 and h > 0
        assert x + w <= grey.shape[1] and y + h <= grey.shape[0]
    assert 0.0 < area_share(found.mask()) < 1.0


def test_grad_cam_pp_from_the_activation_is_monais_gradcampp() -> None:
    """The head-only Grad-CAM++ the predictor draws equals MONAI's GradCAMpp through hooks on the
    same network (its exp(score) factor aside, which the [0, 1] scaling removes)."""
    from monai.visualize import GradCAMpp

    from pneumoscope.config import ModelConfig
    from pneumoscope.inference.explain import _PredictedClassScore, _scaled, grad_cam_from_activation
    from pneumoscope.models.nets import PneumoNet

    torch.manual_seed(0)
    net = PneumoNet(ModelConfig(arch="simple_cnn", width=8), 64).eval()
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 1, 64, 64)).astype(np.float32))
    scorer = _PredictedClassScore(net).eval()
    scorer.decision = 0.0
    monai = GradCAMpp(nn_module=scorer, target_layers=f"net.{net.cam_layer}")
    # one film at a time: MONAI 1.6 multiplies exp(score) (B,) into (B, C, h, w) and fails for B > 1
    reference = torch.cat([monai.compute_map(pixels[i : i + 1], class_idx=0) for i in range(len(pixels))])
    with torch.no_grad():
        activation = net.cam_activation(pixels).numpy()
    ours = grad_cam_from_activation(net, activation, 0.0, method="gradcam++")
    np.testing.assert_allclose(ours, _scaled(reference.detach()[:, 0]), atol=1e-4)
    plain = grad_cam_from_activation(net, activation, 0.0)
    assert not np.allclose(ours, plain, atol=1e-3), "Grad-CAM++ came out as plain Grad-CAM"
    with pytest.raises(ValueError):
        grad_cam_from_activation(net, activation, 0.0, method="saliency")  # type: ignore[arg-type]


def test_the_caption_says_what_the_committed_measurement_found() -> None:
    """The sentence under a PNEUMONIA map (both languages) stands exactly when docs/heatmaps.json,
    written by bench/heatmap_lungs.py, found most of such maps' heat outside the lung boxes."""
    import json

    from pneumoscope.app.text import spanish
    from pneumoscope.config import HEATMAP_METHOD
    from pneumoscope.inference.explain import explanation
    from pneumoscope.inference.prediction import HEATMAP_OFF_LUNGS

    figures = json.loads((Path(__file__).resolve().parent.parent / "docs" / "heatmaps.json").read_text())
    labelled = figures["methods"][HEATMAP_METHOD]["labelled_pneumonia"]["found"]
    assert labelled["n"] > 100, "the measurement covers too few films to say anything"
    said = HEATMAP_OFF_LUNGS in explanation("PNEUMONIA")
    assert said == (labelled["mean"] < 0.5), (labelled["mean"], said)
    assert HEATMAP_OFF_LUNGS not in explanation("NORMAL")
    if said:
        assert "fuera de los campos pulmonares" in spanish(explanation("PNEUMONIA"))


def test_the_readme_quotes_the_committed_measurement() -> None:
    """The README's heatmap figures are docs/heatmaps.json's, so a rerun that moves them shows here."""
    import json

    from pneumoscope.config import HEATMAP_METHOD
    from pneumoscope.markdown import percent

    repo = Path(__file__).resolve().parent.parent
    figures = json.loads((repo / "docs" / "heatmaps.json").read_text())
    found = figures["methods"][HEATMAP_METHOD]["groups"]["PNEUMONIA"]["found"]
    section = (repo / "README.md").read_text(encoding="utf-8").split("### Where the heatmaps go", 1)[1].split("\n## ", 1)[0]
    for value in (found["mean"], found["chance"], figures["lungs_finder"]["both_found"]):
        assert percent(value) in section, percent(value)
    assert "bench/heatmap_lungs.py" in section and "docs/heatmaps/grid.png" in section
