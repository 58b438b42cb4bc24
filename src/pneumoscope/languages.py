"""The two languages the project writes for people, English and Spanish: the decimal mark and the
answer labels.

A leaf shared by the web page (:mod:`pneumoscope.app.text`) and the figures it shows
(:mod:`pneumoscope.evaluation.figures`), so that a number and a label read the same in the card,
the batch table, the About tab and its figures. Programs' outputs (the CSV, JSON, the API) stay
English and never come through here.
"""

from __future__ import annotations

from pneumoscope.inference.prediction import ERROR_LABEL, REFUSED_LABEL

LANGUAGES = ("en", "es")
"""English first: the key of every translation, and what programs read."""

LABELS_ES: dict[str, str] = {
    "NORMAL": "NORMAL",
    "PNEUMONIA": "NEUMONÍA",
    REFUSED_LABEL: "NO ES UNA RADIOGRAFÍA DE TÓRAX",
    ERROR_LABEL: "ERROR",
}
"""Every label a person can read (the two classes, a refused film, an unreadable file) in Spanish."""


def decimal_mark(text: str, language: str) -> str:
    """A number already written in English (``0.594``, ``95.4 %``) with the language's decimal mark:
    the comma in Spanish. One rule for the card, the batch table, the About tab and its figures."""
    return text.replace(".", ",") if language == "es" else text


def decimal(value: float, digits: int, language: str = "en") -> str:
    """A number as each language writes it: 0.594 in English, 0,594 in Spanish."""
    return decimal_mark(f"{value:.{digits}f}", language)


def label(english: str, language: str) -> str:
    """A label as each language writes it (``PNEUMONIA`` -> ``NEUMONÍA``); unknown ones as given."""
    return LABELS_ES.get(english, english) if language == "es" else english


PAGE_FIGURES: dict[str, tuple[str, str]] = {
    "confusion_matrix": ("Confusion matrix", "Matriz de confusión"),
    "roc": ("ROC curve", "Curva ROC"),
    "pr": ("Precision-recall curve", "Curva de precisión-exhaustividad"),
}
"""The figures drawn in every language, with their titles in ``LANGUAGES``' order: ``pneumoscope
evaluate`` writes them, a model folder's ``figures/`` holds copies, the About tab shows them."""


def figure_file(stem: str, language: str) -> str:
    """A figure drawn per language: ``roc.png`` in English, ``roc_es.png`` in Spanish. The one
    naming ``evaluate`` writes by and the About tab reads by."""
    return f"{stem}.png" if language == "en" else f"{stem}_{language}.png"
