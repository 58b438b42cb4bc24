"""What the not-a-chest-X-ray check's Gaussian should be fitted on: the choices of ``OodConfig``
(``stressed_copies``, ``feature_transform``) measured side by side on one network's features.

For each choice the lines are drawn by the model's own rule (``feature_model.fit_zones`` with the
model's ``ood`` settings), and the table gives what issue 20 asks of them: the stressed validation
pool refused and cautioned, the 48 originals refused and cautioned, and every non-X-ray corpus still
refused; the ratio of the nearest non-X-ray image to the pool's 99.5th percentile says how far apart
the two lie whatever the margin. The features are the network's (ONNX Runtime, as users get them),
so the figures do not depend on the statistics the bundle holds now.

Run: .venv/bin/python bench/ood_fit.py [--model DIR] [--copies 3]   (about 12 min on 2 cores)
Writes docs/ood_fit.md and docs/ood_fit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
DATA = Path(os.environ.get("PNEUMOSCOPE_DATA", REPO.parent / "shared" / "data"))

from pneumoscope.data.cache import cached_images  # noqa: E402
from pneumoscope.data.collection import read_manifest  # noqa: E402
from pneumoscope.data.images import IMAGE_SUFFIXES, as_training_copy  # noqa: E402
from pneumoscope.data.perturb import STRESSED_SET, one_stressed_copy, stressed_copies  # noqa: E402
from pneumoscope.evaluation.ood_sets import TRANSFORMS, non_xray_corpora, transformed_sets  # noqa: E402
from pneumoscope.inference.predictor import Predictor  # noqa: E402
from pneumoscope.inference.prepare import prepare_image  # noqa: E402
from pneumoscope.machine import describe as describe_machine  # noqa: E402
from pneumoscope.markdown import shown_path, table  # noqa: E402
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR, load_bundle  # noqa: E402
from pneumoscope.models.feature_model import fit_feature_model, fit_zones, mahalanobis  # noqa: E402

COMMAND = ".venv/bin/python bench/ood_fit.py"


def features(predictor: Predictor, pixels: np.ndarray, batch: int = 64) -> np.ndarray:
    """Penultimate features of network-sized uint8 images, from the ONNX graph users run."""
    return np.concatenate([predictor.scorer.run(["features"], np.ascontiguousarray(pixels[s : s + batch]))[0]
                           for s in range(0, len(pixels), batch)])


def prepared(images: list, size: int) -> np.ndarray:
    """Arrays or files as an upload reaches the network (``prepare_image``)."""
    return np.stack([prepare_image(image, size).pixels for image in images])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--copies", type=int, default=3, help="most stressed copies of each training film tried")
    args = parser.parse_args()
    started = time.time()
    bundle = load_bundle(args.model)
    config = bundle.config
    predictor = Predictor.load(args.model)
    records = read_manifest(Path(args.model) / "split_manifest.csv")
    train = np.asarray(cached_images([r.path for r in records if r.split == "train"], bundle.image_size))
    val_records = [r for r in records if r.split == "val"]
    val = np.asarray(cached_images([r.path for r in val_records], bundle.image_size))
    seed = config.data.split_seed
    # The same images finalize uses: the pool from the split seed, the fitting copies a seed apart each.
    pool, _ = stressed_copies(val, np.array([r.label for r in val_records]), STRESSED_SET, seed=seed)
    f_val, f_train = features(predictor, val), features(predictor, train)
    f_pool = np.concatenate([f_val, features(predictor, as_training_copy(pool[len(val):]))])
    f_copies = [features(predictor, as_training_copy(one_stressed_copy(train, STRESSED_SET, seed=seed + 1 + k)))
                for k in range(args.copies)]
    originals = sorted(p for p in (DATA / "originals").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    f_originals = features(predictor, prepared(originals, bundle.image_size))
    f_negatives = {name.split(" (")[0]: features(predictor, prepared([image for _, image in items], bundle.image_size))
                   for name, items in non_xray_corpora(DATA).items()}
    f_transformed = {name: features(predictor, prepared(images, bundle.image_size)) for name, images in transformed_sets(val).items()}
    extracted = time.time() - started

    rows, results = [], []
    blocks = getattr(bundle.net, "feature_blocks", None)
    for transform in ("none", "log"):
        for count in range(0, args.copies + 1):
            fit = np.concatenate([f_train, *f_copies[:count]])
            stats, _ = fit_feature_model(fit, f_val, blocks, log=transform == "log")
            zones = fit_zones(mahalanobis(f_val, stats), mahalanobis(f_pool, stats), mahalanobis(f_originals, stats),
                              config.ood)
            refuse = zones["distance_threshold"]
            nearest = {name: float(mahalanobis(f, stats).min()) for name, f in f_negatives.items()}
            closest = min(nearest, key=nearest.get)
            q995 = float(np.quantile(mahalanobis(f_pool, stats), 0.995))
            result = {
                "transform": transform, "stressed_copies": count, "caution": zones["caution_distance"], "refuse": refuse,
                "pool": zones["zones"]["stressed_pool"], "originals": zones["zones"]["originals"],
                "nearest_non_xray": nearest, "pool_q995": q995,
                "non_xrays_all_refused": all(d > refuse for d in nearest.values()),
                "transformed_refused": {name: float(np.mean(mahalanobis(f, stats) > refuse)) for name, f in f_transformed.items()},
            }
            results.append(result)
            rows.append([
                transform, str(count), f"{zones['caution_distance']:.1f} / {refuse:.1f}",
                f"{100 * result['pool']['refused']:.2f} % / {100 * result['pool']['cautioned']:.2f} %",
                f"{round(48 * result['originals']['refused'])} / {round(48 * result['originals']['cautioned'])}",
                f"{nearest[closest]:.1f} ({closest.replace('hard negatives: ', '')})",
                f"{nearest[closest] / q995:.3f}", "yes" if result["non_xrays_all_refused"] else "**no**",
                " / ".join(f"{100 * v:.0f} %" for v in result["transformed_refused"].values()),
            ])
    text = (
        f"Model: `{shown_path(args.model)}` (the network's features; lines by its own rule: caution at the "
        f"{100 * config.ood.caution_quantile:g}th percentile of clean validation distances, refusal at "
        f"{config.ood.refuse_margin:g} x the farther of that line and the farthest original). Stressed pool: "
        f"{len(f_pool)} films. Copies fitted: training films x each count, seeds {seed + 1}-{seed + args.copies}.\n\n"
        + table(["features", "stressed copies", "caution / refusal line", "stressed pool refused / cautioned",
                 "originals refused / cautioned (of 48)", "nearest non-X-ray", "nearest non-X-ray / pool 99.5th pct",
                 "every non-X-ray refused", f"{' / '.join(TRANSFORMS)} refused (distance only)"], rows)
        + f"\n\nMachine: {describe_machine()}; features extracted in {extracted / 60:.1f} min.\n"
    )
    print(text)
    docs = REPO / "docs"
    (docs / "ood_fit.md").write_text(f"# Fitting the not-a-chest-X-ray check: choices measured\n\nCommand: `{COMMAND}`\n\n{text}")
    (docs / "ood_fit.json").write_text(json.dumps({"model": shown_path(args.model), "command": COMMAND, "results": results}, indent=2))


if __name__ == "__main__":
    main()
