"""Run a network over uint8 images in batches: logits and, on request, penultimate features.

Shared by training (threshold, calibration and OOD fitting) and the Predictor's PyTorch path.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from pneumoscope.models.nets import PneumoNet


BatchRun = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
"""One batch, float32 (B, 1, S, S), to its logits (B,) and features (B, D) or None."""


def in_batches(
    run: BatchRun, images: np.ndarray, batch_size: int, features: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """``run`` over uint8 (N, S, S) images, ``batch_size`` at a time; logits (N,), features (N, D) or None.

    The float copy is made by numpy, so a read-only memory-mapped cache never reaches the back-end as is.
    """
    logits, feats = [], []
    for start in range(0, len(images), batch_size):
        logit, feature = run(np.asarray(images[start : start + batch_size], dtype=np.float32)[:, None])
        logits.append(np.asarray(logit).reshape(-1))
        if features:
            feats.append(feature)
    return (np.concatenate(logits) if logits else np.zeros(0, np.float32),
            (np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)) if features else None)


@torch.inference_mode()
def forward_images(
    net: PneumoNet, images: np.ndarray, batch_size: int = 16, features: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """``images``: uint8 (N, S, S). Returns logits (N,) and features (N, D) or None.

    Batches of 16: at 64 the activations (hundreds of MB) cost more in page faults than in
    arithmetic unless the heap keeps freed memory (pneumoscope/heap.py); 16 is as fast either way.
    """
    net.eval()

    def run(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        tensor = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        if not features:
            return net(tensor).float().numpy(), None
        embedded = net.embed(tensor)
        return net.classify(embedded).float().numpy(), embedded.float().numpy()

    return in_batches(run, images, batch_size, features)


@torch.inference_mode()
def subtype_logits(net: PneumoNet, features: np.ndarray) -> np.ndarray:
    """The subtype head's logits (N,) from penultimate features (N, D): one small matrix product."""
    net.eval()
    return net.subtype(torch.from_numpy(np.asarray(features, dtype=np.float32))).float().numpy()
