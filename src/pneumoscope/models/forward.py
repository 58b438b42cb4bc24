"""Run a network over uint8 images in batches: logits and, on request, penultimate features.

Shared by training (threshold, calibration and OOD fitting) and the Predictor's PyTorch path.
"""

from __future__ import annotations

import numpy as np
import torch

from pneumoscope.models.nets import PneumoNet


@torch.inference_mode()
def forward_images(
    net: PneumoNet, images: np.ndarray, batch_size: int = 16, features: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """``images``: uint8 (N, S, S). Returns logits (N,) and features (N, D) or None.

    Batches of 16: at 64 the activations (hundreds of MB) cost more in page faults than in
    arithmetic unless the heap keeps freed memory (pneumoscope/heap.py); 16 is as fast either way.
    """
    net.eval()
    logits, feats = [], []
    for start in range(0, len(images), batch_size):
        # The float copy is made by numpy, so a read-only memory-mapped cache never reaches torch as is.
        batch = torch.from_numpy(np.asarray(images[start : start + batch_size], dtype=np.float32)).unsqueeze(1)
        batch = batch.contiguous(memory_format=torch.channels_last)
        if features:
            embedded = net.embed(batch)
            feats.append(embedded.float().numpy())
            logits.append(net.classify(embedded).float().numpy())
        else:
            logits.append(net(batch).float().numpy())
    return np.concatenate(logits) if logits else np.zeros(0), (np.concatenate(feats) if features else None)


@torch.inference_mode()
def subtype_logits(net: PneumoNet, features: np.ndarray) -> np.ndarray:
    """The subtype head's logits (N,) from penultimate features (N, D): one small matrix product."""
    net.eval()
    return net.subtype(torch.from_numpy(np.asarray(features, dtype=np.float32))).float().numpy()
