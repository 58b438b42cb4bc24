"""How well does the "is this a chest X-ray?" check work, in both directions? Prints, and writes
docs/ood.{md,json}:

- genuine films: the share refused and the share answered with a caution, on the clean validation
  split (the bundled model's patient-level split) and on the full-resolution originals as a user
  uploads them; the stressed validation pool (the clean images and one perturbed copy per
  condition) as finalize measured it when it fitted the lines (``--pool`` scores it here again);
- non-X-rays, per corpus: scikit-image samples, generated images, and the hard negatives
  (``evaluation/hard_negatives``: photos of a film on a monitor or a lightbox, CT-like slices,
  document scans, drawings): the share refused;
- transformed X-rays (heavily cropped, inverted, rotated 90°): the share refused.

Everything goes through ``Predictor.predict_many``, the code users run (file checks, feature
distance, polarity).

Run: .venv/bin/python bench/ood.py [--model DIR] [--manifest CSV] [--card]
``--card`` also records the figures in the model's card (model.json "card_sections" + MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
DATA = Path(os.environ.get("PNEUMOSCOPE_DATA", REPO.parent / "shared" / "data"))

from pneumoscope.data.collection import read_manifest  # noqa: E402
from pneumoscope.data.images import IMAGE_SUFFIXES, decode_image  # noqa: E402
from pneumoscope.data.perturb import STRESSED_SET, stressed_copies  # noqa: E402
from pneumoscope.evaluation.ood_sets import CORPORA, non_xray_corpora, transformed_sets  # noqa: E402
from pneumoscope.inference.ood import ROTATED, reads_sideways  # noqa: E402
from pneumoscope.inference.predictor import Predictor  # noqa: E402
from pneumoscope.markdown import shown_path, table  # noqa: E402
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR, read_record  # noqa: E402
from pneumoscope.models.card import add_card_section  # noqa: E402

COMMAND = ".venv/bin/python bench/ood.py --card"


def zones(predictor: Predictor, images: list) -> dict:
    """Refused and cautioned shares (and the refused names' indices) of ``images``; how many raised
    the doubt of lying on their side (polarity) and how many were refused so."""
    prepared = [predictor.prepare(image, keep_display=False) for image in images]  # decoded once for both counts
    results = predictor.predict_prepared(prepared, heatmap=False, batch_size=32)
    checks = np.array([r.xray_check for r in results])
    return {"n": len(results), "refused": float(np.mean(checks == "refuse")), "cautioned": float(np.mean(checks == "caution")),
            "refused_count": int(np.sum(checks == "refuse")), "cautioned_count": int(np.sum(checks == "caution")),
            "sideways_doubt": sum(reads_sideways(item.pixels) for item in prepared),
            "refused_on_side": sum(ROTATED in r.warnings for r in results),
            "distances": [r.ood_distance for r in results], "checks": checks.tolist()}


def pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--manifest", default=str(DEFAULT_MODEL_DIR / "split_manifest.csv"))
    parser.add_argument("--transformed", type=int, default=150, help="validation X-rays per transform")
    parser.add_argument("--card", action="store_true")
    parser.add_argument("--pool", action="store_true", help="also score the stressed validation pool here (12,560 "
                        "films; by default its figures are the ones finalize measured and recorded in model.json)")
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    val = [r for r in read_manifest(args.manifest) if r.split == "val"]
    greys = np.stack([decode_image(r.path).grey for r in val])
    originals = sorted(p for p in (DATA / "originals").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    genuine = {
        f"clean validation split ({len(val)} films)": zones(predictor, list(greys)),
        f"full-resolution originals ({len(originals)} files, as uploaded)": zones(predictor, originals),
    }
    if args.pool:
        pool, _ = stressed_copies(greys, np.array([r.label for r in val]), STRESSED_SET, seed=42)
        genuine[f"stressed validation pool ({len(pool)} films: clean + {len(STRESSED_SET)} perturbed copies each)"] = \
            zones(predictor, list(pool))
    fitted = (read_record(Path(args.model)).ood or None) if Path(args.model).is_dir() else None
    pooled = getattr(fitted, "zones", None) or {}

    non_xrays = {}
    for corpus, items in non_xray_corpora(DATA).items():
        z = zones(predictor, [image for _, image in items])
        z["missed"] = [name for (name, _), check in zip(items, z["checks"]) if check != "refuse"]
        z["lowest_distance"] = min((d for d in z["distances"] if d is not None), default=None)
        non_xrays[corpus] = z

    transformed = {name: zones(predictor, images) for name, images in transformed_sets(greys, args.transformed).items()}

    record = predictor.info
    lines = [
        "## Genuine chest X-rays (should be answered)\n",
        table(["set", "refused", "answered with a caution", "median distance"],
              [[name, pct(z["refused"]), pct(z["cautioned"]),
                f"{np.median([d for d in z['distances'] if d is not None]):.1f}"] for name, z in genuine.items()]
              + [[f"{name.replace('_', ' ')} ({z['n']} films; recorded by finalize, `pneumoscope train`)",
                  pct(z["refused"]), pct(z["cautioned"]), f"{z['median_distance']:.1f}"]
                 for name, z in pooled.items() if name == "stressed_pool" and not args.pool]),
        "\n## Not chest X-rays (should be refused)\n",
        table(["corpus", "images", "refused", "lowest distance", "not refused"],
              [[name, str(z["n"]), pct(z["refused"]), "n/a" if z["lowest_distance"] is None else f"{z['lowest_distance']:.1f}",
                ", ".join(z["missed"]) or "none"] for name, z in non_xrays.items()]
              + [[f"validation X-rays, {name}", str(z["n"]), pct(z["refused"]), "", ""] for name, z in transformed.items()]),
        "\nSecond reading for films on their side (polarity raises the doubt, the film turned a quarter "
        "either way settles it): "
        + "; ".join(f"{name.split(' (')[0]}: {z['sideways_doubt']} of {z['n']} in doubt, {z['refused_on_side']} refused as on their side"
                    for name, z in {**genuine, **{f'validation X-rays, {k}': v for k, v in transformed.items()}}.items()) + ".\n",
        f"\nLines: caution beyond distance {predictor.ood_caution or float('nan'):.1f}, refusal beyond "
        f"{predictor.ood_threshold or float('nan'):.1f}. Corpora described in `pneumoscope/evaluation/hard_negatives/`:\n",
        *[f"- {kind}: {text}" for kind, text in CORPORA.items()],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    strip = lambda z: {k: v for k, v in z.items() if k not in ("distances", "checks")}  # noqa: E731
    figures = {
        "model": shown_path(args.model), "command": COMMAND,
        "caution_distance": predictor.ood_caution, "refuse_distance": predictor.ood_threshold,
        "genuine": {k: strip(v) for k, v in genuine.items()},
        "non_xrays": {k: strip(v) for k, v in non_xrays.items()},
        "transformed_xrays": {k: strip(v) for k, v in transformed.items()},
        "validation": record.get("validation") and {"auc": record["validation"].get("auc")},
    }
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "ood.json").write_text(json.dumps(figures, indent=2))
    (docs / "ood.md").write_text(f"# Is it a chest X-ray? The check, measured\n\nCommand: `{COMMAND}`\n\n{text}")
    if args.card:
        add_card_section(args.model, f"Not-a-chest-X-ray check, both directions (`{COMMAND}`)", text)


if __name__ == "__main__":
    main()
