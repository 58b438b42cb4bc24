"""The ensemble has one network's interface: an ensemble of one answers exactly as its member, and
two copies of one member answer as that member does (mean logits, the mean of the members' maps
before the ReLU, the RMS of per-member OOD distances). Then the whole route: members combined by
``ensembling.combine`` into a bundle that loads, exports to ONNX and scores like its PyTorch."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscope.data.images import decode_image, to_network
from pneumoscope.inference.explain import GradCam, grad_cam_from_activation
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR, load_bundle
from pneumoscope.models.feature_model import fit_feature_model, mahalanobis
from pneumoscope.models.forward import forward_images
from pneumoscope.models.nets import Ensemble, PneumoNet


def _member() -> PneumoNet:
    """The first member of the bundled model (or the bundled network itself, if it is one net)."""
    net = load_bundle(DEFAULT_MODEL_DIR).net
    return net.members[0] if isinstance(net, Ensemble) else net


@pytest.fixture(scope="module")
def member() -> PneumoNet:
    return _member().eval()


@pytest.fixture(scope="module")
def films(originals: Path) -> np.ndarray:
    paths = sorted((originals / "NORMAL").iterdir())[:2] + sorted((originals / "PNEUMONIA").iterdir())[:2]
    return np.stack([to_network(decode_image(p, reduce_to=224).grey, 224) for p in paths])


def test_an_ensemble_of_one_is_its_member(member: PneumoNet, films: np.ndarray) -> None:
    one = Ensemble([member]).eval()
    logits, features = forward_images(member, films, features=True)
    ens_logits, ens_features = forward_images(one, films, features=True)
    np.testing.assert_allclose(ens_logits, logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ens_features, features, rtol=0, atol=1e-5)
    if member.has_subtype:
        with torch.no_grad():
            f = torch.from_numpy(features)
            np.testing.assert_allclose(one.subtype(f).numpy(), member.subtype(f).numpy(), atol=1e-5)


def test_two_copies_answer_as_one(member: PneumoNet, films: np.ndarray) -> None:
    pair = Ensemble([member, copy.deepcopy(member)]).eval()
    assert pair.feature_blocks == [member.feature_dim] * 2
    logits, features = forward_images(member, films, features=True)
    pair_logits, pair_features = forward_images(pair, films, features=True)
    np.testing.assert_allclose(pair_logits, logits, atol=1e-4)
    # OOD: one Gaussian per block; two identical blocks give the member's own distance
    rng = np.random.default_rng(0)
    train = rng.normal(size=(300, member.feature_dim)).astype(np.float32) + features.mean(0)
    single, _ = fit_feature_model(train, train[:50])
    double, _ = fit_feature_model(np.concatenate([train, train], 1), np.concatenate([train, train], 1)[:50],
                                  pair.feature_blocks)
    np.testing.assert_allclose(mahalanobis(pair_features, double), mahalanobis(features, single), rtol=1e-4)


def test_ensemble_heatmap_is_the_members_map(member: PneumoNet, films: np.ndarray) -> None:
    """Grad-CAM of the ensemble's mean logit over the stacked activation = the member's own map
    when both members are the same; through MONAI's hooks (one net) and the head-only route alike."""
    pair = Ensemble([member, copy.deepcopy(member)]).eval()
    decision = 0.0
    single = GradCam(member)(films, decision)
    both = GradCam(pair)(films, decision)
    np.testing.assert_allclose(both.maps, single.maps, atol=2e-3)
    with torch.no_grad():
        activation = pair.cam_activation(torch.from_numpy(films).float().unsqueeze(1)).numpy()
    np.testing.assert_allclose(grad_cam_from_activation(pair, activation, decision), single.maps, atol=2e-3)


def test_members_must_take_one_size() -> None:
    first, other = _member(), _member()
    other.image_size = 192
    with pytest.raises(ValueError, match="image sizes"):
        Ensemble([first, other])
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([])
