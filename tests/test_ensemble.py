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


def test_finalize_scores_through_onnx_as_pytorch_does(films: np.ndarray) -> None:
    """``finalize`` fits calibration, threshold and the OOD Gaussian on ONNX Runtime's logits and
    features: they must be PyTorch's, for a whole ensemble, in any batch size."""
    from pneumoscope.inference.export import onnx_forward

    net = load_bundle(DEFAULT_MODEL_DIR).net.eval()
    logits, features = forward_images(net, films, features=True)
    fast = onnx_forward(net)
    fast_logits, fast_features = fast(films, batch_size=3, features=True)
    np.testing.assert_allclose(fast_logits, logits, rtol=0, atol=2e-4)
    np.testing.assert_allclose(fast_features, features, rtol=0, atol=2e-4)
    only_logits, none = fast(films)
    assert none is None and np.allclose(only_logits, logits, atol=2e-4)


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


@pytest.mark.slow
def test_an_ensemble_trains_member_by_member_resumes_and_serves(small_collection: Path, originals: Path,
                                                                  tmp_path: Path) -> None:
    """``pneumoscope train`` of an ensemble config: each member by its own config, a finished member
    reused on a second call; the combined bundle has three OOD zones fitted on the stressed pool and
    the full-resolution originals, and ONNX Runtime and PyTorch give it the same answers and maps."""
    from pneumoscope.config import load_config, parse_config
    from pneumoscope.ensembling import train_members
    from pneumoscope.inference.predictor import Predictor
    from pneumoscope.training import train

    repo = Path(__file__).resolve().parent.parent
    chains = []
    for seed in (1, 2):
        member = load_config(repo / "configs" / "baseline.yaml", **{
            "name": f"member{seed}", "train.epochs": 1, "train.seed": seed, "data.image_size": 64,
            "data.root": str(small_collection)})
        path = tmp_path / f"member{seed}.yaml"
        path.write_text(member.to_yaml())
        chains.append([str(path)])
    config = parse_config({
        "name": "tiny_ensemble", "data": {"root": str(small_collection), "image_size": 64},
        "model": {"arch": "ensemble"}, "ood": {"zones": True, "fit_on": "stressed", "originals": str(originals)},
        "ensemble": {"runs": str(tmp_path / "runs"), "members": chains},
    })
    run = train(config, tmp_path / "ensemble", progress=False)
    bundle = load_bundle(run)
    assert isinstance(bundle.net, Ensemble) and len(bundle.net.members) == 2
    assert [m["name"] for m in bundle.meta["training"]["members"]] == ["member1", "member2"]
    ood = bundle.meta["ood"]
    assert ood["fit_on"] == "stressed"
    assert 0 < ood["caution_distance"] < ood["distance_threshold"]
    assert ood["zones"]["originals"]["n"] == 48 and ood["zones"]["originals"]["refused"] == 0
    assert ood["zones"]["stressed_pool"]["refused"] <= 0.005

    weights = [tmp_path / "runs" / f"member{seed}" / "model.safetensors" for seed in (1, 2)]
    stamps = [w.stat().st_mtime_ns for w in weights]
    said: list[str] = []
    assert train_members(config, progress=False, log=said.append) == [w.parent for w in weights]
    assert [w.stat().st_mtime_ns for w in weights] == stamps and all("reused" in line for line in said)

    # A fresh checkout has the combined ensemble but no runs: its members are unpacked, not retrained.
    import shutil

    from safetensors.numpy import load_file

    before = load_file(weights[1])
    shutil.rmtree(weights[1].parent)
    said.clear()
    assert train_members(config, progress=False, log=said.append, reuse=run) == [w.parent for w in weights]
    assert said[0].startswith("member2: unpacked from") and all("training from" not in line for line in said)
    assert weights[0].stat().st_mtime_ns == stamps[0]  # a finished run is left as it is
    after = load_file(weights[1])
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)
    assert load_bundle(weights[1].parent).meta["training"]["seed"] == 2

    files = sorted(originals.rglob("*.jpeg"))[:6]
    fast, eager = Predictor.load(run), Predictor.load(run, backend="torch")
    assert fast.backend == "onnxruntime" and fast.ood_caution == pytest.approx(ood["caution_distance"])
    a, b = fast.predict_many(files, heatmap=True), eager.predict_many(files, heatmap=True)
    for x, y in zip(a, b):
        assert x.label == y.label and x.xray_check == y.xray_check
        assert abs(x.probability - y.probability) < 1e-4
        assert abs(x.ood_distance - y.ood_distance) < 1e-2 * max(1.0, y.ood_distance)
        assert np.abs(x.heatmap - y.heatmap).max() < 0.05


def test_log_feature_gaussian_measures_log_features() -> None:
    """``ood.feature_transform: log``: the statistics say so (``log_shift``), and the distance is the
    plain Mahalanobis distance of ``log(features + shift)``, per block, whoever reads the file."""
    from pneumoscope.models.feature_model import LOG_KEY, LOG_SHIFT

    rng = np.random.default_rng(1)
    swish_like = rng.gamma(0.8, 0.4, size=(400, 12)) - 0.27  # pooled swish outputs: bounded below, long tail
    stats, _ = fit_feature_model(swish_like, swish_like[:80], [6, 6], log=True)
    assert float(stats[LOG_KEY]) == pytest.approx(LOG_SHIFT)
    raw, _ = fit_feature_model(np.log(swish_like + LOG_SHIFT), swish_like[:80], [6, 6])
    np.testing.assert_allclose(mahalanobis(swish_like[:20], stats), mahalanobis(np.log(swish_like[:20] + LOG_SHIFT), raw),
                               rtol=1e-5)
    plain, _ = fit_feature_model(swish_like, swish_like[:80], [6, 6])
    assert LOG_KEY not in plain and not np.allclose(mahalanobis(swish_like[:20], plain), mahalanobis(swish_like[:20], stats))


def test_the_check_can_read_the_first_members_only() -> None:
    """``ood.members``: statistics of the leading blocks measure the full feature vector as the
    leading blocks' own distance (the later members' columns are not read), and asking for more
    members than the network has is an error that names the setting."""
    from pneumoscope.models.feature_model import ood_blocks

    rng = np.random.default_rng(2)
    features = rng.normal(size=(300, 12))
    assert ood_blocks([4, 4, 4], None) == [4, 4, 4] and ood_blocks([4, 4, 4], 2) == [4, 4]
    assert ood_blocks(None, 1) is None
    with pytest.raises(ValueError, match="ood.members is 4"):
        ood_blocks([4, 4, 4], 4)
    leading, _ = fit_feature_model(features[:, :8], features[:50, :8], ood_blocks([4, 4, 4], 2))
    np.testing.assert_allclose(mahalanobis(features, leading), mahalanobis(features[:, :8], leading))
    every, _ = fit_feature_model(features, features[:50], [4, 4, 4])
    assert not np.allclose(mahalanobis(features, leading), mahalanobis(features, every))
