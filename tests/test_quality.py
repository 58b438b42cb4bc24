"""The bundled model is as good as its card says, measured through the code users run.

A correctly hashed but untrained (or wrongly trained) model would pass every file check; this
test scores the model's own patient-level validation split through the Predictor (ONNX Runtime,
as ``predict`` and the app do) and holds it to the figures its card publishes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from pneumoscope.data.collection import read_manifest
from pneumoscope.data.images import load_image
from pneumoscope.inference.predictor import Predictor

TOLERANCE = 0.002
"""ONNX Runtime's fused kernels round differently from the PyTorch pass that wrote the card
(logits agree to a few 1e-5): enough to move one film across the threshold, 1/202 = 0.005 of
specificity at most, which is why the specificity check allows one film."""


def test_bundled_model_reaches_its_card_on_validation(predictor: Predictor, model_path: Path) -> None:
    meta = json.loads((model_path / "model.json").read_text(encoding="utf-8"))
    card = (model_path / "MODEL_CARD.md").read_text(encoding="utf-8")
    published = meta["validation"]
    # The card prints the same figures as model.json.
    row = f"| {published['auc']:.4f} | {100 * published['accuracy']:.1f} % | {100 * published['sensitivity']:.1f} % | " \
          f"{100 * published['specificity']:.1f} % |"
    assert row in card, row

    records = [r for r in read_manifest(model_path / "split_manifest.csv") if r.split == "val"]
    assert len(records) == published["n"]
    labels = np.array([r.label for r in records])
    pixels = np.stack([load_image(r.path, predictor.image_size) for r in records])
    probs = predictor.score_pixels(pixels).probs
    predicted = probs >= predictor.threshold
    auc = roc_auc_score(labels, probs)
    specificity = float(np.mean(~predicted[labels == 0]))
    sensitivity = float(np.mean(predicted[labels == 1]))
    assert auc >= published["auc"] - TOLERANCE, (auc, published["auc"])
    assert specificity >= published["specificity"] - 1.0 / published["n_normal"] - 1e-9, (specificity, published)
    assert sensitivity >= published["sensitivity"] - 1.0 / published["n_pneumonia"] - 1e-9, (sensitivity, published)
    # And the model is far from chance: a random network scores about 0.5 here.
    assert auc > 0.95
