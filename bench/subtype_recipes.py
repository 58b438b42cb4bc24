"""Which way to answer bacterial vs viral (issue 12): a head on the shared backbone, or a separate model?

Each recipe fine-tunes EfficientNet-Lite0 from its ImageNet weights on the bundled model's own
patient-level split (``split_manifest.csv``), with the robust recipe's augmentation
(``configs/robust.yaml``), and prints one JSON line: pneumonia AUC and subtype AUC, on clean
validation and on the stressed pool (clean + ``STRESSED_SET`` copies). A plain loop, not
``pneumoscope train``: many recipes in one process, on a GPU when there is one.

    python bench/subtype_recipes.py                 # every recipe (GPU: ~10 min; 2-core CPU: hours)
    python bench/subtype_recipes.py joint_three_e4  # one
    python bench/subtype_recipes.py --frozen runs/robust   # heads on a trained model's frozen features (CPU: ~5 min)

docs/subtype/recipes.md holds the figures of one run on an H100.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from pneumoscope.config import load_config
from pneumoscope.data.collection import read_manifest, subtype_targets
from pneumoscope.data.cache import cached_images
from pneumoscope.data.perturb import STRESSED_SET, stressed_copies
from pneumoscope.models.augment import augment_batch
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR
from pneumoscope.models.nets import build_net

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int = 4
    subtype_weight: float = 1.0
    pneumonia_weight: float = 1.0
    freeze_blocks: int = 3
    pneumonia_only: bool = False
    """A separate subtype model: trained on PNEUMONIA films only, its pneumonia output unused."""
    sampler: str = "two"
    """``two``: NORMAL/PNEUMONIA alike; ``three``: NORMAL/viral/bacterial alike; ``none``."""
    augment: bool = True
    lr: float = 1e-3
    seed: int = 42


RECIPES = [
    Recipe("joint_robust4"),
    Recipe("subonly_e6_f3", epochs=6, pneumonia_weight=0.0, pneumonia_only=True, sampler="none"),
    Recipe("joint_three_e4", sampler="three"),
    Recipe("subonly_e10_f0", epochs=10, pneumonia_weight=0.0, pneumonia_only=True, freeze_blocks=0, sampler="none"),
    Recipe("subonly_noaug_e6", epochs=6, pneumonia_weight=0.0, pneumonia_only=True, augment=False, sampler="none"),
    Recipe("joint_e6_f0_w2", epochs=6, subtype_weight=2.0, freeze_blocks=0, sampler="three"),
    Recipe("pn_only_ref", subtype_weight=0.0),
    Recipe("subonly_e6_f0_lr3e-4", epochs=6, pneumonia_weight=0.0, pneumonia_only=True, freeze_blocks=0, lr=3e-4, sampler="none"),
    Recipe("joint_three_e4_s1", sampler="three", seed=1),
    Recipe("joint_three_e4_w2", sampler="three", subtype_weight=2.0),
    Recipe("joint_three_e5_f0", epochs=5, sampler="three", freeze_blocks=0),
    Recipe("joint_three_e4_w2_s1", sampler="three", subtype_weight=2.0, seed=1),
]


def _autocast(device: str) -> torch.autocast:
    return torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")


@torch.no_grad()
def _scores(net: torch.nn.Module, images: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    pneumonia, subtype = [], []
    for start in range(0, len(images), 256):
        x = torch.from_numpy(images[start : start + 256]).float().unsqueeze(1).to(device)
        with _autocast(device):
            features = net.embed(x.contiguous(memory_format=torch.channels_last))
            pneumonia.append(net.classify(features).float().cpu())
            subtype.append(net.subtype(features).float().cpu())
    return torch.cat(pneumonia).numpy(), torch.cat(subtype).numpy()


def run(recipe: Recipe, data: dict[str, np.ndarray], device: str) -> dict[str, object]:
    config = load_config(REPO / "configs" / "robust.yaml", **{
        "model.freeze_blocks": recipe.freeze_blocks, "model.subtype_head": True,
    })
    augment = config.augment if recipe.augment else config.augment.model_copy(update={"enabled": False})
    torch.manual_seed(recipe.seed)
    net = build_net(config.model, config.data.image_size).to(device).to(memory_format=torch.channels_last)
    images, labels, subtypes = data["train_images"], data["train_labels"], data["train_subtypes"]
    index = np.flatnonzero(labels == 1) if recipe.pneumonia_only else np.arange(len(labels))
    groups = {"two": labels, "three": np.where(labels == 1, 1 + subtypes % 3, 0), "none": np.zeros_like(labels)}[recipe.sampler][index]
    weights = 1.0 / np.bincount(groups)[groups]
    weights /= weights.sum()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=recipe.lr, weight_decay=1e-5)
    steps = recipe.epochs * (len(index) // 32)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps, pct_start=0.15)
    rng, generator = np.random.default_rng(recipe.seed), torch.Generator().manual_seed(recipe.seed)
    started = time.perf_counter()
    for _ in range(steps):
        net.train()
        batch = rng.choice(index, 32, p=weights)
        x = augment_batch(torch.from_numpy(images[batch]).float().unsqueeze(1), augment, generator)  # on the CPU, as in training
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(labels[batch]).float().to(device)
        s = torch.from_numpy(subtypes[batch]).to(device)
        with _autocast(device):
            features = net.embed(x)
            pneumonia, subtype = net.classify(features).float(), net.subtype(features).float()
        loss = recipe.pneumonia_weight * F.binary_cross_entropy_with_logits(pneumonia, y * 0.95 + 0.025)
        known = s >= 0
        if known.any() and recipe.subtype_weight > 0:
            loss = loss + recipe.subtype_weight * F.binary_cross_entropy_with_logits(subtype[known], s[known].float() * 0.95 + 0.025)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    fit = time.perf_counter() - started
    result: dict[str, object] = {**asdict(recipe), "steps": steps, "fit_s": round(fit, 1)}
    for view in ("clean", "stressed"):
        p, s = _scores(net, data[f"{view}_images"], device)
        y, t = data[f"{view}_labels"], data[f"{view}_subtypes"]
        known = t >= 0
        result[f"pneumonia_auc_{view}"] = round(float(roc_auc_score(y, p)), 4)
        result[f"subtype_auc_{view}"] = round(float(roc_auc_score(t[known], s[known])), 4)
    return result


def load_data() -> dict[str, np.ndarray]:
    """The bundled model's split, decoded by the project's loader; validation also as the stressed pool."""
    records = read_manifest(DEFAULT_MODEL_DIR / "split_manifest.csv")
    data: dict[str, np.ndarray] = {}
    for split in ("train", "val"):
        chosen = [r for r in records if r.split == split]
        data[f"{split}_images"] = np.asarray(cached_images([r.path for r in chosen], 224))
        data[f"{split}_labels"] = np.array([r.label for r in chosen])
        data[f"{split}_subtypes"] = subtype_targets(chosen)
    data["clean_images"], data["clean_labels"], data["clean_subtypes"] = data["val_images"], data["val_labels"], data["val_subtypes"]
    data["stressed_images"], data["stressed_labels"] = stressed_copies(data["val_images"], data["val_labels"], STRESSED_SET, seed=42)
    data["stressed_subtypes"] = np.tile(data["val_subtypes"], len(STRESSED_SET) + 1)
    return data


def frozen(model: str) -> None:
    """Logistic-regression heads on ``model``'s frozen features (what ``trainable: subtype_head``
    fits), for several L2 penalties, with and without two augmented copies of each training film:
    the subtype AUC of each on the clean validation PNEUMONIA films."""
    from pneumoscope.models.bundle import load_bundle
    from pneumoscope.models.forward import forward_images
    from pneumoscope.training import fit_logistic, frozen_features

    bundle = load_bundle(model)
    records = read_manifest(Path(model) / "split_manifest.csv")
    sets = {}
    for split in ("train", "val"):
        chosen = [r for r in records if r.split == split and r.label == 1 and r.subtype in ("bacteria", "virus")]
        images = np.asarray(cached_images([r.path for r in chosen], bundle.image_size, progress=False))
        sets[split] = (images, subtype_targets(chosen))
    train_images, train_targets = sets["train"]
    net = bundle.net.float().eval()
    passes = frozen_features(net, train_images, bundle.config.augment, 3, seed=42)  # as `pneumoscope train` draws them
    val_features = forward_images(net, sets["val"][0], features=True)[1]
    for name, count in (("clean films only", 1), ("clean + 2 augmented copies", 3)):
        features, targets = np.concatenate(passes[:count]), np.tile(train_targets, count)
        for l2 in (1e-3, 3e-3, 1e-2, 3e-2):
            weight, bias = fit_logistic(features, targets, l2)
            auc = roc_auc_score(sets["val"][1], val_features @ weight + bias)
            print(json.dumps({"head_on": model, "training_features": name, "subtype_l2": l2, "subtype_auc_clean": round(float(auc), 4)}), flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--frozen"]:
        frozen(sys.argv[2])
        return
    wanted = set(sys.argv[1:])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_data()
    print(f"# device: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}", flush=True)
    for recipe in RECIPES:
        if not wanted or recipe.name in wanted:
            print(json.dumps(run(recipe, data, device)), flush=True)


if __name__ == "__main__":
    main()
