"""``pneumoscope stress``: how a model's answers move when the same films are acquired differently.

Clean validation drawn from the training folder cannot see a shortcut: the cue that predicts the
label there (framing, squeeze, sharpness) is present in its validation images too. This report
scores every labelled image again after each perturbation family of ``data/perturb.py`` at three
strengths and reports, per condition, AUC, sensitivity and specificity at the model's own
threshold, and how many labels flip against the unperturbed image. It also pools the clean images
with the targets' stressed set, and shows where each threshold rule would put the threshold on
that pool and what it gives on the strongest perturbations (which no rule saw).

Scoring goes through the :class:`~pneumoscope.inference.predictor.Predictor`, the code users run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pneumoscope.config import ConfigError, ThresholdConfig
from pneumoscope.data.cache import decode_all
from pneumoscope.data.collection import load_evaluation_set
from pneumoscope.data.perturb import FAMILIES, STRESSED_SET, perturb_images, stressed_pool
from pneumoscope.evaluation.metrics import compute_metrics, predictions
from pneumoscope.evaluation.originals import originals_markdown
from pneumoscope.evaluation.report import _write_json
from pneumoscope.markdown import percent as _pct, shown_path, table
from pneumoscope.models.decision import choose_threshold, describe_rule

RULES: tuple[ThresholdConfig, ...] = (
    ThresholdConfig(rule="min_sensitivity", min_sensitivity=0.97),
    ThresholdConfig(rule="youden"),
    ThresholdConfig(rule="cost", cost_ratio=2.0),
    ThresholdConfig(rule="cost", cost_ratio=4.0),
    ThresholdConfig(rule="prior", prior=0.5),
    ThresholdConfig(rule="fixed", value=0.5),
)
"""The threshold rules the report compares (issue 11): the model's own rule is one of them or is shown beside."""

TARGETS = {"stressed_auc": 0.99, "stressed_specificity": 0.95, "stressed_sensitivity": 0.97, "clean_auc": 0.99}


def _rates(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUC, sensitivity, specificity, accuracy (no bootstrap: hundreds of conditions, one pass each)."""
    m = compute_metrics(labels, probs, threshold, n_boot=0)
    return {k: m[k] for k in ("n", "auc", "sensitivity", "specificity", "accuracy", "confusion_matrix")}


def _subset(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    """Indices of the first ``per_class`` images of each class (in listing order), or all."""
    if per_class is None:
        return np.arange(len(labels))
    keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in (0, 1)])
    return np.sort(keep)


def run_stress(
    root: str | Path,
    split: str = "val",
    model: str | Path | None = None,
    out: str | Path = "stress",
    *,
    per_class: int | None = None,
    seed: int = 0,
    families: tuple[str, ...] | None = None,
    progress: bool = True,
    quiet: bool = False,
    originals: str | Path | None = None,
) -> dict[str, Any]:
    """Score ``model`` on ``root``'s ``split`` and on every perturbed copy; write ``stress.json``,
    ``stress.md`` and ``stress.png`` into ``out``. Returns the report. ``originals``: a folder of
    full-resolution films whose 224 px copies are in the training folder; each pair is compared
    (``evaluation/originals``)."""
    from pneumoscope.inference.predictor import Predictor

    chosen = tuple(families) if families else tuple(FAMILIES)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        raise ConfigError(f"unknown perturbation families {', '.join(unknown)}; known: {', '.join(FAMILIES)}")
    data = load_evaluation_set(root, split)
    keep = _subset(data.labels, per_class)
    labels = data.labels[keep]
    paths = [data.paths[i] for i in keep]
    predictor = Predictor.load(model)
    images = decode_all(paths, predictor.image_size, progress=progress)
    threshold = predictor.threshold

    subtypes = data.subtypes[keep]
    subtype = _SubtypeView(subtypes, predictor.subtype_threshold) if predictor.has_subtype else None
    clean_scores = predictor.score_pixels(images)
    clean_probs, clean_ood, clean_bacterial = clean_scores.probs, clean_scores.ood, clean_scores.p_bacterial
    pooled_zones = [clean_scores]
    clean_label = predictions(clean_probs, threshold)
    clean = {**_rates(labels, clean_probs, threshold), "ood_flagged": _share(clean_ood)}
    if subtype:
        clean.update(subtype.rates(clean_bacterial))
    scored: dict[tuple[str, float], np.ndarray] = {}
    scored_bacterial: dict[tuple[str, float], np.ndarray] = {}
    conditions = []
    wanted = {(f, s) for f in chosen for s in FAMILIES[f].strengths} | set(STRESSED_SET)
    order = [(f.name, s) for f in FAMILIES.values() for s in f.strengths if (f.name, s) in wanted]
    for family, strength in _progress(order, progress):
        scores = predictor.score_pixels(perturb_images(images, family, strength, seed))
        probs, ood, bacterial = scores.probs, scores.ood, scores.p_bacterial
        if (family, strength) in STRESSED_SET:
            pooled_zones.append(scores)
        scored[(family, strength)] = probs
        if subtype:
            scored_bacterial[(family, strength)] = bacterial
        if family not in chosen:
            continue
        flipped = predictions(probs, threshold) != clean_label
        conditions.append({
            **(subtype.rates(bacterial, clean_bacterial) if subtype else {}),
            "family": family,
            "strength": strength,
            "level": FAMILIES[family].strengths.index(strength) + 1,
            "unit": FAMILIES[family].unit,
            **_rates(labels, probs, threshold),
            "flip_rate": float(flipped.mean()),
            "normal_to_pneumonia": int((flipped & (labels == 0)).sum()),
            "pneumonia_to_normal": int((flipped & (labels == 1)).sum()),
            "mean_abs_change": float(np.abs(probs - clean_probs).mean()),
            "ood_flagged": _share(ood),
        })

    pooled_probs, pooled_labels = stressed_pool(clean_probs, scored, labels)
    strong = [(f.name, f.strengths[-1]) for f in FAMILIES.values()]
    strong_probs = np.concatenate([scored[c] for c in strong if c in scored])
    strong_labels = np.tile(labels, len(strong_probs) // len(labels))
    stressed = {**_rates(pooled_labels, pooled_probs, threshold), **_zone_rates(pooled_zones)}
    if subtype:
        pooled_bacterial, pooled_subtypes = stressed_pool(clean_bacterial, scored_bacterial, subtypes)
        stressed.update(_SubtypeView(pooled_subtypes, predictor.subtype_threshold).rates(pooled_bacterial))
    report: dict[str, Any] = {
        "model": {"name": predictor.name, "path": shown_path(predictor.model_path), "threshold": threshold,
                  "temperature": predictor.temperature, "backend": predictor.backend,
                  "subtype_threshold": predictor.subtype_threshold},
        "data": {**data.describe(), "n_used": int(len(labels)), "n_normal": int((labels == 0).sum()),
                 "n_pneumonia": int((labels == 1).sum()), "per_class": per_class},
        "seed": seed,
        "clean": {**clean, **_zone_rates([clean_scores])},
        "conditions": conditions,
        "stressed": {**stressed, "conditions": [list(c) for c in STRESSED_SET]},
        "targets": {
            "goals": TARGETS,
            "met": {
                "stressed_auc": stressed["auc"] >= TARGETS["stressed_auc"],
                "stressed_specificity": stressed["specificity"] >= TARGETS["stressed_specificity"],
                "stressed_sensitivity": stressed["sensitivity"] >= TARGETS["stressed_sensitivity"],
                "clean_auc": clean["auc"] >= TARGETS["clean_auc"],
            },
        },
        "threshold_rules": _compare_rules(
            pooled_labels, pooled_probs, strong_labels, strong_probs, labels, clean_probs, threshold
        ),
    }
    if originals:
        from pneumoscope.evaluation.originals import compare_originals, original_pairs

        report["originals"] = compare_originals(predictor, original_pairs(originals))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(report, out / "stress.json")
    (out / "stress.md").write_text(stress_markdown(report), encoding="utf-8")
    plot_stress(report, out / "stress.png")
    if not quiet:
        print(summary_lines(report))
        print(f"report: {out / 'stress.md'}")
    return report


def _zone_rates(scores: list[Any]) -> dict[str, float | None]:
    """Shares of images the not-a-chest-X-ray check refuses and cautions, by feature distance alone."""
    if any(s.ood is None for s in scores):
        return {"ood_refused": None, "ood_cautioned": None}
    refused = np.concatenate([s.ood for s in scores])
    cautioned = None if any(s.cautioned is None for s in scores) else np.concatenate([s.cautioned for s in scores])
    return {"ood_refused": float(refused.mean()), "ood_cautioned": None if cautioned is None else float(cautioned.mean())}


class _SubtypeView:
    """The subtype head's figures on the PNEUMONIA films of known subtype, at its own threshold."""

    def __init__(self, subtypes: np.ndarray, threshold: float | None) -> None:
        self.known = subtypes >= 0
        self.targets = subtypes[self.known]
        self.threshold = float(threshold or 0.5)

    def rates(self, p_bacterial: np.ndarray, clean: np.ndarray | None = None) -> dict[str, Any]:
        if len(np.unique(self.targets)) < 2:
            return {}
        p = p_bacterial[self.known]
        r = _rates(self.targets, p, self.threshold)
        out = {"subtype_auc": r["auc"], "subtype_accuracy": r["accuracy"]}
        if clean is not None:
            out["subtype_flips"] = int((predictions(p, self.threshold) != predictions(clean[self.known], self.threshold)).sum())
        return out


def _share(flags: np.ndarray | None) -> float | None:
    return None if flags is None else float(np.mean(flags))


def _progress(items: list, enabled: bool) -> Any:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="perturbations", unit="condition")


def _compare_rules(
    pooled_labels: np.ndarray, pooled_probs: np.ndarray, strong_labels: np.ndarray, strong_probs: np.ndarray,
    clean_labels: np.ndarray, clean_probs: np.ndarray, model_threshold: float,
) -> list[dict[str, Any]]:
    """Each rule's threshold chosen on the stressed pool, then measured there, on the clean images
    and on the strongest perturbation of every family (pooled; none of them was in the choice)."""
    rows = [("the model's own threshold", model_threshold)]
    rows += [(describe_rule(rule, "stressed"), choose_threshold(pooled_labels, pooled_probs, rule)) for rule in RULES]
    table = []
    for name, t in rows:
        entry: dict[str, Any] = {"rule": name, "threshold": float(t)}
        for key, (y, p) in {"clean": (clean_labels, clean_probs), "stressed": (pooled_labels, pooled_probs),
                            "strongest": (strong_labels, strong_probs)}.items():
            r = _rates(y, p, t)
            entry[key] = {"sensitivity": r["sensitivity"], "specificity": r["specificity"]}
        table.append(entry)
    return table


def summary_lines(report: dict[str, Any]) -> str:
    c, s = report["clean"], report["stressed"]
    return (
        f"{report['model']['name']} (threshold {report['model']['threshold']:.3f}) on {report['data']['n_used']} images\n"
        f"  clean:    AUC {c['auc']:.4f}  sensitivity {_pct(c['sensitivity'])}  specificity {_pct(c['specificity'])}\n"
        f"  stressed: AUC {s['auc']:.4f}  sensitivity {_pct(s['sensitivity'])}  specificity {_pct(s['specificity'])}"
        + (f"\n  subtype (bacterial vs viral) AUC: clean {c['subtype_auc']:.4f}, stressed {s['subtype_auc']:.4f}"
           if "subtype_auc" in c else "")
    )


def stress_table(report: dict[str, Any]) -> str:
    """The per-condition markdown table (for the report, the model card and the README)."""
    n0, n1 = report["data"]["n_normal"], report["data"]["n_pneumonia"]
    c = report["clean"]
    sub = "subtype_auc" in c  # a model with a subtype head: its AUC and flipped subtypes, two more columns
    lines = [
        f"| perturbation | strength | AUC | sensitivity | specificity | NORMAL → PNEUMONIA (of {n0}) | PNEUMONIA → NORMAL (of {n1}) |"
        + (" subtype AUC | subtype flips |" if sub else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if sub else ""),
    ]
    lines.append(f"| none (clean) | | {c['auc']:.4f} | {_pct(c['sensitivity'])} | {_pct(c['specificity'])} | | |"
                 + (f" {c['subtype_auc']:.4f} | |" if sub else ""))
    for row in report["conditions"]:
        lines.append(
            f"| {row['family']} | {row['strength']:g} | {row['auc']:.4f} | {_pct(row['sensitivity'])} | "
            f"{_pct(row['specificity'])} | {row['normal_to_pneumonia']} | {row['pneumonia_to_normal']} |"
            + (f" {row['subtype_auc']:.4f} | {row['subtype_flips']} |" if sub else "")
        )
    s = report["stressed"]
    lines.append(
        f"| **stressed pool** (clean + crops 0.9-0.7 + others moderate) | | **{s['auc']:.4f}** | "
        f"**{_pct(s['sensitivity'])}** | **{_pct(s['specificity'])}** | | |"
        + (f" **{s['subtype_auc']:.4f}** | |" if sub else "")
    )
    return "\n".join(lines)


def rules_table(report: dict[str, Any]) -> str:
    lines = [
        "| rule (chosen on the stressed pool) | threshold | clean sens. / spec. | stressed sens. / spec. | strongest sens. / spec. |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in report["threshold_rules"]:
        cells = " | ".join(
            f"{_pct(row[k]['sensitivity'])} / {_pct(row[k]['specificity'])}" for k in ("clean", "stressed", "strongest")
        )
        lines.append(f"| {row['rule']} | {row['threshold']:.3f} | {cells} |")
    return "\n".join(lines)


def stress_markdown(report: dict[str, Any]) -> str:
    m, d = report["model"], report["data"]
    met = report["targets"]["met"]
    goals = report["targets"]["goals"]
    verdict = ", ".join(f"{k} ≥ {goals[k]:g}: {'met' if v else 'NOT met'}" for k, v in met.items())
    return f"""# Stress report: `{m['name']}`

Model: `{m['path']}` (threshold {m['threshold']:.4f}, temperature {m['temperature']:.3f}, scored with {m['backend']}).
Images: {d['n_used']} ({d['n_normal']} NORMAL, {d['n_pneumonia']} PNEUMONIA) of `{d['root']}` ({d['split']}){'' if d['per_class'] is None else f', the first {d["per_class"]} of each class'}.
Perturbations: seeded (seed {report['seed']}), applied to the network-sized image; each image's answer is
compared with its own unperturbed answer. Families and strengths: `pneumoscope/data/perturb.py`.

![metrics against strength](stress.png)

{stress_table(report)}

Targets (issue 11): {verdict}.

## Where each threshold rule would put the threshold
Chosen on the stressed pool, then measured on the clean images, on the pool, and on the strongest
strength of every family pooled (never part of any choice):

{rules_table(report)}

{zones_markdown(report)}
{originals_markdown(report.get("originals") or {})}"""


def zones_markdown(report: dict[str, Any]) -> str:
    """What the not-a-chest-X-ray check does to these genuine films (by feature distance alone)."""
    clean, stressed = report["clean"], report["stressed"]
    if clean.get("ood_refused") is None:
        return ""
    cautioned = (lambda r: "n/a (two zones)" if r.get("ood_cautioned") is None else _pct(r["ood_cautioned"]))
    return ("## Genuine films and the not-a-chest-X-ray check\n\n"
            + table(["", "refused", "answered with a caution"],
                    [["clean validation", _pct(clean["ood_refused"]), cautioned(clean)],
                     ["stressed pool", _pct(stressed["ood_refused"]), cautioned(stressed)]]) + "\n")


def plot_stress(report: dict[str, Any], path: Path) -> Path:
    """Metric against strength level (0 = clean), one line per family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("auc", "AUC"), ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("flip_rate", "labels flipped"))
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.4))
    families = list(dict.fromkeys(row["family"] for row in report["conditions"]))
    cmap = plt.get_cmap("tab20")
    clean = {**report["clean"], "flip_rate": 0.0}
    for ax, (key, title) in zip(axes, metrics):
        for index, family in enumerate(families):
            rows = [row for row in report["conditions"] if row["family"] == family]
            ax.plot([0] + [r["level"] for r in rows], [clean[key]] + [r[key] for r in rows],
                    marker="o", color=cmap(index), label=family)
        ax.set_title(title)
        ax.set_xticks([0, 1, 2, 3], ["clean", "mild", "moderate", "strong"])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("value")
    axes[-1].legend(fontsize=8, loc="upper left", ncols=2)
    fig.suptitle(f"{report['model']['name']}: threshold {report['model']['threshold']:.3f}, "
                 f"{report['data']['n_used']} images")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


COMPARISON_ROWS: tuple[tuple[str, float], ...] = (
    ("crop_center", 0.8), ("crop_center", 0.7), ("crop_offcentre", 0.7), ("zoom_out", 0.7), ("aspect", 1.5),
    ("resolution", 0.3), ("blur", 2.0), ("noise", 0.08), ("contrast", 2.0), ("rotate", 15),
)
"""The conditions the side-by-side table shows: the strongest of the families that move answers most."""


def _condition(report: dict[str, Any], family: str, strength: float) -> dict[str, Any] | None:
    return next((c for c in report["conditions"] if c["family"] == family and c["strength"] == strength), None)


def _extra_rows(reports: list[dict[str, Any]]) -> list[list[str]]:
    """The issue-20 figures: zoom-out specificity, the subtype under zoom-out, the X-ray check on
    genuine films, and the originals against their copies."""
    def cell(report: dict[str, Any], make: Any) -> str:
        try:
            return make(report)
        except (KeyError, TypeError):
            return "n/a"

    zoom = lambda r: _condition(r, "zoom_out", 0.7)  # noqa: E731
    orig = lambda r: r["originals"]  # noqa: E731
    makers = [
        ("zoom_out 0.7: specificity", lambda r: _pct(zoom(r)["specificity"])),
        ("subtype AUC: clean / stressed pool / zoom_out 0.7",
         lambda r: f"{r['clean']['subtype_auc']:.3f} / {r['stressed']['subtype_auc']:.3f} / {zoom(r)['subtype_auc']:.3f}"),
        ("X-ray check, stressed pool: refused / cautioned",
         lambda r: f"{_pct(r['stressed']['ood_refused'])} / "
                   + ("n/a" if r["stressed"]["ood_cautioned"] is None else _pct(r["stressed"]["ood_cautioned"]))),
        ("originals vs 224 px copies: same label, max |Δp|",
         lambda r: f"{orig(r)['same_label']} of {orig(r)['n']}, {orig(r)['max_abs_delta_p']:.3f}"),
        ("originals at full resolution: refused / cautioned",
         lambda r: f"{orig(r)['originals_refused']} / {orig(r)['originals_cautioned']} of {orig(r)['n']}"),
    ]
    return [[title, *(cell(r, make) for r in reports)] for title, make in makers]


def stress_comparison(reports: list[dict[str, Any]], out: Path, command: str) -> Path:
    """``comparison.md``: several models' stress reports side by side (specificity / sensitivity)."""
    names = [r["model"]["name"] for r in reports]
    rows = [["threshold", *(f"{r['model']['threshold']:.3f}" for r in reports)]]
    for key, title in (("clean", "clean"), ("stressed", "stressed pool")):
        rows.append([f"{title}: AUC", *(f"{r[key]['auc']:.4f}" for r in reports)])
        rows.append([f"{title}: sensitivity / specificity",
                     *(f"{_pct(r[key]['sensitivity'])} / {_pct(r[key]['specificity'])}" for r in reports)])
    for family, strength in COMPARISON_ROWS:
        cells = []
        for r in reports:
            row = next((c for c in r["conditions"] if c["family"] == family and c["strength"] == strength), None)
            cells.append("n/a" if row is None else
                         f"{row['normal_to_pneumonia']} / {row['pneumonia_to_normal']} (AUC {row['auc']:.3f})")
        rows.append([f"{family} {strength:g}: flips N→P / P→N", *cells])
    rows.extend(_extra_rows(reports))
    figures = table(["", *(f"`{n}`" for n in names)], rows)
    d = reports[0]["data"]
    text = (f"# Stress reports side by side\n\nCommand: `{command}`\n\n"
            f"{d['n_used']} images ({d['n_normal']} NORMAL, {d['n_pneumonia']} PNEUMONIA) of `{d['root']}` ({d['split']}); "
            "each model at its own threshold. Flips are counted against each image's own unperturbed answer. "
            "Full tables: each model's folder.\n\n" + figures + "\n")
    path = Path(out) / "comparison.md"
    path.write_text(text, encoding="utf-8")
    return path
