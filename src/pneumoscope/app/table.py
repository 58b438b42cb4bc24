"""The Batch tab's table: one row per file, written for people in each language.

The CSV beside it (``pneumoscope predict``'s columns) and the API's table are for programs and stay
English; the page shows one table per language, in the class ``ps-en`` or ``ps-es`` that the
page's CSS shows or hides by ``<html lang>``, as it does for the result card's phrases. A language
switch in Gradio's settings re-labels the table at once, without predicting again.

Every row comes from the CSV's row (:func:`~pneumoscope.inference.batch.result_row`): the table
and the CSV give one answer for every file.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pneumoscope.app.cards import refusal_reasons
from pneumoscope.app.text import LANGUAGES, decimal, in_language
from pneumoscope.languages import label

HEADERS: dict[str, list[str]] = {
    "en": ["file", "label", "probability", "pattern", "warnings"],
    "es": ["archivo", "etiqueta", "probabilidad", "patrón", "avisos"],
}
DATATYPES: dict[str, list[str]] = {
    # English keeps the probability a number (the API's table is the English one); Spanish writes
    # it with its decimal comma, a text that sorts as the number does (always 4 decimals, 0 to 1).
    "en": ["str", "str", "number", "str", "str"],
    "es": ["str", "str", "str", "str", "str"],
}
DIGITS = 4
"""Decimals of the probability shown."""
NOTE_SEPARATOR = "; "


class Row(NamedTuple):
    """One file's answer, language-neutral (English, as the code writes it)."""

    file: str
    label: str
    """The CSV's ``label``: NORMAL, PNEUMONIA, NOT A CHEST X-RAY or ERROR."""
    probability: float | None
    """None for a refused or unreadable file: its raw output is no answer."""
    pattern: str
    """The bacterial-vs-viral pattern (empty when there is none)."""
    notes: tuple[str, ...]
    """Why a film was refused, its caution, or why a file could not be read."""


def make_row(name: str, csv_row: dict[str, Any], prediction: Any, error: str | None) -> Row:
    """The table's row for one file, from the CSV's row (label and probability) and its prediction."""
    if prediction is None:
        notes: tuple[str, ...] = (error,) if error else ()
    else:
        notes = (*refusal_reasons(prediction), *filter(None, [prediction.caution]))
    pattern = (prediction.subtype_pattern if prediction is not None else None) or ""
    return Row(name, csv_row["label"], csv_row["probability"], pattern, notes)


def cells(row: Row, language: str = "en") -> list[Any]:
    """The row as ``language`` shows it, in ``HEADERS[language]``'s order."""
    if language == "en":
        probability: Any = None if row.probability is None else round(row.probability, DIGITS)
    else:
        probability = "" if row.probability is None else decimal(row.probability, DIGITS, language)
    return [row.file, label(row.label, language), probability, in_language(row.pattern, language),
            NOTE_SEPARATOR.join(in_language(note, language) for note in row.notes)]


def tables(rows: list[Row]) -> tuple[list[list[Any]], ...]:
    """The page's tables, one per language, in ``LANGUAGES``' order."""
    return tuple([cells(row, language) for row in rows] for language in LANGUAGES)
