"""Grad-CAM for the predicted class, computed in the same pass that gives the probability.

The map explains the label the image received: for PNEUMONIA, the regions whose features raised
the pneumonia score; for NORMAL, those that lowered it. (A map of the pneumonia score on a film
scored 0.004 would stretch faint, meaningless evidence over the full colour range.) Each map is
scaled to its own strongest region, so colour says "where", relative to the rest of that image,
never "how much" across images; :func:`legend` and :func:`annotated` say so beside the picture.

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

from pneumoscope.config import CAM_METHODS, CamMethod
from pneumoscope.inference.prediction import HEATMAP_OFF_LUNGS
from pneumoscope.models.nets import PneumoNet

DEFAULT_COLORMAP = "jet"
DEFAULT_ALPHA = 0.45


def toward_predicted(logit: torch.Tensor, decision: float | None) -> torch.Tensor:
    """+1 where the image is labelled PNEUMONIA (logit at or above ``decision``), -1 where NORMAL:
    the sign that turns the pneumonia logit into the score of the predicted class. ``None``: +1."""
    if decision is None:
        return torch.ones_like(logit)
    return torch.where(logit.detach() >= decision, 1.0, -1.0).to(logit.dtype)


class _PredictedClassScore(nn.Module):
    """The net as MONAI expects a classifier, ``(B, 1)`` scores: the predicted class's score,
    +logit for an image labelled PNEUMONIA and -logit for one labelled NORMAL (MONAI's per-sample
    ``class_idx`` picks a column for the whole batch, so the sign is applied here instead).

    It also remembers the logit and the features of the last pass, so the caller gets the
    probability and the OOD distance from the very pass that produced the map.
    """

    def __init__(self, net: PneumoNet) -> None:
        super().__init__()
        self.net = net
        self.decision: float | None = None
        self.last_logit: torch.Tensor | None = None
        self.last_features: torch.Tensor | None = None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.net.embed(pixels)
        logit = self.net.classify(features)
        self.last_logit, self.last_features = logit.detach(), features.detach()
        return (toward_predicted(logit, self.decision) * logit).unsqueeze(1)


@dataclass(frozen=True)
class CamResult:
    logits: np.ndarray
    """(B,) pneumonia logits."""
    features: np.ndarray
    """(B, D) penultimate features."""
    maps: np.ndarray
    """(B, h, w) float32 Grad-CAM of each image's predicted class at the CAM layer's resolution,
    scaled to [0, 1] per image."""


class GradCam:
    """Grad-CAM of the predicted class over a :class:`PneumoNet`; thread-safe (one pass at a time)."""

    def __init__(self, net: PneumoNet) -> None:
        from monai.visualize import GradCAM  # imported here: monai costs seconds to import

        self.net = net
        self._lock = threading.Lock()
        self._cam = None
        if not hasattr(net, "cam_layer"):  # an ensemble: its CAM layer is every member's, stacked
            return
        self._scorer = _PredictedClassScore(net).eval()
        layer = dict(net.named_modules()).get(net.cam_layer)
        if layer is None:
            raise ValueError(f"the network has no layer named {net.cam_layer!r} for Grad-CAM")
        self._active = False
        layer.register_forward_pre_hook(self._start_graph_here)
        self._cam = GradCAM(nn_module=self._scorer, target_layers=f"net.{net.cam_layer}")

    def _start_graph_here(self, module: nn.Module, args: tuple) -> tuple | None:
        """Make the CAM layer's input a leaf that requires grad: the backward pass stops there."""
        if not self._active or not torch.is_grad_enabled():
            return None
        return (args[0].detach().requires_grad_(True), *args[1:])

    def __call__(self, pixels: np.ndarray, decision: float | None = None, method: CamMethod = "gradcam") -> CamResult:
        """``pixels``: uint8 (B, S, S), the network's input; ``decision``: the logit where the label
        turns PNEUMONIA (:func:`~pneumoscope.models.decision.decision_logit`); None explains the
        pneumonia score of every image. ``method``: see :func:`grad_cam_from_activation` (MONAI's
        hooks serve Grad-CAM on one network; every other case takes the head-only route)."""
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).float().unsqueeze(1)
        if self._cam is None or method != "gradcam":
            return self._from_stacked_activation(batch, decision, method)
        with self._lock:
            self._scorer.decision = decision
            self._active = True
            try:
                with torch.enable_grad():
                    raw = self._cam.compute_map(batch, class_idx=0)
            finally:
                self._active = False
            logits = self._scorer.last_logit.float().numpy()
            features = self._scorer.last_features.float().numpy()
        return CamResult(logits, features, _scaled(raw.detach()[:, 0].float()))

    def _from_stacked_activation(self, batch: torch.Tensor, decision: float | None,
                                 method: CamMethod = "gradcam") -> CamResult:
        """An ensemble has no single layer for MONAI's hooks: one forward pass to the stacked CAM
        activation, then :func:`grad_cam_from_activation`, MONAI's arithmetic through the head."""
        with torch.inference_mode():
            activation = self.net.cam_activation(batch)
            features = self.net.features_from_cam(activation)
            logits = self.net.classify(features)
        maps = grad_cam_from_activation(self.net, activation.numpy(), decision, method)
        return CamResult(logits.float().numpy(), features.float().numpy(), maps)


def _scaled(maps: torch.Tensor) -> np.ndarray:
    """Each map (B, h, w) onto [0, 1]; a flat map becomes zeros."""
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps)).numpy()


def grad_cam_from_activation(net: PneumoNet, activation: np.ndarray, decision: float | None = None,
                             method: CamMethod = "gradcam") -> np.ndarray:
    """Grad-CAM maps (B, h, w) in [0, 1] from the CAM layer's activation (B, C, h, w).

    ``method="gradcam"``: the same arithmetic as MONAI's GradCAM (channel weights = mean gradient
    of the predicted class's score over each channel's map; weighted sum; ReLU).
    ``method="gradcam++"``: MONAI's GradCAMpp (Chattopadhyay et al. 2018: each position's positive
    gradient weighted by ``g^2 / (2 g^2 + sum(A g^3))``), less its factor ``exp(score)``: positive
    and the same for the whole image, it changes nothing once the map is scaled to [0, 1], and it
    overflows for a confident film. Measured against the lung fields by ``bench/heatmap_lungs.py``.

    Either way the gradient is taken through the network's head alone. ``decision`` as for
    :class:`GradCam`. Thread-safe: no hooks, a fresh graph per call.
    """
    z = torch.from_numpy(np.ascontiguousarray(activation, dtype=np.float32)).requires_grad_(True)
    with torch.enable_grad():
        logit = net.classify(net.features_from_cam(z))
        score = toward_predicted(logit, decision) * logit
        (gradient,) = torch.autograd.grad(score.sum(), z)
    z = z.detach()
    if method == "gradcam":
        weights = gradient.mean(dim=(2, 3), keepdim=True)
    elif method == "gradcam++":
        squared = gradient.pow(2)
        denominator = 2 * squared + (z * gradient.pow(3)).sum(dim=(2, 3), keepdim=True)
        alpha = squared / (torch.where(denominator != 0.0, denominator, torch.ones_like(denominator)) + 1e-7)
        weights = (alpha * torch.relu(gradient)).sum(dim=(2, 3), keepdim=True)
    else:
        raise ValueError(f"unknown heatmap method {method!r}; known: {', '.join(CAM_METHODS)}")
    return _scaled(torch.relu((weights * z).sum(dim=1)))


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
    its shape differs); ``alpha``: the colour's opacity, 0 (image only) to 1 (map only). The blend
    is Pillow's (C, in 8 bits): about 2.5 ms on a 700 px display copy, against 8 ms in numpy.
    """
    grey = np.asarray(image)
    if grey.ndim == 3:
        grey = np.asarray(Image.fromarray(grey).convert("L"))
    if heatmap.shape != grey.shape:
        heatmap = upsample_map(heatmap, grey.shape)
    alpha = float(np.clip(alpha, 0.0, 1.0))
    # The map as palette indices, coloured by Pillow (numpy's fancy indexing of an RGB table costs
    # 15x more here), then blended over the grey image in C.
    colour = Image.fromarray((np.clip(heatmap, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "P")
    colour.putpalette(_lut8(colormap).tobytes())
    return Image.blend(Image.fromarray(grey).convert("RGB"), colour.convert("RGB"), alpha)


@lru_cache(maxsize=8)
def _lut8(colormap: str) -> np.ndarray:
    return np.rint(_lut(colormap)).astype(np.uint8)


def explanation(label: str) -> str:
    """What a map of an image labelled ``label`` shows, in words that are true of the picture; for
    PNEUMONIA, with what ``bench/heatmap_lungs.py`` measured of such maps (:data:`HEATMAP_OFF_LUNGS`)."""
    effect = "raised" if label == "PNEUMONIA" else "lowered"
    return (f"Grad-CAM for the label {label}: the regions whose features {effect} the pneumonia score, "
            "relative to this image's strongest region (where the model looked, not a map of disease)"
            + (f". {HEATMAP_OFF_LUNGS}" if label == "PNEUMONIA" else ""))


def legend(colormap: str = DEFAULT_COLORMAP, stops: int = 9) -> list[str]:
    """The colour map as ``stops`` CSS hex colours, weakest to strongest: a colour bar's gradient."""
    colours = _lut8(colormap)[np.linspace(0, 255, stops).round().astype(int)]
    return ["#%02x%02x%02x" % tuple(int(c) for c in colour) for colour in colours]


ANNOTATED_MIN_SIDE = 640
"""A saved heatmap is drawn at least this wide or high (small inputs are enlarged) so it can be read."""


def annotated(overlay: Image.Image, label: str, probability: float, threshold: float,
              colormap: str = DEFAULT_COLORMAP) -> Image.Image:
    """The overlay with what it means drawn under it: the label and probability, what the map
    explains, and a colour bar from weaker to stronger. What ``predict --heatmaps`` saves."""
    from PIL import ImageDraw, ImageFont

    scale = max(1.0, ANNOTATED_MIN_SIDE / max(overlay.size))
    if scale > 1.0:
        overlay = overlay.resize((round(overlay.width * scale), round(overlay.height * scale)), Image.Resampling.BILINEAR)
    width = overlay.width
    size = max(12, width // 48)
    font, small = ImageFont.load_default(size=size + 4), ImageFont.load_default(size=size)
    lines = _wrap(explanation(label), small, width - 2 * size)
    band = size * 2 + (size + 6) + len(lines) * (size + 4) + size * 3
    canvas = Image.new("RGB", (width, overlay.height + band), "white")
    canvas.paste(overlay, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = overlay.height + size // 2
    draw.text((size, y), f"{label}   pneumonia probability {probability:.3f} (threshold {threshold:.3f})",
              fill="black", font=font)
    y += size + 10
    for line in lines:
        draw.text((size, y), line, fill="#333333", font=small)
        y += size + 4
    y += size // 2
    bar_left, bar_right = size + draw.textlength("weaker ", font=small), width - size - draw.textlength(" stronger", font=small)
    strip = Image.fromarray(np.repeat(_lut8(colormap)[None], size, axis=0)).resize((int(bar_right - bar_left), size))
    canvas.paste(strip, (int(bar_left), y))
    draw.text((size, y), "weaker", fill="black", font=small)
    draw.text((bar_right + draw.textlength(" ", font=small), y), "stronger", fill="black", font=small)
    return canvas


def _wrap(text: str, font: object, width: float) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels in ``font``."""
    from PIL import ImageDraw

    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and measure.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])
