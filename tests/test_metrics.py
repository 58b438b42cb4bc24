"""compute_metrics on hand-made cases whose answers are known without running the code."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from pneumoscope.evaluation.metrics import (
    bootstrap_ci,
    compute_metrics,
    expected_calibration_error,
    paired_bootstrap_difference,
    patient_resamples,
    weighted_auc,
)

# 4 NORMAL then 6 PNEUMONIA; at 0.5: NORMAL -> 3 cleared, 1 false alarm; PNEUMONIA -> 4 found, 2 missed.
KNOWN_LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
KNOWN_PROBS = np.array([0.1, 0.2, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95])


def test_known_confusion_matrix_and_rates() -> None:
    m = compute_metrics(KNOWN_LABELS, KNOWN_PROBS, 0.5, n_boot=50)
    assert m["confusion_matrix"] == [[3, 1], [2, 4]]
    assert (m["n"], m["n_normal"], m["n_pneumonia"]) == (10, 4, 6)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["sensitivity"] == pytest.approx(4 / 6)
    assert m["specificity"] == pytest.approx(3 / 4)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6))
    normal, pneumonia = m["per_class"]["NORMAL"], m["per_class"]["PNEUMONIA"]
    assert (normal["precision"], normal["recall"], normal["support"]) == pytest.approx((3 / 5, 3 / 4, 4))
    assert (pneumonia["precision"], pneumonia["recall"], pneumonia["support"]) == pytest.approx((4 / 5, 4 / 6, 6))
    # AUC by counting pairs: of the 24 (PNEUMONIA, NORMAL) pairs, 0.2 vs 0.2 is a tie (1/2),
    # 0.2 loses to 0.3 and 0.7, 0.4 and 0.6 lose to 0.7; the other 19 are won.
    assert m["auc"] == pytest.approx((19 + 0.5) / 24)


def test_probability_at_threshold_is_pneumonia() -> None:
    m = compute_metrics([0, 1], [0.3, 0.5], 0.5, n_boot=10)
    assert m["confusion_matrix"] == [[1, 0], [0, 1]]


def test_perfect_separation() -> None:
    labels = np.array([0] * 5 + [1] * 5)
    probs = np.linspace(0.05, 0.95, 10)
    m = compute_metrics(labels, probs, 0.5, n_boot=200)
    assert m["auc"] == 1.0 and m["accuracy"] == 1.0
    assert m["confusion_matrix"] == [[5, 0], [0, 5]]
    assert m["auc_ci95"] == [1.0, 1.0] and m["accuracy_ci95"] == [1.0, 1.0]


def test_inverted_and_uninformative_scores() -> None:
    labels = np.array([0, 0, 1, 1])
    assert compute_metrics(labels, [0.9, 0.8, 0.2, 0.1], 0.5, n_boot=10)["auc"] == 0.0
    assert compute_metrics(labels, [0.5] * 4, 0.5, n_boot=10)["auc"] == 0.5


def test_brier_known_values() -> None:
    assert compute_metrics([0, 1], [0.0, 1.0], 0.5, n_boot=10)["brier"] == 0.0
    assert compute_metrics([0, 1, 0, 1], [0.5] * 4, 0.5, n_boot=10)["brier"] == pytest.approx(0.25)


def test_ece_of_perfectly_calibrated_bins_is_zero() -> None:
    # 20 images at 0.25 with 5 pneumonia, 20 at 0.75 with 15: each bin's rate equals its probability.
    labels = np.array([1] * 5 + [0] * 15 + [1] * 15 + [0] * 5)
    probs = np.array([0.25] * 20 + [0.75] * 20)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)
    assert compute_metrics(labels, probs, 0.5, n_boot=10)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_weights_each_bin_by_its_share() -> None:
    # Half the images at 0.1 with 1 in 10 positive (calibrated), half at 0.9 with 5 in 10 (off by 0.4).
    labels = np.array([1] + [0] * 9 + [1] * 5 + [0] * 5)
    probs = np.array([0.1] * 10 + [0.9] * 10)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.5 * 0.0 + 0.5 * 0.4)


def test_bootstrap_is_seeded_and_contains_the_estimate() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(labels * 0.3 + rng.random(300) * 0.7, 0, 1)
    patients = [f"p{i // 3}" for i in range(300)]
    first = compute_metrics(labels, probs, 0.5, patients, n_boot=300, seed=7)
    again = compute_metrics(labels, probs, 0.5, patients, n_boot=300, seed=7)
    other = compute_metrics(labels, probs, 0.5, patients, n_boot=300, seed=8)
    assert first["auc_ci95"] == again["auc_ci95"] and first["accuracy_ci95"] == again["accuracy_ci95"]
    assert first["auc_ci95"] != other["auc_ci95"]
    assert first["auc_ci95"][0] <= first["auc"] <= first["auc_ci95"][1]
    assert first["accuracy_ci95"][0] <= first["accuracy"] <= first["accuracy_ci95"][1]
    assert first["n_patients"] == 100 and first["bootstrap"] == "patient-level"


def test_resamples_keep_a_patients_images_together() -> None:
    patients = ["a", "a", "b", "c", "c", "c"]
    weights = patient_resamples(patients, 6, n_boot=100, seed=0)
    assert weights.shape == (100, 6)
    assert np.all(weights[:, 0] == weights[:, 1])
    assert np.all((weights[:, 3] == weights[:, 4]) & (weights[:, 4] == weights[:, 5]))
    # Each resample draws as many patients as there are (3), counted once per patient.
    assert np.all(weights[:, [0, 2, 3]].sum(axis=1) == 3)


def test_patient_bootstrap_is_not_fooled_by_repeated_images() -> None:
    """Five identical radiographs of each patient carry no more evidence than one: the
    patient-level interval is exactly that of the single images, the image-level one is narrower."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 40)
    probs = np.clip(labels * 0.25 + rng.random(40) * 0.75, 0, 1)
    ids = [str(i) for i in range(40)]
    single = bootstrap_ci(labels, probs, 0.5, ids, n_boot=400, seed=1)
    repeated = bootstrap_ci(np.repeat(labels, 5), np.repeat(probs, 5), 0.5, list(np.repeat(ids, 5)), n_boot=400, seed=1)
    naive = bootstrap_ci(np.repeat(labels, 5), np.repeat(probs, 5), 0.5, None, n_boot=400, seed=1)
    assert repeated["auc_ci95"] == pytest.approx(single["auc_ci95"])
    assert repeated["accuracy_ci95"] == pytest.approx(single["accuracy_ci95"])
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(naive["auc_ci95"]) < 0.7 * width(repeated["auc_ci95"])


def test_vectorised_auc_equals_scikit_learn_with_weights() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 80)
    probs = np.round(rng.random(80), 1)  # many ties
    weights = patient_resamples([str(i // 2) for i in range(80)], 80, n_boot=30, seed=2)
    expected = [roc_auc_score(labels, probs, sample_weight=w) for w in weights]
    assert weighted_auc(labels, probs, weights) == pytest.approx(expected, abs=1e-12)


def test_single_class_resample_has_no_auc() -> None:
    assert np.isnan(weighted_auc(np.array([0, 1]), np.array([0.2, 0.8]), np.array([[2.0, 0.0]])))[0]


def test_paired_difference_of_a_model_with_itself_is_zero() -> None:
    labels, probs = KNOWN_LABELS, KNOWN_PROBS
    diff = paired_bootstrap_difference(labels, probs, probs, 0.5, 0.5, n_boot=100)
    for interval in diff.values():
        assert interval == [0.0, 0.0]
    better = paired_bootstrap_difference(labels, probs, labels * 0.8 + 0.1, 0.5, 0.5, n_boot=200)
    assert better["auc_diff_ci95"][0] >= 0 and better["accuracy_diff_ci95"][0] >= 0


@pytest.mark.parametrize(
    "labels, probs, message",
    [
        ([1, 1, 1], [0.2, 0.6, 0.9], "both NORMAL and PNEUMONIA"),
        ([0, 1], [0.2, 1.3], "within \\[0, 1\\]"),
        ([0, 1], [0.2], "equal-length"),
        ([0, 2], [0.2, 0.3], "0 \\(NORMAL\\) or 1"),
    ],
)
def test_unusable_inputs_are_refused(labels: list, probs: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(labels, probs, 0.5)
