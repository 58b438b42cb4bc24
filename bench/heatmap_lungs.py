"""Where do the heatmaps go? The share of each map's mass inside the lung fields, over the bundled
model's validation films, per true class and per outcome, for the app's Grad-CAM and for
Grad-CAM++ side by side. Prints, and writes docs/heatmaps.{md,json} and the grids
docs/heatmaps/grid*.png.

- Lung fields: boxes from lungs-finder (``evaluation/lungs.py``; ``pip install -e ".[heatmaps]"``),
  found on the very image the map is drawn over. Its hit rate (both lungs found; both found and
  plausibly placed) and its time per film are measured here too.
- Maps: ``Predictor.predict_many(paths, heatmap=True)``, the path the app, the CLI and the API
  take, so the measurement is of what users see (each map scaled to [0, 1], upsampled to the
  image); the predictor's ``heatmap_method`` is set to each method in turn.
- Mass inside: the map's sum over the union of the two boxes over its sum over the image. A film
  where a lung was not found is left out of the mass figures (the hit rate counts it); the figures
  over plausibly placed pairs alone are given too. Chance: the share of the image the boxes
  cover, what a uniform map would score.
- The grid: validation films drawn by a fixed seed (``HeatmapAuditConfig``: 4 true positives,
  2 false positives, 2 false negatives at the model's own threshold), never chosen by hand.
- Timing: file -> probability + heatmap, one film at a time, the methods taking turns on each
  film, p50 over the same films in the same run.

Run: .venv/bin/python bench/heatmap_lungs.py [--model DIR] [--manifest CSV] [--limit N] [--finder-side PX] [--card]
``--card`` also records the figures in the model's card (model.json "card_sections" + MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from pneumoscope.config import CLASS_NAMES, HEATMAP_METHOD, CamMethod, HeatmapAuditConfig  # noqa: E402
from pneumoscope.data.collection import read_manifest  # noqa: E402
from pneumoscope.evaluation.lungs import LungBoxes, area_share, find_lung_boxes, mass_inside, peak_inside  # noqa: E402
from pneumoscope.inference.explain import overlay_heatmap  # noqa: E402
from pneumoscope.inference.predictor import Predictor  # noqa: E402
from pneumoscope.machine import describe  # noqa: E402
from pneumoscope.markdown import percent, shown_path, table  # noqa: E402
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR  # noqa: E402
from pneumoscope.models.card import add_card_section  # noqa: E402

COMMAND = ".venv/bin/python bench/heatmap_lungs.py --card"
DOCS = REPO / "docs"
NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}
OUTCOMES = ("TP", "FN", "FP", "TN")


def grid_path(method: CamMethod) -> Path:
    """docs/heatmaps/grid.png for the app's method, grid_<method>.png for another."""
    suffix = "" if method == HEATMAP_METHOD else "_" + method.replace("+", "p")
    return DOCS / "heatmaps" / f"grid{suffix}.png"


def finite(value: object) -> object:
    """NaN as None, so that the JSON is valid; anything else as it is."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def share(value: float | None) -> str:
    """A share as the documents write it; ``n/a`` for no measurement."""
    return "n/a" if value is None or not np.isfinite(value) else percent(value)


def outcome(truth: int, label: str) -> str:
    """TP / FP / FN / TN of one film at the model's threshold (PNEUMONIA positive)."""
    said = label == CLASS_NAMES[1]
    return ("T" if said == bool(truth) else "F") + ("P" if said else "N")


def placed(heatmap: np.ndarray, boxes: LungBoxes) -> dict:
    """One map's mass inside the boxes (NaN unless both lungs were found), the boxes' area share
    and whether its hottest point is inside."""
    inside = boxes.mask()
    if not boxes.both:
        return {"mass_inside": float("nan"), "area": area_share(inside), "peak_inside": False}
    return {"mass_inside": mass_inside(heatmap, inside), "area": area_share(inside),
            "peak_inside": peak_inside(heatmap, inside)}


def masses(group: list[dict]) -> dict:
    """Mass figures over the films of ``group`` that have a measurement."""
    measured = [f for f in group if np.isfinite(f["mass_inside"])]
    if not measured:
        return {"n": 0}
    mass = np.array([f["mass_inside"] for f in measured])
    area = np.array([f["area"] for f in measured])
    return {"n": len(measured), "mean": float(mass.mean()), "median": float(np.median(mass)),
            "chance": float(area.mean()), "above_chance": float(np.mean(mass > area)),
            "over_half": float(np.mean(mass > 0.5)), "peak_inside": float(np.mean([f["peak_inside"] for f in measured]))}


def summary(films: list[dict]) -> dict:
    """A group's hit rates, and its mass figures over films with both lungs found and over
    plausibly placed pairs."""
    n = max(len(films), 1)
    return {"n": len(films), "both_found": sum(f["both"] for f in films) / n,
            "plausible": sum(f["plausible"] for f in films) / n,
            "found": masses([f for f in films if f["both"]]),
            "plausible_pairs": masses([f for f in films if f["plausible"]])}


def groups_of(films: list[dict]) -> dict[str, dict]:
    """The summary per true class (PNEUMONIA first) and per outcome."""
    groups = {name: summary([f for f in films if f["truth"] == name]) for name in reversed(CLASS_NAMES)}
    groups.update({kind: summary([f for f in films if f["outcome"] == kind]) for kind in OUTCOMES})
    return groups


def draw(films: list[dict], audit: HeatmapAuditConfig) -> tuple[list[dict], list[str]]:
    """The grid's films, drawn by a fixed seed per outcome; notes on any shortfall."""
    rng = np.random.default_rng(audit.grid_seed)
    chosen, notes, short = [], [], 0
    for kind, count in audit.grid_counts.items():
        pool = [f for f in films if f["outcome"] == kind]
        if len(pool) < count:
            notes.append(f"only {len(pool)} {kind} among the validation films, not {count}: all are shown")
            short += count - len(pool)
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=min(count, len(pool)), replace=False))]
    if short:
        taken = {f["index"] for f in chosen}
        pool = [f for f in films if f["outcome"] == "TP" and f["index"] not in taken]
        chosen += [pool[i] for i in sorted(rng.choice(len(pool), size=min(short, len(pool)), replace=False))]
        notes.append(f"the {short} missing slots are filled with further true positives")
    return chosen, notes


def draw_grid(chosen: list[dict], predictions: list, boxes: list[LungBoxes], title: str, path: Path,
              tile: int = 300) -> None:
    """The chosen films' overlays (as the app draws them) with the lung boxes, 4 to a row, each
    captioned with its outcome, probability and the map's mass inside the boxes."""
    from PIL import Image, ImageDraw, ImageFont

    font, big = ImageFont.load_default(size=13), ImageFont.load_default(size=16)
    band, columns, top_band = 44, 4, 30
    rows = (len(chosen) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * tile, top_band + rows * (tile + band)), "white")
    draw_on = ImageDraw.Draw(canvas)
    draw_on.text((6, 6), title, fill="black", font=big)
    for slot, film in enumerate(chosen):
        prediction, found = predictions[film["index"]], boxes[film["index"]]
        picture = overlay_heatmap(prediction.image, prediction.heatmap)
        scale = tile / max(picture.size)
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)))
        on_tile = ImageDraw.Draw(picture)
        for name, box in (("R", found.right), ("L", found.left)):
            if box is not None:
                x, y, w, h = (round(v * scale) for v in box)
                on_tile.rectangle((x, y, x + w - 1, y + h - 1), outline="white", width=2)
                on_tile.text((x + 4, y + 2), name, fill="white", font=font)
        left, top = (slot % columns) * tile, top_band + (slot // columns) * (tile + band)
        canvas.paste(picture, (left, top))
        draw_on.text((left + 4, top + tile + 4), f"{film['outcome']}  p = {film['probability']:.3f}  in boxes "
                     f"{share(film['mass_inside'])} (area {share(film['area'])})",
                     fill="black", font=font)
        draw_on.text((left + 4, top + tile + 22), Path(film["path"]).name[:44], fill="#444444", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)  # half the bytes, no visible loss


def timed(predictor: Predictor, paths: list[str], methods: tuple[CamMethod, ...]) -> dict[str, dict[str, float]]:
    """Seconds per film and method, one film at a time, the methods taking turns on each film and
    going first in rotation (after a warm-up), so that the machine's other load and any first-call
    cost fall on all alike:

    - ``p50``, ``p95``: file -> probability + heatmap (``Predictor.predict``), what a user waits for;
    - ``map_p50``: the map alone, from the same Grad-CAM layer activation (one ONNX run per film,
      shared): the only step where the methods differ, steadier on a busy machine.
    """
    from pneumoscope.inference.explain import grad_cam_from_activation

    times: dict[str, list[float]] = {m: [] for m in methods}
    maps: dict[str, list[float]] = {m: [] for m in methods}
    network = predictor.scorer.wait_for_network().net if predictor.backend == "onnxruntime" else None
    for warm in (True, False):
        for turn, path in enumerate(paths[:3] if warm else paths):
            order = methods[turn % len(methods):] + methods[: turn % len(methods)]
            for method in order:
                predictor.heatmap_method = method
                start = time.perf_counter()
                predictor.predict(path, heatmap=True)
                if not warm:
                    times[method].append(time.perf_counter() - start)
            if network is None or warm:
                continue
            pixels = predictor.prepare(path, keep_display=False).pixels[None]
            activation = predictor.scorer.run(["cam_activation"], pixels)[0]
            for method in order:
                start = time.perf_counter()
                grad_cam_from_activation(network, activation, predictor.decision_logit, method)
                maps[method].append(time.perf_counter() - start)
    predictor.heatmap_method = HEATMAP_METHOD
    return {m: {"p50": float(np.median(t)), "p95": float(np.percentile(t, 95)),
                "map_p50": float(np.median(maps[m])) if maps[m] else None} for m, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--manifest", default=str(DEFAULT_MODEL_DIR / "split_manifest.csv"))
    parser.add_argument("--limit", type=int, default=None, help="validation films per class (default: all; "
                        "a limited run is a trial: it writes nothing but what it prints)")
    parser.add_argument("--finder-side", type=int, default=HeatmapAuditConfig().finder_side,
                        help="the side lungs-finder searches at (config.HeatmapAuditConfig.finder_side)")
    parser.add_argument("--card", action="store_true")
    args = parser.parse_args()
    audit = HeatmapAuditConfig(finder_side=args.finder_side)

    load_average = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    predictor = Predictor.load(args.model)
    val = [r for r in read_manifest(args.manifest) if r.split == "val"]
    if args.limit:
        val = [r for label in (0, 1) for r in [r for r in val if r.label == label][: args.limit]]
    paths = [str(r.path) for r in val]
    predictions: dict[str, list] = {}
    for method in audit.methods:
        predictor.heatmap_method = method
        predictions[method] = predictor.predict_many(paths, heatmap=True, batch_size=32)
    predictor.heatmap_method = HEATMAP_METHOD
    shown = predictions[audit.methods[0]]

    boxes, finder_times = [], []
    for prediction in shown:
        start = time.perf_counter()
        boxes.append(find_lung_boxes(prediction.image, audit.finder_side))
        finder_times.append(time.perf_counter() - start)

    films: dict[str, list[dict]] = {}
    for method in audit.methods:
        films[method] = [
            {"index": index, "path": shown_path(row.path), "truth": CLASS_NAMES[row.label], "label": prediction.label,
             "probability": prediction.probability, "outcome": outcome(row.label, prediction.label),
             "both": found.both, "plausible": found.plausible(audit.min_box_area), **placed(prediction.heatmap, found)}
            for index, (row, prediction, found) in enumerate(zip(val, predictions[method], boxes))]
    groups = {method: groups_of(films[method]) for method in audit.methods}

    rng = np.random.default_rng(audit.grid_seed)
    timing_paths = [paths[i] for i in rng.choice(len(paths), size=min(audit.timing_films, len(paths)), replace=False)]
    speed = timed(predictor, timing_paths, audit.methods)

    chosen, notes = draw(films[audit.methods[0]], audit)
    figures = {"model": shown_path(args.model), "command": COMMAND, "machine": describe(), "date": str(date.today()),
               "load_average": load_average,
               "films": len(paths), "threshold": predictor.threshold, "config": audit.model_dump(mode="json"),
               "lungs_finder": {"both_found": summary(films[audit.methods[0]])["both_found"],
                                "plausible": summary(films[audit.methods[0]])["plausible"],
                                "seconds_p50": float(np.median(finder_times)),
                                "seconds_p95": float(np.percentile(finder_times, 95))},
               "methods": {m: {"groups": groups[m], "heatmap_seconds": speed[m], "timed_films": len(timing_paths),
                               "labelled_pneumonia": summary([f for f in films[m] if f["label"] == CLASS_NAMES[1]]),
                               "grid": [{k: finite(films[m][f["index"]][k]) for k in ("path", "outcome", "probability",
                                                                                     "mass_inside", "area")}
                                        for f in chosen]}
                           for m in audit.methods},
               "grid_notes": notes}
    text = report(figures, predictor.name, "heatmaps/")
    print(text)
    if args.limit:
        return
    for method in audit.methods:
        draw_grid([films[method][f["index"]] for f in chosen], predictions[method], boxes,
                  f"{NAMES[method]}, 8 validation films drawn by seed {audit.grid_seed}; white boxes: lungs-finder",
                  grid_path(method))
    (DOCS / "heatmaps.json").write_text(json.dumps(figures, indent=2))
    (DOCS / "heatmaps.md").write_text(f"# Where the heatmaps go\n\nCommand: `{COMMAND}`\n\n{text}")
    if args.card:
        add_card_section(args.model, f"Where the heatmaps go (`{COMMAND}`)", report(figures, predictor.name, None))


def verdict(figures: dict) -> list[str]:
    """The plain sentences: where the app's maps go against chance, and whether another method
    earns the default (more of its mass on the lungs, on both classes, within 2x the time)."""
    app = figures["methods"][HEATMAP_METHOD]
    pneumonia, normal = app["groups"][CLASS_NAMES[1]], app["groups"][CLASS_NAMES[0]]
    found, labelled = pneumonia["found"], app["labelled_pneumonia"]["found"]
    lines = []
    if found["n"]:
        where = "inside" if labelled["mean"] > 0.5 else "outside"
        better = "no better than" if found["mean"] <= found["chance"] + 0.05 else "above"
        plausible = pneumonia["plausible_pairs"]
        lines.append(
            f"On PNEUMONIA films, {NAMES[HEATMAP_METHOD]} (the app's map) puts {percent(found['mean'])} of its mass inside "
            f"the lung boxes on average (median {percent(found['median'])}), {better} the {percent(found['chance'])} a "
            f"uniform map would, and its hottest point lies inside them on {percent(found['peak_inside'])} of the films; "
            f"over the {plausible['n']} films whose boxes are plausibly placed, {percent(plausible['mean'])} against "
            f"{percent(plausible['chance'])}. On the films it labels PNEUMONIA, {percent(labelled['mean'])}: "
            f"**most of the heat falls {where} the lungs**"
            + (", and the page's caption under a PNEUMONIA map says so." if where == "outside" else "."))
    if normal["found"]["n"]:
        lines.append(f"On NORMAL films (a map of what lowered the pneumonia score) it puts "
                     f"{percent(normal['found']['mean'])} inside (chance {percent(normal['found']['chance'])}).")
    base = app["heatmap_seconds"]["p50"]
    for method, other in figures["methods"].items():
        if method == HEATMAP_METHOD:
            continue
        p = other["groups"][CLASS_NAMES[1]]["found"]
        q = other["groups"][CLASS_NAMES[0]]["found"]
        ratio = other["heatmap_seconds"]["p50"] / base
        faithful = p["n"] and q["n"] and p["mean"] > found["mean"] and q["mean"] >= normal["found"]["mean"]
        adopted = faithful and ratio <= 2.0
        lines.append(f"{NAMES[method]} on the same layer: {percent(p['mean'])} inside on PNEUMONIA films, "
                     f"{percent(q['mean'])} on NORMAL films, at {ratio:.2f}x the app's heatmap time: "
                     + ("more of the map on the lungs within the budget, so worth adopting." if adopted else
                        "not adopted (" + ("no more of the map on the lungs" if not faithful else "over 2x the time")
                        + ")."))
    return lines


def report(figures: dict, model_name: str, link: str | None) -> str:
    """The Markdown the document and the card share; ``link``: the grids' folder relative to the
    document (None: the card, which lives inside the package, names the files instead)."""
    audit = HeatmapAuditConfig(**figures["config"])
    finder = figures["lungs_finder"]
    methods = figures["methods"]
    app = methods[HEATMAP_METHOD]

    def row(method: str, name: str, key: str) -> list[str]:
        group = methods[method]["groups"][name]
        m = group[key]
        label = f"{NAMES[method]}, {name}"
        if not m["n"]:
            return [label, str(group["n"]), "0", "", "", "", "", ""]
        return [label, str(group["n"]), str(m["n"]), f"{percent(m['mean'])} [{percent(m['median'])}]",
                percent(m["chance"]), percent(m["above_chance"]), percent(m["over_half"]), percent(m["peak_inside"])]

    header = ["map, films", "films", "measured", "mass inside the boxes, mean [median]", "boxes' area (chance)",
              "above chance", "more than half inside", "hottest point inside"]
    classes = [name for name in reversed(CLASS_NAMES)]
    grid_names = {m: grid_path(m).name for m in methods}
    pictures = ([f"![{NAMES[m]} on 8 validation films with the lung boxes]({link}{grid_names[m]})\n" for m in methods]
                if link is not None else
                ["Grids of the same 8 films: " + ", ".join(f"`docs/heatmaps/{grid_names[m]}` ({NAMES[m]})"
                                                             for m in methods) + " in the repository.\n"])
    return "\n".join([
        f"Bundled model `{model_name}`, its patient-level validation split ({figures['films']} films), maps as the app "
        f"draws them (`Predictor.predict_many(heatmap=True)`), threshold {figures['threshold']:.3f}. "
        f"Machine: {figures['machine']}; {figures['date']}.\n",
        *verdict(figures),
        "\n## Lung boxes (lungs-finder 1.0.0)\n",
        table(["films", "n", "both lungs found", "both found, plausibly placed"],
              [[name, str(app["groups"][name]["n"]), percent(app["groups"][name]["both_found"]),
                percent(app["groups"][name]["plausible"])] for name in classes]
              + [["all", str(figures["films"]), percent(finder["both_found"]), percent(finder["plausible"])]]),
        f"\nTime per film: p50 **{1000 * finder['seconds_p50']:.0f} ms**, p95 {1000 * finder['seconds_p95']:.0f} ms (the "
        f"film resized to {audit.finder_side} px, its detectors, the boxes scaled back). Plausibly placed: each box at "
        f"least {percent(audit.min_box_area)} of the image, the right lung's centred in the image's left half and the "
        "left lung's in its right half; the detectors' fallbacks sometimes return a box the size of a rib.\n",
        "## Share of each map's mass inside the lung boxes\n",
        "Films where both lungs were found:\n",
        table(header, [row(m, name, "found") for m in methods for name in (*classes, *OUTCOMES)]),
        "\nFilms whose pair of boxes is plausibly placed:\n",
        table(header, [row(m, name, "plausible_pairs") for m in methods for name in classes]),
        "\nRows by true class, then by outcome at the model's threshold (TP: PNEUMONIA called PNEUMONIA; FN: PNEUMONIA "
        "called NORMAL; FP: NORMAL called PNEUMONIA; TN: NORMAL called NORMAL). A PNEUMONIA-labelled film's map shows "
        "what raised the pneumonia score, a NORMAL-labelled one's what lowered it. The boxes are rectangles: they also "
        "hold some mediastinum, ribs and the diaphragm's dome, so *inside the boxes* is an upper bound of *on lung "
        "tissue*. *Measured*: films with both lungs found and a map that is not empty (where the ReLU leaves nothing, "
        "there is nothing to place); a film where a lung was not found is left out (the hit rate above counts it). The "
        "map's layer is the network's last (7 x 7 at 224 px), so a map is one or two broad blobs.\n",
        "## Time\n",
        table(["map", "file -> probability + heatmap, p50", "p95", "x the app's p50", "the map alone, p50"],
              [[NAMES[m], f"{1000 * v['heatmap_seconds']['p50']:.1f} ms", f"{1000 * v['heatmap_seconds']['p95']:.1f} ms",
                f"{v['heatmap_seconds']['p50'] / app['heatmap_seconds']['p50']:.2f}",
                "n/a" if v["heatmap_seconds"]["map_p50"] is None else f"{1000 * v['heatmap_seconds']['map_p50']:.1f} ms"]
               for m, v in methods.items()]),
        f"\nOne film at a time, {app['timed_films']} validation films, the methods taking turns on each film in the same "
        f"run; load average {figures['load_average']} when it started (on a busy machine absolute times rise above the "
        "README's, and vary between runs). *The map alone*: from the Grad-CAM layer's activation (one ONNX Runtime run "
        "per film, shared) to the map, the only step where the methods differ.\n",
        f"## Eight validation films, drawn by seed {audit.grid_seed}\n",
        *pictures,
        "Drawn, not chosen: " + ", ".join(f"{n} {k}" for k, n in audit.grid_counts.items())
        + (f"; {'; '.join(figures['grid_notes'])}" if figures["grid_notes"] else "")
        + ". White boxes: lungs-finder's right (R) and left (L) lung; each grid's captions give its own map's share "
        "inside them, the list the app's.\n",
        *[f"- {f['outcome']}: `{f['path']}`, p = {f['probability']:.3f}, "
          f"{share(f['mass_inside'])} of the map inside the boxes "
          f"(they cover {percent(f['area'])})" for f in app["grid"]],
    ]) + "\n"


if __name__ == "__main__":
    main()
