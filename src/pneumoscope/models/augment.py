"""Augmentation of whole batches on tensors.

Applied after collation, on (B, 1, S, S) float pixels in [0, 255], so one call costs a few
vectorised ops instead of B Python-level transforms (MONAI's dictionary transforms are
per-sample; at ~10 images/s a second of Python per batch would be visible). Each image gets its
own random geometry and intensity: the sealed test radiographs differ in exposure, contrast,
position and scale from the training ones, and the model must not care.
"""

from __future__ import annotations

import math

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pneumoscope.config import AugmentConfig


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """A randomly transformed copy of ``x`` (B, 1, H, W) with values in [0, 255]."""
    if not cfg.enabled:
        return x
    # Pixels stay float32 under bf16 autocast: blurring and resampling in bf16 would quantise them.
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _augment(x.float(), cfg, generator)


def _augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    n = x.shape[0]
    x = x / 255.0

    # Geometry. A window of a random share of the area and a random width/height, placed anywhere
    # inside the film (random-resized-crop), then rotation, isotropic scale, translation and an
    # optional flip. theta maps output to input coordinates, so a window of fraction f is scale f.
    # Draw order kept from before the window existed, so older configs train as they did.
    angle = _uniform(n, -cfg.rotate_degrees, cfg.rotate_degrees, generator) * math.pi / 180
    scale = 1.0 + _uniform(n, -cfg.scale, cfg.scale, generator)
    shift = _uniform(2 * n, -cfg.translate, cfg.translate, generator).view(n, 2) * 2
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    fx = fy = torch.ones(n)
    if cfg.min_area < 1.0 or cfg.aspect > 1.0:
        area = _uniform(n, cfg.min_area, 1.0, generator)
        log_aspect = math.log(cfg.aspect)
        ratio = torch.exp(_uniform(n, -log_aspect, log_aspect, generator))
        fx, fy = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        room = torch.stack([1 - fx, 1 - fy], 1)
        shift = shift + _uniform(2 * n, -1, 1, generator).view(n, 2) * room
    fx, fy = fx / scale, fy / scale
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos * fx * flip, -sin * fy, shift[:, 0]], 1), torch.stack([sin * fx * flip, cos * fy, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=cfg.padding, align_corners=False)

    # Resolution loss on some images: area-downsample, then bilinear back up.
    if cfg.low_res_prob > 0:
        side = x.shape[-1]
        chosen = torch.nonzero(torch.rand(n, generator=generator) < cfg.low_res_prob).flatten()
        factors = _uniform(len(chosen), cfg.low_res_min, 1.0, generator)
        if len(chosen):
            x = x.clone()
        for index, factor in zip(chosen.tolist(), factors.tolist()):
            small = max(8, round(side * factor))
            reduced = F.interpolate(x[index : index + 1], size=(small, small), mode="area")
            x[index : index + 1] = F.interpolate(reduced, size=(side, side), mode="bilinear", align_corners=False)

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
    if cfg.jpeg_prob > 0:  # drawn last, so configs without it train exactly as before
        x = _recompress(x.clamp(0.0, 1.0), cfg, generator)
    return (x.clamp(0.0, 1.0) * 255.0).contiguous(memory_format=torch.channels_last)


def _recompress(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """JPEG-encode a random share of the batch (values in [0, 1]) at random qualities, by Pillow's
    libjpeg: the artefacts are those of a real encoder, which no tensor op reproduces."""
    n = x.shape[0]
    chosen = torch.nonzero(torch.rand(n, generator=generator) < cfg.jpeg_prob).flatten().tolist()
    qualities = torch.randint(cfg.jpeg_quality_min, 96, (n,), generator=generator).tolist()
    if not chosen:
        return x
    x = x.clone()
    for index in chosen:
        grey = (x[index, 0].detach().cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(grey).save(buffer, format="JPEG", quality=int(qualities[index]))
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"), dtype=np.float32)
        x[index, 0] = torch.from_numpy(decoded / 255.0).to(x.dtype)
    return x
