"""Augmentation of whole batches on tensors.

Applied after collation, on (B, 1, S, S) float pixels in [0, 255], so one call costs a few
vectorised ops instead of B Python-level transforms (MONAI's dictionary transforms are
per-sample; at ~10 images/s a second of Python per batch would be visible). Each image gets its
own random geometry and intensity: the sealed test radiographs differ in exposure, contrast,
position and scale from the training ones, and the model must not care.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pneumoscope.config import AugmentConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """A randomly transformed copy of ``x`` (B, 1, H, W) with values in [0, 255]."""
    if not cfg.enabled:
        return x
    n = x.shape[0]
    x = x / 255.0

    # Geometry: rotation, isotropic scale, translation, optional horizontal flip; border replicated.
    angle = _uniform(n, -cfg.rotate_degrees, cfg.rotate_degrees, generator) * math.pi / 180
    scale = 1.0 + _uniform(n, -cfg.scale, cfg.scale, generator)
    shift = _uniform(2 * n, -cfg.translate, cfg.translate, generator).view(n, 2) * 2
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)

    # Exposure (gamma) and contrast around each image's mean.
    gamma = torch.exp(_uniform(n, -cfg.gamma, cfg.gamma, generator)).view(n, 1, 1, 1)
    x = x.clamp(1e-4, 1.0) ** gamma
    contrast = (1.0 + _uniform(n, -cfg.contrast, cfg.contrast, generator)).view(n, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean

    # Blur some images (softer detectors, other resizing), then add sensor noise.
    if cfg.blur_prob > 0:
        chosen = torch.rand(n, generator=generator) < cfg.blur_prob
        if chosen.any():
            kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
            kernel = (kernel[:, None] * kernel[None, :]) / 256.0
            blurred = F.conv2d(F.pad(x[chosen], (2, 2, 2, 2), mode="replicate"), kernel.view(1, 1, 5, 5).to(x.dtype))
            x = x.clone()
            x[chosen] = blurred
    if cfg.noise_std > 0:
        sigma = _uniform(n, 0, cfg.noise_std, generator).view(n, 1, 1, 1)
        x = x + torch.randn(x.shape, generator=generator) * sigma
    return (x.clamp(0.0, 1.0) * 255.0).contiguous(memory_format=torch.channels_last)
