"""Every word the page shows, in English and Spanish.

Two mechanisms, one per kind of text:

- **Fixed text** (tab names, labels, buttons, notes, the About summary) goes through Gradio's own
  i18n: components get ``I18nData`` keys from :func:`key`, and :func:`translations` gives
  ``gr.I18n`` its tables. Gradio picks the language from the browser and offers a switch in its
  Settings panel (footer link).
- **Text made per prediction** (the result card, warnings, captions) is HTML from the server, which
  Gradio's i18n does not translate. :func:`both` writes each phrase in both languages and the CSS
  below shows the one matching ``<html lang>``, which Gradio sets whenever its language changes:
  a switch re-labels the current result at once, without predicting again.
- **Components filled per prediction** (the Batch tab's table, the About tab's figures) come in
  both languages too: one table and one image per language, each in the class ``ps-en`` or
  ``ps-es`` that the same CSS shows or hides (:mod:`~pneumoscope.app.table`,
  :mod:`~pneumoscope.app.about`).

The API and the CSV stay in English (they are data, read by programs). The loader's fixed messages
about an unreadable file have their Spanish; those quoting a library's own words stay English,
inside a translated sentence.
"""

from __future__ import annotations

import html
import re
from typing import Any

from pneumoscope.inference.ood import INVERTED, ROTATED
from pneumoscope.inference.prediction import HEATMAP_OFF_LUNGS, NOT_A_DIAGNOSIS, REFUSED_LABEL
from pneumoscope.languages import LABELS_ES, LANGUAGES, decimal, decimal_mark

DISCLAIMER = "Research and education only. Not a medical device: never use it to diagnose or treat."
DISCLAIMER_ES = ("Solo para investigación y docencia. No es un producto sanitario: no lo use nunca para "
                 "diagnosticar ni tratar.")
NO_UPLOAD = "Upload a chest X-ray first"
"""What Predict says with no file: there is no file that could not be read."""
NOT_XRAY_LABEL = REFUSED_LABEL
SUBTYPE_NOTE = ("A pattern, not a diagnosis of the cause: telling bacterial from viral pneumonia on a film "
                "is uncertain even for radiologists; the model card gives its validation figures.")
NO_HEATMAP_ONNX = "this model was loaded without its PyTorch network"
NO_HEATMAP_NOT_XRAY = "this does not look like a chest X-ray"
NO_HEATMAP_EMPTY = ("no region of this film pushed the score toward its label more than the network's baseline "
                    "does (a borderline film): the map is empty")

PHRASES: dict[str, str] = {
    # English (the key) -> Spanish, for text written per prediction.
    DISCLAIMER: DISCLAIMER_ES,
    NO_UPLOAD: "Suba primero una radiografía de tórax",
    SUBTYPE_NOTE: ("Un patrón, no un diagnóstico de la causa: distinguir la neumonía bacteriana de la vírica "
                   "en una radiografía es incierto incluso para radiólogos; la ficha del modelo da sus cifras "
                   "de validación."),
    NO_HEATMAP_ONNX: "este modelo se cargó sin su red de PyTorch",
    NO_HEATMAP_NOT_XRAY: "no parece una radiografía de tórax",
    NO_HEATMAP_EMPTY: ("ninguna región de esta placa empujó la puntuación hacia su etiqueta más que la línea base de "
                       "la red (una placa dudosa): el mapa está vacío"),
    **LABELS_ES,
    INVERTED: ("la imagen parece invertida (campos pulmonares más claros que la columna): un negativo o una placa "
               "MONOCHROME1 leída al revés"),
    ROTATED: ("la placa está de lado (la columna cruza la imagen): gírela hasta ponerla derecha y súbala de nuevo"),
    NOT_A_DIAGNOSIS: ("esto no parece una radiografía de tórax: la etiqueta es la salida bruta de la red y no debe "
                      "leerse como un diagnóstico"),
    "pneumonia probability": "probabilidad de neumonía",
    "threshold": "umbral",
    "Cannot read this file:": "No se puede leer este archivo:",
    "This does not look like a chest X-ray.": "Esto no parece una radiografía de tórax.",
    ("The model was trained only on frontal chest radiographs, so its output here is not a diagnosis "
     "and is not shown as one."): ("El modelo se entrenó solo con radiografías frontales de tórax: su salida "
                                   "aquí no es un diagnóstico y no se muestra como tal."),
    "raw model output": "salida bruta del modelo",
    HEATMAP_OFF_LUNGS: ("En las radiografías de validación etiquetadas NEUMONÍA, la mayor parte del calor cayó fuera "
                        "de los campos pulmonares: el mapa no muestra dónde está la neumonía."),
    "The image as read": "La imagen tal como se leyó",
    "no heatmap": "sin mapa de calor",
    "weaker": "más débil",
    "stronger": "más fuerte",
    # The loader's fixed messages about a file it cannot read (those quoting a library's own words
    # stay English, inside the translated "Cannot read this file:").
    "file is empty (0 bytes)": "el archivo está vacío (0 bytes)",
    "file is not a readable image (expected PNG, JPEG, BMP, TIFF, GIF, WEBP or DICOM)":
        "el archivo no es una imagen legible (se esperaba PNG, JPEG, BMP, TIFF, GIF, WEBP o DICOM)",
    "image holds no finite pixel values": "la imagen no tiene ningún valor de píxel finito",
    "DICOM file has no pixel data (not an image object)":
        "el archivo DICOM no tiene datos de píxeles (no es una imagen)",
    "not enough memory to decode this image": "no hay memoria suficiente para decodificar esta imagen",
}

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Sentences with numbers in them: (English, as the code writes it) -> Spanish.
    (re.compile(r"the image is in colour \(colourfulness (\d+)\); radiographs are grey"),
     r"la imagen está en color (colorido \1); las radiografías son grises"),
    (re.compile(r"aspect ratio ([\d.]+) is unlike a chest radiograph"),
     lambda m: (f"una relación de aspecto de {decimal_mark(m[1], 'es')} "  # type: ignore[list-item]
                "no es la de una radiografía de tórax")),
    (re.compile(r"image is (\d+) x (\d+) pixels: "
                r"(too small to be a radiograph|aspect ratio is absurd for a radiograph)"),
     lambda m: (f"la imagen tiene {m[1]} x {m[2]} píxeles: "  # type: ignore[list-item]
                + ("demasiado pequeña para ser una radiografía" if m[3].startswith("too small")
                   else "una relación de aspecto absurda para una radiografía"))),
    (re.compile(r"the network's features are far from any chest X-ray it was trained on \(distance (\d+) > (\d+)\)"),
     r"los rasgos que extrae la red están lejos de toda radiografía de tórax de su entrenamiento "
     r"(distancia \1 > \2)"),
    (re.compile(r"this film lies at the edge of the chest X-rays the model was trained on \(feature distance (\d+); "
                r"cautioned from (\d+), refused from (\d+)\): it may come from another hospital or machine, so read "
                r"the answer with extra care"),
     r"esta placa está en el límite de las radiografías de tórax con las que se entrenó el modelo (distancia de "
     r"rasgos \1; precaución desde \2, rechazo desde \3): puede venir de otro hospital u otro equipo, así que lea "
     r"la respuesta con especial cuidado"),
    (re.compile(r"pattern more typical of (bacterial|viral) pneumonia \(p = ([\d.]+)\)"),
     lambda m: f"patrón más típico de neumonía {'bacteriana' if m[1] == 'bacterial' else 'vírica'} "  # type: ignore[list-item]
               f"(p = {decimal_mark(m[2], 'es')})"),
    (re.compile(r"Grad-CAM for the label (NORMAL|PNEUMONIA): the regions whose features (raised|lowered) the "
                r"pneumonia score, relative to this image's strongest region \(where the model looked, not a map "
                r"of disease\)(\. " + re.escape(HEATMAP_OFF_LUNGS) + ")?"),
     lambda m: (f"Grad-CAM para la etiqueta {PHRASES[m[1]]}: las regiones cuyos rasgos "  # type: ignore[list-item]
                f"{'subieron' if m[2] == 'raised' else 'bajaron'} la puntuación de neumonía, relativas a la región "
                "más fuerte de esta imagen (dónde miró el modelo, no un mapa de la enfermedad)"
                + (f". {PHRASES[HEATMAP_OFF_LUNGS]}" if m[3] else ""))),
]


def spanish(english: str) -> str:
    """The Spanish of a phrase the page writes; the English itself when there is none (say, a
    loader's message about a damaged file)."""
    if english in PHRASES:
        return PHRASES[english]
    for pattern, replacement in _PATTERNS:
        if pattern.fullmatch(english):
            return pattern.sub(replacement, english)  # type: ignore[arg-type]
    if english[:1].isupper():  # a sentence the page capitalised: translate it as written, then capitalise
        lowered = english[0].lower() + english[1:]
        translated = spanish(lowered) if lowered != english else lowered
        if translated != lowered:
            return translated[0].upper() + translated[1:]
    return english


def in_language(english: str, language: str) -> str:
    """A phrase the page writes, as ``language`` writes it (:func:`spanish` for ``es``)."""
    return spanish(english) if language == "es" else english


def both_numbers(value: float, digits: int, element_id: str) -> str:
    """A number in both languages' marks; the English span keeps ``element_id``, the Spanish one
    ``element_id-es`` (the page's CSS shows the one matching ``<html lang>``)."""
    return (f'<span class="ps-en" id="{element_id}">{decimal(value, digits)}</span>'
            f'<span class="ps-es" lang="es" id="{element_id}-es">{decimal(value, digits, "es")}</span>')


def both(english: str) -> str:
    """A phrase as HTML in both languages; the page's CSS shows the one matching ``<html lang>``."""
    return (f'<span class="ps-en">{html.escape(english)}</span>'
            f'<span class="ps-es" lang="es">{html.escape(spanish(english))}</span>')


CSS = """
html[lang^="es"] .ps-en{display:none!important}
html:not([lang^="es"]) .ps-es{display:none!important}
"""
"""The language rule, over any component's own ``display`` (Gradio also prefixes the page's CSS
with its container's classes, which outranks a plain rule: the About figures' images)."""

FIXED: dict[str, tuple[str, str]] = {
    # key -> (English, Spanish), for Gradio's i18n.
    "intro": ("Pneumonia on a paediatric frontal chest X-ray, with the regions that drove the answer. "
              f"**{DISCLAIMER}** Language: the browser's; change it under *Settings* at the foot of the page.",
              "Neumonía en una radiografía frontal de tórax pediátrica, con las regiones que motivaron la "
              f"respuesta. **{DISCLAIMER_ES}** Idioma: el del navegador; cámbielo en *Configuración*, al pie "
              "de la página."),
    "tab_single": ("Single image", "Una imagen"),
    "tab_batch": ("Batch", "Lote"),
    "tab_about": ("About the model", "Sobre el modelo"),
    "upload": ("Chest X-ray (PNG, JPEG or DICOM): drop it here or click",
               "Radiografía de tórax (PNG, JPEG o DICOM): suéltela aquí o haga clic"),
    "predict": ("Predict", "Predecir"),
    "show_heatmap": ("Show the Grad-CAM heatmap", "Mostrar el mapa de calor Grad-CAM"),
    "opacity": ("Heatmap opacity", "Opacidad del mapa de calor"),
    "deleted": ("Uploads are deleted from the server as soon as they are predicted.",
                "Los archivos subidos se borran del servidor en cuanto se predicen."),
    "examples": ("Examples", "Ejemplos"),
    "api_result": ("Result as the API returns it", "Resultado tal como lo devuelve la API"),
    "batch_upload": ("Many chest X-rays (PNG, JPEG or DICOM)", "Varias radiografías de tórax (PNG, JPEG o DICOM)"),
    "predict_all": ("Predict all", "Predecir todas"),
    "results": ("results", "resultados"),
    "result": ("result", "resultado"),
    "batch_note": ("Find a file or a label with the search box above the table. The CSV below holds every row "
                   "in English, with every column of `pneumoscope predict`, for programs.",
                   "Busque un archivo o una etiqueta con el cuadro de búsqueda sobre la tabla. El CSV de abajo "
                   "tiene todas las filas en inglés, con todas las columnas de `pneumoscope predict`, para "
                   "programas."),
    "csv": ("results as CSV", "resultados en CSV"),
    "card_section": ("Model card (English)", "Ficha del modelo (en inglés)"),
    "config_section": ("Training configuration (YAML)", "Configuración del entrenamiento (YAML)"),
    "figures_section": ("Validation figures", "Figuras de validación"),
}


def key(name: str) -> Any:
    """Gradio's i18n marker for a fixed text (``FIXED`` or one added by :func:`translations`)."""
    from gradio.i18n import I18nData

    return I18nData(name)


def translations(extra: dict[str, tuple[str, str]] | None = None) -> dict[str, dict[str, str]]:
    """``gr.I18n``'s tables: ``FIXED`` plus texts made when the page is built (the About summary,
    with the model's own figures)."""
    table = {**FIXED, **(extra or {})}
    return {language: {name: pair[index] for name, pair in table.items()} for index, language in enumerate(LANGUAGES)}
