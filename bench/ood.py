"""How well does the "is this a chest X-ray?" check work? Prints, and writes docs/ood.{md,json}:

- the share of validation X-rays (the patient-level split of the bundled model) wrongly flagged;
- the share of non-X-ray images flagged (scikit-image samples + generated images);
- the share of transformed X-rays flagged (heavily cropped, inverted, rotated 90°).

Run: .venv/bin/python bench/ood.py [--model DIR] [--manifest CSV] [--card]
``--card`` also records the figures in the model's card (model.json "card_sections" + MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from pneumoscope.data.collection import read_manifest  # noqa: E402
from pneumoscope.data.images import decode_image  # noqa: E402
from pneumoscope.evaluation.ood_sets import TRANSFORMS, generated_images, skimage_images  # noqa: E402
from pneumoscope.inference.predictor import Predictor  # noqa: E402
from pneumoscope.markdown import shown_path  # noqa: E402
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR  # noqa: E402
from pneumoscope.models.card import add_card_section  # noqa: E402


def flagged(predictor: Predictor, images: list) -> np.ndarray:
    results = predictor.predict_many(images, heatmap=False, batch_size=32)
    return np.array([not r.is_chest_xray for r in results])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--manifest", default=str(DEFAULT_MODEL_DIR / "split_manifest.csv"))
    parser.add_argument("--transformed", type=int, default=150, help="validation X-rays per transform")
    parser.add_argument("--card", action="store_true")
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    val = [r for r in read_manifest(args.manifest) if r.split == "val"]
    val_flags = flagged(predictor, [r.path for r in val])

    others = list(skimage_images()) + list(generated_images())
    other_flags = flagged(predictor, [image for _, image in others])
    missed = [name for (name, _), flag in zip(others, other_flags) if not flag]

    rng = np.random.default_rng(0)
    chosen = [val[i] for i in rng.choice(len(val), size=min(args.transformed, len(val)), replace=False)]
    greys = [decode_image(r.path).grey for r in chosen]
    transformed = {name: float(flagged(predictor, [fn(g) for g in greys]).mean()) for name, fn in TRANSFORMS.items()}

    figures = {
        "model": shown_path(args.model),
        "val_xrays": {"n": len(val), "flagged": int(val_flags.sum()), "rate": float(val_flags.mean())},
        "non_xrays": {"n": len(others), "flagged": int(other_flags.sum()), "rate": float(other_flags.mean()), "missed": missed},
        "transformed_xrays": {"n_each": len(chosen), "rates": transformed},
    }
    lines = [
        "| set | images | flagged as not a chest X-ray |",
        "|---|---:|---:|",
        f"| validation chest X-rays (should not be flagged) | {len(val)} | {100 * val_flags.mean():.1f} % |",
        f"| non-X-ray images: scikit-image samples + generated | {len(others)} | {100 * other_flags.mean():.1f} % |",
        *[f"| validation X-rays, {name} | {len(chosen)} | {100 * rate:.1f} % |" for name, rate in transformed.items()],
    ]
    table = "\n".join(lines)
    note = f"\nNon-X-rays not flagged: {', '.join(missed) if missed else 'none'}.\n"
    print(table + note)
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "ood.json").write_text(json.dumps(figures, indent=2))
    (docs / "ood.md").write_text(
        "# Is it a chest X-ray? The check, measured\n\nCommand: `.venv/bin/python bench/ood.py --card`\n\n" + table + note
    )
    if args.card:
        add_card_section(args.model, "Out-of-distribution check, measured (bench/ood.py)", table + note)


if __name__ == "__main__":
    main()
