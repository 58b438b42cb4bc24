"""The training-side pieces on their own: every network the config accepts, augmentation, the balanced sampler."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscope.config import AugmentConfig, ModelConfig, parse_config
from pneumoscope.models.augment import augment_batch
from pneumoscope.models.datamodule import XRayDataModule
from pneumoscope.models.nets import build_net

ARCHS = [arch for arch in typing.get_args(ModelConfig.model_fields["arch"].annotation) if arch != "ensemble"]


def test_archs_are_the_ones_the_project_trains_and_their_ensemble() -> None:
    assert set(ARCHS) == {"simple_cnn", "efficientnet_lite0", "efficientnet_lite1"}
    assert set(typing.get_args(ModelConfig.model_fields["arch"].annotation)) == {*ARCHS, "ensemble"}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_scores_embeds_and_exposes_its_cam_layer(arch: str) -> None:
    net = build_net(ModelConfig(arch=arch, subtype_head=True), 64).eval()
    pixels = torch.randint(0, 256, (3, 1, 64, 64)).float()
    with torch.no_grad():
        logits = net(pixels)
        features = net.embed(pixels)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    assert features.shape == (3, net.feature_dim)
    assert torch.allclose(net.classify(features), logits, atol=1e-5)
    assert net.cam_layer in dict(net.named_modules())
    assert net.subtype(features).shape == (3,)
    # The brightness of a film must not decide alone: per-image normalisation removes a global gain.
    if net.normalize.mode == "per_image":
        with torch.no_grad():
            assert torch.allclose(net(pixels * 0.5), logits, atol=1e-3)


def _films(n: int = 8, side: int = 64) -> torch.Tensor:
    """Radiograph-like test images: a bright body, two darker lung fields, some texture."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    body = 200 - 120 * (((x - 0.3) ** 2 + (y - 0.5) ** 2 < 0.04) | ((x - 0.7) ** 2 + (y - 0.5) ** 2 < 0.04))
    images = body[None] + rng.normal(0, 8, (n, side, side))
    return torch.from_numpy(np.clip(images, 0, 255)).float().unsqueeze(1)


def test_augmentation_is_seeded_varied_and_stays_in_range() -> None:
    films = _films()
    cfg = AugmentConfig(enabled=True, rotate_degrees=10, scale=0.12, translate=0.05, min_area=0.5, aspect=1.333,
                        low_res_prob=0.5, low_res_min=0.35, padding="zeros", gamma=0.4, contrast=0.35,
                        noise_std=0.03, blur_prob=0.3)
    first = augment_batch(films, cfg, torch.Generator().manual_seed(1))
    again = augment_batch(films, cfg, torch.Generator().manual_seed(1))
    other = augment_batch(films, cfg, torch.Generator().manual_seed(2))
    assert first.shape == films.shape and first.dtype == torch.float32
    assert torch.equal(first, again), "the same seed must give the same batch (reproducible training)"
    assert not torch.allclose(first, other), "another seed must give another batch"
    assert first.min() >= 0.0 and first.max() <= 255.0
    assert (first - films).abs().mean() > 5.0, "the augmentation changed (almost) nothing"
    per_image = [(first[i] - films[i]).abs().mean().item() for i in range(len(films))]
    assert np.std(per_image) > 0.5, "every image got the same transform"
    assert torch.equal(augment_batch(films, AugmentConfig(enabled=False)), films)


def test_geometry_alone_moves_the_anatomy_and_keeps_the_grey_levels() -> None:
    films = _films(4)
    shift_only = AugmentConfig(enabled=True, rotate_degrees=0, scale=0, translate=0.2, min_area=1.0, aspect=1.0,
                               low_res_prob=0, gamma=0, contrast=0, noise_std=0, blur_prob=0, padding="border")
    moved = augment_batch(films, shift_only, torch.Generator().manual_seed(0))
    assert (moved - films).abs().mean() > 1.0
    # Resampling only: the histogram stays close (a shift by border padding repeats edge pixels).
    assert abs(moved.mean().item() - films.mean().item()) < 10.0


@pytest.mark.parametrize("balance, normal_share", [("none", (0.05, 0.16)), ("sampler", (0.42, 0.58))])
def test_balanced_sampler_draws_the_minority_as_often(small_collection: Path, balance: str,
                                                      normal_share: tuple[float, float]) -> None:
    """With 10 % NORMAL films, ``balance: sampler`` draws each class about half the time (with
    replacement), ``none`` as they come."""
    config = parse_config({"name": "s", "data": {"image_size": 32}, "model": {"arch": "simple_cnn"},
                           "train": {"balance": balance, "batch_size": 16, "seed": 3}})
    module = XRayDataModule(config, root=small_collection.parent / "chest_xray")
    labels = np.array([0] * 40 + [1] * 360)
    module._arrays["train"] = (np.zeros((400, 32, 32), dtype=np.uint8), labels)  # no decoding: labels are what counts
    drawn = torch.cat([batch[1] for _ in range(5) for batch in module.train_dataloader()])
    share = (drawn == 0).float().mean().item()
    assert normal_share[0] <= share <= normal_share[1], share
    assert len(drawn) == 5 * (400 // 16) * 16  # an epoch is one pass's worth of draws, last partial batch dropped
