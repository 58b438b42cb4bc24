"""Grad-CAM for the pneumonia score, computed in the same pass that gives the probability.

Two routes give the same map. With ONNX Runtime (the default), the exported graph also returns
the Grad-CAM layer's activation, and :func:`grad_cam_from_activation` runs autograd through the
head above it alone (activation, pooling, classifier): one ONNX run plus microseconds, instead
of a PyTorch forward and backward pass. Without ONNX Runtime, MONAI's route below is used.

MONAI's :class:`monai.visualize.GradCAM` does the bookkeeping (hooks on the network's
``cam_layer``, channel weights from the mean gradient, ReLU). Two things keep it lean enough for
a ~50 ms budget on two CPU cores:

- the network's one forward pass gives the logit *and* the penultimate features (for the OOD
  check) as well as the map: a heatmap request never runs the model twice;
- the autograd graph starts at the CAM layer's input: nothing before it records a graph, and
  the backward pass runs through the head alone (a few layers) instead of the whole network.

The low-resolution map is then upsampled straight to the displayed image (no detour through the
network's square input: the square resize is a plain stretch, so coordinates map linearly).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from pneumoscope.models.nets import PneumoNet

DEFAULT_COLORMAP = "jet"
DEFAULT_ALPHA = 0.45


class _PneumoniaScore(nn.Module):
    """The net as MONAI expects a classifier, ``(B, C)`` scores: column 0 is the pneumonia logit.

    It also remembers the logit and the features of the last pass, so the caller gets the
    probability and the OOD distance from the very pass that produced the map.
    """

    def __init__(self, net: PneumoNet) -> None:
        super().__init__()
        self.net = net
        self.last_logit: torch.Tensor | None = None
        self.last_features: torch.Tensor | None = None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.net.embed(pixels)
        logit = self.net.classify(features)
        self.last_logit, self.last_features = logit.detach(), features.detach()
        return logit.unsqueeze(1)


@dataclass(frozen=True)
class CamResult:
    logits: np.ndarray
    """(B,) pneumonia logits."""
    features: np.ndarray
    """(B, D) penultimate features."""
    maps: np.ndarray
    """(B, h, w) float32 Grad-CAM at the CAM layer's resolution, scaled to [0, 1] per image."""


class GradCam:
    """Grad-CAM of the pneumonia logit over a :class:`PneumoNet`; thread-safe (one pass at a time)."""

    def __init__(self, net: PneumoNet) -> None:
        from monai.visualize import GradCAM  # imported here: monai costs seconds to import

        self.net = net
        self._scorer = _PneumoniaScore(net).eval()
        layer = dict(net.named_modules()).get(net.cam_layer)
        if layer is None:
            raise ValueError(f"the network has no layer named {net.cam_layer!r} for Grad-CAM")
        self._active = False
        layer.register_forward_pre_hook(self._start_graph_here)
        self._cam = GradCAM(nn_module=self._scorer, target_layers=f"net.{net.cam_layer}")
        self._lock = threading.Lock()

    def _start_graph_here(self, module: nn.Module, args: tuple) -> tuple | None:
        """Make the CAM layer's input a leaf that requires grad: the backward pass stops there."""
        if not self._active or not torch.is_grad_enabled():
            return None
        return (args[0].detach().requires_grad_(True), *args[1:])

    def __call__(self, pixels: np.ndarray) -> CamResult:
        """``pixels``: uint8 (B, S, S), the network's input."""
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).float().unsqueeze(1)
        with self._lock:
            self._active = True
            try:
                with torch.enable_grad():
                    raw = self._cam.compute_map(batch, class_idx=0)
            finally:
                self._active = False
            logits = self._scorer.last_logit.float().numpy()
            features = self._scorer.last_features.float().numpy()
        return CamResult(logits, features, _scaled(raw.detach()[:, 0].float()))


def _scaled(maps: torch.Tensor) -> np.ndarray:
    """Each map (B, h, w) onto [0, 1]; a flat map becomes zeros."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps)).numpy()


def grad_cam_from_activation(net: PneumoNet, activation: np.ndarray) -> np.ndarray:
    """Grad-CAM maps (B, h, w) in [0, 1] from the CAM layer's activation (B, C, h, w).

    The same arithmetic as MONAI's GradCAM (channel weights = mean gradient of the pneumonia
    logit over each channel's map; weighted sum; ReLU), with the gradient taken through the
    network's head alone. Thread-safe: no hooks, a fresh graph per call.
    """
    z = torch.from_numpy(np.ascontiguousarray(activation, dtype=np.float32)).requires_grad_(True)
    with torch.enable_grad():
        logit = net.classify(net.features_from_cam(z))
        (gradient,) = torch.autograd.grad(logit.sum(), z)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    return _scaled(torch.relu((weights * z.detach()).sum(dim=1)))


def upsample_map(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A low-resolution map (h, w) in [0, 1] -> (H, W) float32 in [0, 1], ``size`` = (H, W); bicubic, clipped."""
    tensor = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    up = F.interpolate(tensor, size=size, mode="bicubic", align_corners=False)[0, 0]
    return up.clamp_(0.0, 1.0).numpy()


@lru_cache(maxsize=8)
def _lut(colormap: str) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0).astype(np.float32)


def overlay_heatmap(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA, colormap: str = DEFAULT_COLORMAP
) -> Image.Image:
    """The grey image with the heatmap blended over it in colour, as an RGB PIL image.

    ``image``: uint8 (H, W) grey; ``heatmap``: float (H, W) in [0, 1] (resized to the image if
    its shape differs); ``alpha``: the colour's opacity, 0 (image only) to 1 (map only).
    """
    grey = np.asarray(image)
    if grey.ndim == 3:
        grey = np.asarray(Image.fromarray(grey).convert("L"))
    if heatmap.shape != grey.shape:
        heatmap = upsample_map(heatmap, grey.shape)
    alpha = float(np.clip(alpha, 0.0, 1.0))
    colour = _lut(colormap)[np.clip(np.rint(heatmap * 255.0), 0, 255).astype(np.uint8)]
    blended = grey[..., None].astype(np.float32) * (1.0 - alpha) + colour * alpha
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
