"""The HTML a prediction becomes in the page, and the dict it becomes on the API.

Per-prediction words are written in both languages by :func:`~pneumoscope.app.text.both`;
numbers and file names are language-neutral and carry the ids the browser test reads.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from typing import Any

import numpy as np

from pneumoscope.app.text import DISCLAIMER, NO_HEATMAP_ONNX, SUBTYPE_NOTE, both, both_numbers

log = logging.getLogger("pneumoscope.app")


def data_uri(image: Any) -> str:
    """A display copy as an inline JPEG (no file written anywhere)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def api_result(name: str | None, prediction: Any = None, error: str | None = None) -> dict[str, Any]:
    """The one shape of a single-image result, on the page and from ``/predict`` alike: ``file``,
    the prediction's fields (``RESULT_FIELDS``; None when there is none), and ``error`` (None, or
    the one-line reason the file could not be read). docs/api.md shows both cases."""
    from pneumoscope.inference.prediction import RESULT_FIELDS

    fields = prediction.to_dict() if prediction is not None else {**dict.fromkeys(RESULT_FIELDS), "warnings": []}
    return {"file": name, **fields, "error": error}


def user_message(exc: BaseException) -> str:
    """:func:`~pneumoscope.errors.failure_message`; anything unexpected is also logged, by its type
    only (never image content)."""
    from pneumoscope.errors import USER_ERRORS, failure_message

    if not isinstance(exc, USER_ERRORS):
        log.error("prediction failed: %s", type(exc).__name__)
    return failure_message(exc)


def _file_line(name: str | None) -> str:
    """Which upload a card is about: a result never stands without its file's name."""
    return f'<div class="ps-file" id="ps-file">{html.escape(name)}</div>' if name else ""


def error_card(message: str, name: str | None = None) -> str:
    return (f'<div class="ps-card ps-error" id="ps-error">{_file_line(name)}<b>{both("Cannot read this file:")}</b> '
            f"{both(message)}</div>")


def refusal_reasons(prediction: Any) -> list[str]:
    """Why a film is refused, as the page shows it (card and batch table): the check's reasons,
    without ``NOT_A_DIAGNOSIS``, which the page says instead of a label."""
    from pneumoscope.inference.prediction import NOT_A_DIAGNOSIS

    return [reason for reason in prediction.warnings if reason != NOT_A_DIAGNOSIS]


def notice_card(message: str) -> str:
    return f'<div class="ps-card ps-error" id="ps-error"><b>{both(message)}</b></div>'


def result_card(prediction: Any, name: str | None = None) -> str:
    """The file's name, label, probability, threshold and a confidence bar; a warning instead when not an X-ray."""
    probability = prediction.probability
    percent = 100 * probability
    threshold = 100 * prediction.threshold
    colour = "#c0392b" if prediction.label == "PNEUMONIA" else "#27ae60"
    bar = (
        f'<div class="ps-bar" title="pneumonia probability; the black mark is the threshold">'
        f'<div class="ps-fill" style="width:{percent:.1f}%;background:{colour}"></div>'
        f'<div class="ps-mark" style="left:{threshold:.1f}%"></div></div>'
    )
    figures = (
        f'<div class="ps-prob">{both("pneumonia probability")} <b>{both_numbers(probability, 3, "ps-probability")}</b> '
        f'({both("threshold")} {both_numbers(prediction.threshold, 3, "ps-threshold")})</div>{bar}'
    )
    if not prediction.is_chest_xray:
        # The card's heading already says it is no chest X-ray; the bullets give the reasons only.
        reasons = "".join(f"<li>{both(reason)}</li>" for reason in refusal_reasons(prediction))
        return (
            f'<div class="ps-card ps-warning" id="ps-warning">{_file_line(name)}'
            f"<b>{both('This does not look like a chest X-ray.')}</b> "
            + both("The model was trained only on frontal chest radiographs, so its output here is not a "
                   "diagnosis and is not shown as one.")
            + f"<ul>{reasons}</ul><details><summary>{both('raw model output')}</summary>{figures}</details></div>"
        )
    return (
        f'<div class="ps-card">{_file_line(name)}'
        f'<div class="ps-label" id="ps-label" style="color:{colour}">{both(prediction.label)}</div>'
        f'{figures}{_caution_html(prediction)}{_subtype_html(prediction)}<div class="ps-note">{both(DISCLAIMER)}</div></div>'
    )


def _caution_html(prediction: Any) -> str:
    """The caution of a film at the edge of the training films (answered, but read with care)."""
    caution = getattr(prediction, "caution", None)
    if not caution:
        return ""
    return f'<div class="ps-caution" id="ps-caution">&#9888; {both(caution[0].upper() + caution[1:])}</div>'


def _subtype_html(prediction: Any) -> str:
    """The bacterial-vs-viral line, for a PNEUMONIA film that passes as a chest X-ray (else nothing)."""
    pattern = prediction.subtype_pattern
    if pattern is None:
        return ""
    return (f'<div class="ps-subtype" id="ps-subtype">{both(pattern[0].upper() + pattern[1:])}</div>'
            f'<div class="ps-note">{both(SUBTYPE_NOTE)}</div>')


def images_html(
    image: np.ndarray | None, heatmap: np.ndarray | None, show_heatmap: bool, opacity: float,
    no_heatmap: str = NO_HEATMAP_ONNX, label: str = "PNEUMONIA",
) -> str:
    """The image as read, or the Grad-CAM overlay on it with its colour bar, as an inline picture;
    ``label``: the class the map explains; ``no_heatmap`` says why there is none."""
    if image is None:
        return ""
    picture: Any = image
    caption, alt, scale = both("The image as read"), "The image as read", ""
    if show_heatmap and heatmap is not None:
        from pneumoscope.inference.explain import explanation, legend, overlay_heatmap

        picture = overlay_heatmap(image, heatmap.astype(np.float32), alpha=float(opacity))
        alt = explanation(label)
        caption = both(alt)
        scale = (f'<div class="ps-colourbar" id="ps-colourbar" title="Grad-CAM scale">{both("weaker")}'
                 f'<div class="ps-gradient" style="background:linear-gradient(to right,{",".join(legend())})"></div>'
                 f"{both('stronger')}</div>")
    elif show_heatmap:
        caption += f" ({both('no heatmap')}: {both(no_heatmap)})"
    return (
        f'<figure class="ps-figure"><img id="ps-image" src="{data_uri(picture)}" alt="{html.escape(alt)}"/>'
        f"{scale}<figcaption>{caption}</figcaption></figure>"
    )
