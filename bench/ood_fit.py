"""What the not-a-chest-X-ray check's Gaussian should be fitted on: the choices of ``OodConfig``
(``stressed_copies``, ``feature_transform``, ``members``, ``refuse_margin``) measured side by side on one
model's features.

For each choice the lines are drawn by the model's own rule (``feature_model.fit_zones`` with the
model's ``ood`` settings), and the table gives what issue 20 asks of them: the stressed validation
pool refused and cautioned, the 48 originals refused and cautioned, and every non-X-ray corpus still
refused; the ratio of the nearest non-X-ray image to the pool's 99.5th percentile says how far apart
the two lie whatever the margin. The features are the network's (ONNX Runtime, as users get them),
so the figures do not depend on the statistics the bundle holds now.

Run: .venv/bin/python bench/ood_fit.py [--model DIR] [--copies 3] [--transforms log] [--margins 1.05 1.1]
[--members 2 3]   (features extracted once per weights, about 12 min on 2 cores, kept under runs/ood_fit;
margins and members default to the model's own ``refuse_margin`` and ``members``)
Writes docs/ood_fit.md and docs/ood_fit.json.
"""

from __future__ import annotations

import argparse
import hashlib
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
from pneumoscope.models.feature_model import fit_members_check, fit_zones, mahalanobis  # noqa: E402

COMMAND = ".venv/bin/python bench/ood_fit.py"


def features(predictor: Predictor, pixels: np.ndarray, batch: int = 64) -> np.ndarray:
    """Penultimate features of network-sized uint8 images, from the ONNX graph users run."""
    return np.concatenate([predictor.scorer.run(["features"], np.ascontiguousarray(pixels[s : s + batch]))[0]
                           for s in range(0, len(pixels), batch)])


def prepared(images: list, size: int) -> np.ndarray:
    """Arrays or files as an upload reaches the network (``prepare_image``)."""
    return np.stack([prepare_image(image, size).pixels for image in images])


def extracted_features(model: str, bundle, copies: int, cache: Path) -> dict[str, np.ndarray]:
    """Every image set's features, extracted once per model's weights and kept under ``cache``: the
    validation films, the training films and their ``copies`` stressed copies, the stressed pool,
    the originals read as uploads, each non-X-ray corpus and each transformed set."""
    files = bundle.record.files or {}
    weights = "".join(str(files[name]) for name in sorted(files) if name.startswith("model"))  # every member's
    key = hashlib.sha256(weights.encode()).hexdigest()[:16]
    path = cache / f"{bundle.record.name}-{key}-copies{copies}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return {name: stored[name] for name in stored.files}
    predictor = Predictor.load(model)
    records = read_manifest(Path(model) / "split_manifest.csv")
    train = np.asarray(cached_images([r.path for r in records if r.split == "train"], bundle.image_size))
    val_records = [r for r in records if r.split == "val"]
    val = np.asarray(cached_images([r.path for r in val_records], bundle.image_size))
    seed = bundle.config.data.split_seed
    # The same images finalize uses: the pool from the split seed, the fitting copies a seed apart each.
    pool, _ = stressed_copies(val, np.array([r.label for r in val_records]), STRESSED_SET, seed=seed)
    f = {"val": features(predictor, val), "train": features(predictor, train)}
    f["pool"] = np.concatenate([f["val"], features(predictor, as_training_copy(pool[len(val):]))])
    for k in range(copies):
        f[f"copy {k}"] = features(predictor, as_training_copy(one_stressed_copy(train, STRESSED_SET, seed=seed + 1 + k)))
    originals = sorted(p for p in (DATA / "originals").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    f["originals"] = features(predictor, prepared(originals, bundle.image_size))
    for name, items in non_xray_corpora(DATA).items():
        f["non-X-ray " + name.split(" (")[0]] = features(predictor, prepared([image for _, image in items], bundle.image_size))
    for name, images in transformed_sets(val).items():
        f["transformed " + name] = features(predictor, prepared(images, bundle.image_size))
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **f)
    return f


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--copies", type=int, default=3, help="most stressed copies of each training film tried")
    parser.add_argument("--transforms", nargs="+", choices=["none", "log"], default=["none", "log"],
                        help="feature transforms tried")
    parser.add_argument("--margins", nargs="+", type=float, default=None,
                        help="refusal margins tried (default: the model's own)")
    parser.add_argument("--members", nargs="+", type=int, default=None,
                        help="for an ensemble: distances on the first N members' features, for each N tried "
                             "(default: the model's own ood.members)")
    parser.add_argument("--cache", default=str(REPO / "runs" / "ood_fit"), help="where extracted features are kept")
    args = parser.parse_args()
    started = time.time()
    bundle = load_bundle(args.model)
    config = bundle.config
    seed = config.data.split_seed
    f = extracted_features(args.model, bundle, args.copies, Path(args.cache))
    extracted = time.time() - started
    f_copies = [f[f"copy {k}"] for k in range(args.copies)]
    f_negatives = {name[len("non-X-ray "):]: v for name, v in f.items() if name.startswith("non-X-ray ")}
    f_transformed = {name[len("transformed "):]: v for name, v in f.items() if name.startswith("transformed ")}

    f_val, f_pool, f_originals = f["val"], f["pool"], f["originals"]
    rows, results = [], []
    margins = args.margins or [config.ood.refuse_margin]
    member_counts = args.members or [config.ood.members]
    for members, transform, count in ((n, t, c) for n in member_counts for t in args.transforms
                                      for c in range(args.copies + 1)):
        stats, _ = fit_members_check(np.concatenate([f["train"], *f_copies[:count]]), f_val,
                                     getattr(bundle.net, "feature_blocks", None), members, log=transform == "log")
        distances = {name: mahalanobis(v, stats) for name, v in (("val", f_val), ("pool", f_pool), ("originals", f_originals))}
        nearest = {name: float(mahalanobis(v, stats).min()) for name, v in f_negatives.items()}
        closest = min(nearest, key=nearest.get)
        q995 = float(np.quantile(distances["pool"], 0.995))
        transformed = {name: mahalanobis(v, stats) for name, v in f_transformed.items()}
        for margin in margins:
            ood = config.ood.model_copy(update={"refuse_margin": margin})
            zones = fit_zones(distances["val"], distances["pool"], distances["originals"], ood)
            refuse = zones["distance_threshold"]
            result = {
                "members": members, "transform": transform, "stressed_copies": count, "refuse_margin": margin,
                "caution": zones["caution_distance"], "refuse": refuse,
                "pool": zones["zones"]["stressed_pool"], "originals": zones["zones"]["originals"],
                "nearest_non_xray": nearest, "pool_q995": q995,
                "non_xrays_all_refused": all(d > refuse for d in nearest.values()),
                "transformed_refused": {name: float(np.mean(d > refuse)) for name, d in transformed.items()},
            }
            results.append(result)
            rows.append([
                "all" if members is None else f"first {members}", transform, str(count), f"{margin:g}",
                f"{zones['caution_distance']:.1f} / {refuse:.1f}",
                f"{100 * result['pool']['refused']:.2f} % / {100 * result['pool']['cautioned']:.2f} %",
                f"{round(48 * result['originals']['refused'])} / {round(48 * result['originals']['cautioned'])}",
                f"{nearest[closest]:.1f} ({closest.replace('hard negatives: ', '')})",
                f"{nearest[closest] / q995:.3f}", "yes" if result["non_xrays_all_refused"] else "**no**",
                " / ".join(f"{100 * v:.0f} %" for v in result["transformed_refused"].values()),
            ])
    text = (
        f"Model: `{shown_path(args.model)}` (the network's features; lines by its own rule: caution at the "
        f"{100 * config.ood.caution_quantile:g}th percentile of clean validation distances, refusal at "
        f"the margin x the farther of that line and the farthest original). Stressed pool: "
        f"{len(f_pool)} films. Copies fitted: training films x each count, seeds {seed + 1}-{seed + args.copies}.\n\n"
        + table(["members' features", "transform", "stressed copies", "refusal margin", "caution / refusal line",
                 "stressed pool refused / cautioned",
                 "originals refused / cautioned (of 48)", "nearest non-X-ray", "nearest non-X-ray / pool 99.5th pct",
                 "every non-X-ray refused", f"{' / '.join(TRANSFORMS)} refused (distance only)"], rows)
        + f"\n\nMachine: {describe_machine()}; features extracted in {extracted / 60:.1f} min.\n"
    )
    print(text)
    command = " ".join([COMMAND, *sys.argv[1:]])
    docs = REPO / "docs"
    (docs / "ood_fit.md").write_text(f"# Fitting the not-a-chest-X-ray check: choices measured\n\nCommand: `{command}`\n\n{text}")
    (docs / "ood_fit.json").write_text(json.dumps({"model": shown_path(args.model), "command": command, "results": results}, indent=2))


if __name__ == "__main__":
    main()
