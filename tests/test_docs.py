"""The figures the documents quote are the ones their sources hold, so they cannot drift again.

The README's headline table is read from ``docs/comparison_val_split/comparison.json`` (written by
the ``pneumoscope compare`` command the README gives), the bundled model's figures and threshold
from its ``model.json``, and ``docs/api.md`` (written by ``docs/api_example.py`` from a live
server) must show the bundled model's threshold.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def _row(label: str) -> list[str]:
    """The cells of the README's clean-validation table row that starts with ``label``."""
    section = README.split("### Clean validation", 1)[1].split("\n\n", 2)[2]
    for line in section.splitlines():
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
        if cells and cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in the README's clean-validation table")


def test_readme_headline_table_is_the_comparison_it_cites() -> None:
    models = {m["name"]: m["metrics"] for m in json.loads(
        (REPO / "docs" / "comparison_val_split" / "comparison.json").read_text(encoding="utf-8"))["models"]}
    columns = [models["baseline"], models["improved"], models["robust_subtype"]]
    assert _row("AUC") == [f"{m['auc']:.4f}" for m in columns]
    assert _row("accuracy") == [f"{100 * m['accuracy']:.1f} %" for m in columns]
    assert _row("sensitivity (PNEUMONIA recall)") == [f"{100 * m['sensitivity']:.1f} %" for m in columns]
    assert _row("specificity (NORMAL recall)") == [f"{100 * m['specificity']:.1f} %" for m in columns]
    assert _row("NORMAL X-rays called PNEUMONIA") == [f"{m['confusion_matrix'][0][1]} of {sum(m['confusion_matrix'][0])}"
                                                       for m in columns]


def test_bundled_figures_in_the_docs_are_the_models() -> None:
    meta = json.loads((REPO / "src" / "pneumoscope" / "weights" / "default" / "model.json").read_text())
    validation = meta["validation"]
    section = README.split("### Films from other series: the bundled ensemble", 1)[1].split("### ", 1)[0]
    assert f"**threshold {meta['threshold']:.3f}**" in section
    assert f"AUC **{validation['auc']:.4f}**" in section
    ood = meta["ood"]  # the check's lines and the pool's refusals, as fitted
    assert f"Caution beyond **{ood['caution_distance']:.1f}**" in section
    assert f"refusal beyond\n**{ood['distance_threshold']:.1f}**" in section
    assert f"**{100 * ood['zones']['stressed_pool']['refused']:.1f} %**" in section
    api = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    quoted = {float(value) for value in re.findall(r"'threshold': ([0-9.]+)", api)}
    assert quoted == {meta["threshold"]}, quoted
    assert "/work/" not in api and "/root/" not in api, "docs/api.md quotes a developer's absolute path"


def test_readme_lever_rows_are_the_study_it_cites() -> None:
    """The README quotes rows of docs/levers.md (bench/ensemble_levers.py): each must be there as written."""
    section = README.split("**What moves the rest, measured**", 1)[1].split("\n\n- ", 1)[0]
    quoted = [line for line in section.splitlines() if line.startswith("| ") and "target" not in line and "members" not in line]
    study = (REPO / "docs" / "levers.md").read_text(encoding="utf-8").splitlines()
    assert len(quoted) >= 3
    assert all(line in study for line in quoted), [line for line in quoted if line not in study]
