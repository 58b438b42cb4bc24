"""The training features' distribution, fitted once with the model: what "far from any chest X-ray
it was trained on" means to the out-of-distribution check (``inference/ood``).

Fitted by ``training.finalize`` and stored in ``ood.safetensors``; read back at inference, where
:func:`mahalanobis` measures each image's distance from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

DISTANCE_QUANTILE = 0.995


def fit_feature_model(train_features: np.ndarray, val_features: np.ndarray) -> tuple[dict[str, "torch.Tensor"], dict]:
    """Mean and shrunk inverse covariance of training features; the distance threshold.

    The threshold is the 99.5th percentile of the *validation* distances (held-out patients:
    training images sit closer to the mean than new ones would), so about 0.5 % of genuine
    validation X-rays are flagged by construction; the model card reports the measured rate.
    """
    import torch
    from sklearn.covariance import LedoitWolf

    estimator = LedoitWolf().fit(train_features.astype(np.float64))
    mean = estimator.location_
    precision = estimator.precision_
    stats = {"mean": torch.from_numpy(mean.astype(np.float32)), "precision": torch.from_numpy(precision.astype(np.float32))}
    val_distance = mahalanobis(val_features, stats)
    train_distance = mahalanobis(train_features, stats)
    threshold = float(np.quantile(val_distance, DISTANCE_QUANTILE))
    info = {
        "distance_threshold": threshold,
        "val_flagged_rate": float(np.mean(val_distance > threshold)),
        "train_flagged_rate": float(np.mean(train_distance > threshold)),
        "distance_quantile": DISTANCE_QUANTILE,
    }
    return stats, info


def mahalanobis(features: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """``stats``: torch tensors or numpy arrays (``mean``, ``precision``)."""
    mean = np.asarray(stats["mean"], dtype=np.float64)
    precision = np.asarray(stats["precision"], dtype=np.float64)
    centred = features.astype(np.float64) - mean
    # (c P) * c summed per row: one BLAS matrix product; einsum's three-operand loop is 30x slower
    return np.sqrt(np.maximum(((centred @ precision) * centred).sum(axis=1), 0.0))
