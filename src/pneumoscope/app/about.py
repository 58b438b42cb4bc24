"""The About tab's content: a short summary first, then the card, the configuration and the figures.

The summary answers what a visitor asks first (what is this model, how good is it, what must it
not be used for) from the model's own ``model.json``, in both languages; the full card and the
training configuration follow, folded, for whoever wants them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pneumoscope.app.text import DISCLAIMER, DISCLAIMER_ES, LANGUAGES, decimal, decimal_mark
from pneumoscope.languages import PAGE_FIGURES, figure_file
from pneumoscope.markdown import percent


@dataclass(frozen=True)
class About:
    summary: tuple[str, str]
    """English and Spanish Markdown: the model, its validation figures, what it must not be used for."""
    card: str
    """The model card (MODEL_CARD.md) as Markdown, or a line saying there is none."""
    config: str
    """The training configuration (config.yaml), or empty."""
    figures: str
    """The model folder's figures as inline HTML images, one per language (the page's CSS shows
    the one of ``<html lang>``; a figure drawn in English only serves both), or empty."""


def about_content(predictor: Any) -> About:
    folder = getattr(predictor, "model_path", None)
    folder = Path(folder) if folder is not None and Path(folder).is_dir() else None
    name = getattr(predictor, "name", "this model")

    def read(file: str) -> str:
        path = folder / file if folder is not None else None
        return path.read_text(encoding="utf-8") if path is not None and path.is_file() else ""

    card = read("MODEL_CARD.md") or f"No model card found for `{name}` (a model card is the MODEL_CARD.md of a model folder)."
    meta = json.loads(read("model.json") or "{}")
    figures = ""
    if folder is not None:  # the model folder's figures/, when present, in PAGE_FIGURES' order
        figures = "".join(_figure_html(folder / "figures", stem, titles) for stem, titles in PAGE_FIGURES.items())
    if figures:
        figures = f'<div class="ps-figures" id="ps-figures">{figures}</div>'
    return About(summary(predictor, meta), card, read("config.yaml"), figures)


def _figure_html(folder: Path, stem: str, titles: tuple[str, ...]) -> str:
    """One figure as an inline image per language, classed ``ps-en`` / ``ps-es`` for the page's
    CSS; the English file alone serves both when the folder has no other language's."""
    files = {language: folder / figure_file(stem, language) for language in LANGUAGES}
    if not files["en"].is_file():
        return ""
    if not all(path.is_file() for path in files.values()):
        return _image(files["en"], f"ps-figure-{stem}", titles[0])
    return "".join(_image(files[language], f"ps-figure-{stem}" + ("" if language == "en" else f"-{language}"), title,
                          language) for language, title in zip(LANGUAGES, titles))


def _image(path: Path, element_id: str, title: str, language: str | None = None) -> str:
    uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    shown = f' class="ps-{language}" lang="{language}"' if language else ""
    return f'<img{shown} id="{element_id}" src="{uri}" alt="{title}" title="{title}"/>'


def _percent(value: float, spanish: bool = False) -> str:
    return decimal_mark(percent(value), "es" if spanish else "en")


def _number(value: float, digits: int = 3, spanish: bool = False) -> str:
    return decimal(value, digits, "es" if spanish else "en")


def summary(predictor: Any, meta: dict[str, Any]) -> tuple[str, str]:
    """What the model is, its validation figures and its limits, in English and in Spanish."""
    validation = meta.get("validation") or (getattr(predictor, "info", {}) or {}).get("validation") or {}
    stressed = meta.get("validation_stressed") or {}
    subtype = getattr(predictor, "has_subtype", False)
    threshold = predictor.threshold
    texts = []
    for spanish in (False, True):
        pct = lambda v: _percent(v, spanish)  # noqa: E731
        num = lambda v, d=3: _number(v, d, spanish)  # noqa: E731
        if not spanish:
            lines = [f"**`{predictor.name}`**: a convolutional network that reads a paediatric frontal chest X-ray "
                     f"and gives the probability of pneumonia (label PNEUMONIA at {num(threshold)} or above)"
                     + (", and for a pneumonia film whether its pattern is more typical of bacterial or viral "
                        "pneumonia." if subtype else ".")]
        else:
            lines = [f"**`{predictor.name}`**: una red convolucional que lee una radiografía frontal de tórax "
                     f"pediátrica y da la probabilidad de neumonía (etiqueta NEUMONÍA desde {num(threshold)})"
                     + (", y en una placa con neumonía si su patrón es más típico de neumonía bacteriana o vírica."
                        if subtype else ".")]
        if validation.get("auc") is not None:
            ci = validation.get("auc_ci95")
            interval = f" [{num(ci[0])}, {num(ci[1])}]" if ci else ""
            figures = (f"AUC {num(validation['auc'])}{interval}, "
                       f"{'sensibilidad' if spanish else 'sensitivity'} {pct(validation['sensitivity'])}, "
                       f"{'especificidad' if spanish else 'specificity'} {pct(validation['specificity'])}")
            count = validation.get("n")
            lines.append(
                (f"- Validación ({count} placas de pacientes apartados del entrenamiento): {figures}."
                 if spanish else f"- Validation ({count} films of patients held out from training): {figures}.")
            )
        if stressed.get("sensitivity") is not None:
            lines.append(
                (f"- Con las mismas placas alteradas como en otra adquisición (recorte, zoom, nitidez, contraste, "
                 f"ruido...): sensibilidad {pct(stressed['sensitivity'])}, especificidad {pct(stressed['specificity'])}, "
                 "en las copias con las que se eligió el umbral (el informe de estrés, `pneumoscope stress`, sortea "
                 "sus propias copias: sus cifras difieren en la última décima)."
                 if spanish else
                 f"- The same films altered as another acquisition would (crop, zoom, sharpness, contrast, "
                 f"noise...): sensitivity {pct(stressed['sensitivity'])}, specificity {pct(stressed['specificity'])}, "
                 "on the copies the threshold was chosen on (the stress report, `pneumoscope stress`, draws its own "
                 "copies: its figures differ in the last decimal).")
            )
        lines.append(
            ("- **No lo use** para diagnosticar ni tratar a nadie, ni con adultos, placas laterales, TAC u otra "
             f"cosa que no sea una radiografía frontal de tórax pediátrica. {DISCLAIMER_ES}"
             if spanish else
             "- **Do not use it** to diagnose or treat anyone, nor on adults, lateral views, CT or anything other "
             f"than a paediatric frontal chest X-ray. {DISCLAIMER}")
        )
        texts.append("\n".join(lines))
    return texts[0], texts[1]
