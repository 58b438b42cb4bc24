"""The training features' distribution, fitted once with the model: what "far from any chest X-ray
it was trained on" means to the out-of-distribution check (``inference/ood``).

Fitted by ``finalize.finalize`` and stored in ``ood.safetensors``; read back at inference, where
:func:`mahalanobis` measures each image's distance from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from pneumoscope.config import OodConfig

DISTANCE_QUANTILE = 0.995


def fit_zones(
    clean: np.ndarray, stressed: np.ndarray, originals: np.ndarray | None, config: "OodConfig"
) -> dict[str, Any]:
    """The caution and refusal lines on the feature distance, and the rates they give.

    - caution: the edge of the training series, ``caution_quantile`` of clean validation distances;
    - refusal: ``refuse_margin`` beyond the farther of the stressed pool's ``refuse_quantile`` and
      the farthest full-resolution original, so the shifts the model is built to survive and the
      files users really send are answered, and a series never seen has room.
    Every non-X-ray corpus must then lie beyond the refusal line: ``bench/ood.py`` measures it and
    the tests hold it.
    """
    caution = float(np.quantile(clean, config.caution_quantile))
    edge = float(np.quantile(stressed, config.refuse_quantile)) if config.refuse_quantile is not None else caution
    if originals is not None and len(originals):
        edge = max(edge, float(originals.max()))
    refuse = max(caution, edge) * config.refuse_margin
    rates = {
        name: {"n": int(len(d)), "refused": float(np.mean(d > refuse)), "cautioned": float(np.mean((d > caution) & (d <= refuse))),
               "median_distance": float(np.median(d)), "max_distance": float(d.max())}
        for name, d in (("clean_validation", clean), ("stressed_pool", stressed), ("originals", originals))
        if d is not None and len(d)
    }
    return {"distance_threshold": refuse, "caution_distance": caution, "zones": rates,
            "rule": (f"caution beyond the {100 * config.caution_quantile:g}th percentile of clean validation distances; "
                     f"refusal at {config.refuse_margin:g} x the farthest of the caution line, "
                     + (f"the stressed pool's {100 * config.refuse_quantile:g}th percentile, "
                        if config.refuse_quantile is not None else "")
                     + "the farthest full-resolution original")}


LOG_SHIFT = 0.3
"""Added before the log: the features are means of swish outputs, never below -0.2785."""
LOG_FLOOR = 0.01
"""The log's argument never goes below this (no feature comes closer than 0.02 to the bound)."""
LOG_KEY = "log_shift"
"""Present in the statistics when the Gaussian was fitted on log features: the file says how its
distances are measured, so every reader (NumPy, the ONNX graph) applies the same transform."""


def transform_features(features: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """The features as the Gaussian in ``stats`` was fitted on them (``OodConfig.feature_transform``)."""
    features = np.asarray(features, dtype=np.float64)
    if LOG_KEY not in stats:
        return features
    return np.log(np.maximum(features + float(np.asarray(stats[LOG_KEY])), LOG_FLOOR))


def block_key(name: str, index: int) -> str:
    """``mean``/``precision`` for the first block (a single network's file reads as it always did),
    ``mean.1``/``precision.1``... for the next members of an ensemble."""
    return name if index == 0 else f"{name}.{index}"


def ood_blocks(blocks: list[int] | None, members: int | None) -> list[int] | None:
    """The feature blocks the check is fitted on: the first ``members`` of an ensemble's
    (``OodConfig.members``). ``mahalanobis`` reads as many leading blocks as the statistics hold, so
    the Predictor and the ONNX graph measure the same distance from the full feature vector."""
    if members is None:
        return blocks
    available = len(blocks) if blocks else 1
    if members > available:
        raise ValueError(f"ood.members is {members}, but the network has {available} member(s)")
    return blocks[:members] if blocks else None


def fit_feature_model(
    train_features: np.ndarray, val_features: np.ndarray, blocks: list[int] | None = None, log: bool = False
) -> tuple[dict[str, "torch.Tensor"], dict]:
    """Mean and shrunk inverse covariance of training features, per block; the distance threshold.

    ``blocks``: the widths of the members' features side by side (an ensemble); each member's
    block gets its own Gaussian, since a joint covariance of all of them would be 4x the file and
    the members' features are fitted separately anyway. The distance is the root mean square of
    the blocks' Mahalanobis distances, so an ensemble of one measures what one network did.

    The threshold is the 99.5th percentile of the *validation* distances (held-out patients:
    training images sit closer to the mean than new ones would), so about 0.5 % of genuine
    validation X-rays are flagged by construction; the model card reports the measured rate.
    """
    import torch
    from sklearn.covariance import LedoitWolf

    stats: dict[str, torch.Tensor] = {LOG_KEY: torch.tensor(LOG_SHIFT, dtype=torch.float32)} if log else {}
    fitted = transform_features(train_features, stats)
    start = 0
    for index, width in enumerate(blocks or [train_features.shape[1]]):
        estimator = LedoitWolf().fit(fitted[:, start : start + width])
        stats[block_key("mean", index)] = torch.from_numpy(estimator.location_.astype(np.float32))
        stats[block_key("precision", index)] = torch.from_numpy(estimator.precision_.astype(np.float32))
        start += width
    if start != train_features.shape[1]:
        raise ValueError(f"feature blocks {blocks} do not add up to {train_features.shape[1]} features")
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


def fit_members_check(
    train_features: np.ndarray, val_features: np.ndarray, blocks: list[int] | None, members: int | None,
    log: bool = False,
) -> tuple[dict[str, "torch.Tensor"], dict]:
    """``fit_feature_model`` on the blocks of the first ``members`` (``ood_blocks``), from the full
    feature vectors: what finalize fits and bench/ood_fit.py compares."""
    chosen = ood_blocks(blocks, members)
    width = sum(chosen) if chosen else train_features.shape[1]
    return fit_feature_model(train_features[:, :width], val_features[:, :width], chosen, log=log)


def stat_blocks(stats: dict[str, Any]) -> list[tuple[Any, Any]]:
    """The (mean, precision) of each block, in order."""
    blocks = []
    while block_key("mean", len(blocks)) in stats:
        index = len(blocks)
        blocks.append((stats[block_key("mean", index)], stats[block_key("precision", index)]))
    return blocks


def mahalanobis(features: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """``stats``: torch tensors or numpy arrays (``mean``, ``precision``, per block; ``log_shift`` when
    fitted on log features). The root mean square of the blocks' distances."""
    squared = np.zeros(len(features), dtype=np.float64)
    features = transform_features(features, stats)
    start = 0
    blocks = stat_blocks(stats)
    for mean, precision in blocks:
        mean = np.asarray(mean, dtype=np.float64)
        precision = np.asarray(precision, dtype=np.float64)
        centred = features[:, start : start + len(mean)] - mean
        start += len(mean)
        # (c P) * c summed per row: one BLAS matrix product; einsum's three-operand loop is 30x slower
        squared += np.maximum(((centred @ precision) * centred).sum(axis=1), 0.0)
    return np.sqrt(squared / max(1, len(blocks)))
