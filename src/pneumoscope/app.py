"""The web page: Gradio Blocks over the Predictor, nothing else.

    pneumoscope serve [--model PATH] [--host 127.0.0.1] [--port 7860] [--examples DIR] [--auth USER:PASS]

Privacy by construction: uploads land in a private temporary folder (``GRADIO_TEMP_DIR``) and
are deleted as soon as they are predicted; images go back to the browser inline (data URIs)
instead of being written to Gradio's cache; nothing about an image is logged; the server binds
to loopback and makes no public link unless asked. Every failure becomes one line in the page
and the server keeps serving.

The same predictions are on Gradio's API: ``/predict`` (one file -> the dict the page shows under
"Result as the API returns it"; an unreadable file gives the same dict with its one-line reason
in ``error``) and ``/predict_batch`` (files -> table and CSV); ``docs/api.md`` shows a
``gradio_client`` session.

Gradio and the model are imported only when :func:`serve` runs; this module imports neither.
"""

from __future__ import annotations

import atexit
import base64
import collections
import contextlib
import csv
import html
import io
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pneumoscope import heap

log = logging.getLogger("pneumoscope.app")

MAX_UPLOAD = "50mb"
"""Per file; an uncompressed 16-bit DICOM radiograph is up to ~40 MB."""
FILE_TYPES = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"]
"""What ``--examples`` offers. Uploads are not filtered by name: DICOM files often have no
extension, and the loader judges a file by its content."""
DEFAULT_EXAMPLES = Path(__file__).resolve().parent / "examples"
"""Four small credited radiographs shipped in the package (examples/CREDITS.md): what the page
offers when ``--examples`` names no folder of one's own."""
HEADERS = ["file", "label", "probability", "pattern", "warnings"]
"""The Batch tab's table. ``probability`` is empty for a file that is not a chest X-ray (its raw
output is no result); the CSV keeps that raw number apart, in ``CSV_EXTRA``."""
CSV_EXTRA = ["p_bacterial", "raw_probability"]
SUBTYPE_NOTE = ("A pattern, not a diagnosis of the cause: telling bacterial from viral pneumonia on a film "
                "is uncertain even for radiologists; the model card gives its validation figures.")
NOT_XRAY_LABEL = "NOT A CHEST X-RAY"
MAX_EXAMPLES = 12
DEFAULT_OPACITY = 0.45
SWEEP = (60, 600)
"""Gradio's cache sweep (every 60 s, files older than 600 s): removes uploads never predicted
(a browser uploads as soon as a file is chosen) and CSV results nobody downloaded."""
CONCURRENCY = 2
"""Model runs at once, all endpoints together: one per core on the machines we target."""
DISCLAIMER = "Research and education only. Not a medical device: never use it to diagnose or treat."


# ---------------------------------------------------------------------------- HTML pieces
def _data_uri(image: Any) -> str:
    """A display copy as an inline JPEG (no file written anywhere)."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


NO_UPLOAD = "Upload a chest X-ray first"
"""What Predict says with no file: there is no file that could not be read."""


def _file_line(name: str | None) -> str:
    """Which upload a card is about: a result never stands without its file's name."""
    return f'<div class="ps-file" id="ps-file">{html.escape(name)}</div>' if name else ""


def error_card(message: str, name: str | None = None) -> str:
    return (f'<div class="ps-card ps-error" id="ps-error">{_file_line(name)}<b>Cannot read this file:</b> '
            f"{html.escape(message)}</div>")


def notice_card(message: str) -> str:
    return f'<div class="ps-card ps-error" id="ps-error"><b>{html.escape(message)}</b></div>'


def api_result(name: str | None, prediction: Any = None, error: str | None = None) -> dict[str, Any]:
    """The one shape of a single-image result, on the page and from ``/predict`` alike: ``file``,
    the prediction's fields (``RESULT_FIELDS``; None when there is none), and ``error`` (None, or
    the one-line reason the file could not be read). docs/api.md shows both cases."""
    from pneumoscope.inference.predictor import RESULT_FIELDS

    fields = prediction.to_dict() if prediction is not None else {**dict.fromkeys(RESULT_FIELDS), "warnings": []}
    return {"file": name, **fields, "error": error}


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
        f'<div class="ps-prob">pneumonia probability <b id="ps-probability">{probability:.3f}</b> '
        f'(threshold <span id="ps-threshold">{prediction.threshold:.3f}</span>)</div>{bar}'
    )
    if not prediction.is_chest_xray:
        from pneumoscope.inference.predictor import NOT_A_DIAGNOSIS

        # The card's heading already says it is no chest X-ray; the bullets give the reasons only.
        reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in prediction.warnings if reason != NOT_A_DIAGNOSIS)
        return (
            f'<div class="ps-card ps-warning" id="ps-warning">{_file_line(name)}'
            "<b>This does not look like a chest X-ray.</b> "
            "The model was trained only on frontal chest radiographs, so its output here is not a "
            f"diagnosis and is not shown as one.<ul>{reasons}</ul>"
            f"<details><summary>raw model output</summary>{figures}</details></div>"
        )
    return (
        f'<div class="ps-card">{_file_line(name)}'
        f'<div class="ps-label" id="ps-label" style="color:{colour}">{prediction.label}</div>'
        f'{figures}{_subtype_html(prediction)}<div class="ps-note">{DISCLAIMER}</div></div>'
    )


def _subtype_html(prediction: Any) -> str:
    """The bacterial-vs-viral line, for a PNEUMONIA film that passes as a chest X-ray (else nothing)."""
    pattern = prediction.subtype_pattern
    if pattern is None:
        return ""
    return (f'<div class="ps-subtype" id="ps-subtype">{html.escape(pattern[0].upper() + pattern[1:])}</div>'
            f'<div class="ps-note">{html.escape(SUBTYPE_NOTE)}</div>')


NO_HEATMAP_ONNX = "this model was loaded without its PyTorch network"
NO_HEATMAP_NOT_XRAY = "this does not look like a chest X-ray"


def images_html(
    image: np.ndarray | None, heatmap: np.ndarray | None, show_heatmap: bool, opacity: float,
    no_heatmap: str = NO_HEATMAP_ONNX, label: str = "PNEUMONIA",
) -> str:
    """The image as read, or the Grad-CAM overlay on it with its colour bar, as an inline picture;
    ``label``: the class the map explains; ``no_heatmap`` says why there is none."""
    if image is None:
        return ""
    picture: Any = image
    caption, scale = "The image as read", ""
    if show_heatmap and heatmap is not None:
        from pneumoscope.inference.explain import explanation, legend, overlay_heatmap

        picture = overlay_heatmap(image, heatmap.astype(np.float32), alpha=float(opacity))
        caption = explanation(label)
        scale = (f'<div class="ps-colourbar" id="ps-colourbar" title="Grad-CAM scale"><span>weaker</span>'
                 f'<div class="ps-gradient" style="background:linear-gradient(to right,{",".join(legend())})"></div>'
                 "<span>stronger</span></div>")
    elif show_heatmap:
        caption += f" (no heatmap: {no_heatmap})"
    return (
        f'<figure class="ps-figure"><img id="ps-image" src="{_data_uri(picture)}" alt="{html.escape(caption)}"/>'
        f"{scale}<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _message(exc: BaseException) -> str:
    """One line for the user; for anything unexpected only the exception's type is logged."""
    from pneumoscope.errors import USER_ERRORS

    if isinstance(exc, USER_ERRORS):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    log.error("prediction failed: %s", type(exc).__name__)  # the type only: never image content
    return f"the image could not be processed ({type(exc).__name__})"


# ---------------------------------------------------------------------------- uploads
def _key(path: str | Path) -> str:
    return os.path.realpath(path)


class PendingUploads(set):
    """Gradio's set of uploaded paths (``Blocks.upload_file_set``), also counting pending uploads.

    Gradio stores an upload at ``<temp>/<content hash>/<name>``: two clients sending the same
    file share one path. Deleting it after the first prediction would pull it from under the
    second, so an upload is deleted only when no other upload of the same path waits. Entries
    older than the cache sweep are forgotten (the sweep has deleted those files anyway).
    """

    def __init__(self, paths: Any = (), max_age: float = SWEEP[1]) -> None:
        super().__init__(paths)
        self.max_age = max_age
        self._times: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def update(self, *others: Any) -> None:  # called by Gradio's /upload route
        now = time.monotonic()
        with self._lock:
            for paths in others:
                for path in paths:
                    self._times.setdefault(_key(path), collections.deque()).append(now)
        super().update(*others)

    def release(self, path: str) -> bool:
        """One upload of ``path`` has been predicted; True when no other upload of it is pending."""
        key, horizon = _key(path), time.monotonic() - self.max_age
        with self._lock:
            times = self._times.get(key)
            if times:
                times.popleft()
                while times and times[0] < horizon:
                    times.popleft()
            if times:
                return False
            self._times.pop(key, None)
            self.discard(path)
            return True


def _path_of(value: Any) -> str | None:
    """An upload as the handlers receive it: a path (direct calls, tests) or Gradio's file payload.

    The events skip Gradio's preprocessing (``preprocess=False``), whose ``gr.File`` leaves an
    empty temporary file behind for every upload; Gradio still checks that the path is an upload.
    """
    if value is None or isinstance(value, (str, os.PathLike)):
        return None if value is None else os.fspath(value)
    if isinstance(value, dict):
        return value.get("path")
    return getattr(value, "path", None)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except OSError:
        return False


class SingleResult(NamedTuple):
    """The outputs of one prediction in the page, in the order of the event's outputs."""

    card: str
    """The label, probability, threshold and bar (or the warning, or the error) as HTML."""
    picture: str
    """The image as read, or its Grad-CAM overlay, as HTML with an inline image."""
    result: dict[str, Any]
    """What ``/predict`` returns for the same file (:func:`api_result`)."""
    state: dict[str, Any] | None
    """The image and heatmap kept for redrawing when the toggle or the opacity change."""
    upload: None
    """Clears the file input: the upload is deleted once predicted."""


TRIM_EVERY = 16
"""Predictions between two heap trims (one trim costs a few milliseconds)."""


class App:
    """The handlers, holding one Predictor; kept apart from the layout so tests can call them.

    Only files inside ``upload_dir`` are ever deleted, and never those in ``protected`` (the
    cached copies of the examples, which Gradio places there before the server starts).
    """

    def __init__(self, predictor: Any, upload_dir: Path, pending: PendingUploads | None = None) -> None:
        self.predictor = predictor
        self.upload_dir = Path(upload_dir)
        self.pending = pending
        self.protected: set[str] = set()
        self.file_blocks: list[Any] = []
        """The file components: Gradio remembers each upload's path in their ``temp_files`` for ever."""
        self._predicted = 0
        self._count_lock = threading.Lock()

    def discard(self, path: str | None, seen: tuple[int, int] | None = None) -> None:
        """Delete an upload once predicted: only files in our own temporary folder, never an example.

        ``seen``: the file's identity when its prediction started; a file replaced since then
        is another client's upload of the same content (Gradio moved it onto this path), left
        for that client's own prediction to delete.
        """
        with self._count_lock:
            self._predicted += 1
            trim = self._predicted % TRIM_EVERY == 0
        if trim:
            heap.trim()
        if not path or not _is_inside(Path(path), self.upload_dir):
            return
        last = self.pending is None or self.pending.release(path)
        if not last or _key(path) in self.protected:
            return  # the same file was uploaded again and waits for its own prediction; or an example
        for block in self.file_blocks:
            block.temp_files.discard(path)
        if seen is not None and _identity(path) != seen:
            return
        try:
            os.remove(path)
        except OSError:
            return
        parent = Path(path).parent
        if parent != self.upload_dir and _is_inside(parent, self.upload_dir) and not self._upload_in_flight():
            try:
                parent.rmdir()  # Gradio's per-upload folder, named by a hash of the content
            except OSError:
                pass

    def _upload_in_flight(self) -> bool:
        """Whether Gradio is receiving an upload now: it streams each into a ``tmp*`` file at the
        top of the folder, then makes the hash-named folder and moves the file in; removing that
        folder in between would lose the upload."""
        try:
            with os.scandir(self.upload_dir) as entries:
                return any(entry.name.startswith("tmp") and entry.is_file() for entry in entries)
        except OSError:
            return True

    # ------------------------------------------------------------------ the page
    def predict_one(self, upload: Any, show_heatmap: bool = True, opacity: float = DEFAULT_OPACITY) -> SingleResult:
        """Predict one upload (a path) for the page; never raises."""
        path = _path_of(upload)
        if not path:
            return SingleResult(notice_card(NO_UPLOAD), "", api_result(None, error=NO_UPLOAD), None, None)
        name, seen = Path(path).name, _identity(path)
        try:
            prediction = self.predictor.predict(path, heatmap=self.predictor.can_explain)
        except Exception as exc:  # every failure is one line in the page, never a traceback
            message = _message(exc)
            return SingleResult(error_card(message, name), "", api_result(name, error=message), None, None)
        finally:
            self.discard(path, seen)
        heatmap = None if prediction.heatmap is None else prediction.heatmap.astype(np.float16)
        reason = NO_HEATMAP_ONNX
        if not prediction.is_chest_xray:  # no "regions that raised the pneumonia score" on a photograph
            heatmap, reason = None, NO_HEATMAP_NOT_XRAY
        state = {"image": prediction.image, "heatmap": heatmap, "no_heatmap": reason, "label": prediction.label}
        picture = images_html(prediction.image, heatmap, show_heatmap, opacity, reason, prediction.label)
        return SingleResult(result_card(prediction, name), picture, api_result(name, prediction), state, None)

    def redraw(self, state: dict[str, Any] | None, show_heatmap: bool, opacity: float) -> Any:
        if not state:
            import gradio as gr

            return gr.skip()  # nothing predicted yet, or the session's state expired: leave the page as is
        return images_html(state["image"], state["heatmap"], show_heatmap, opacity, state["no_heatmap"],
                           state.get("label", "PNEUMONIA"))

    # ------------------------------------------------------------------ the API
    def api_predict(self, image: Any) -> dict[str, Any]:
        """One file -> :func:`api_result`: the page's "Result as the API returns it", exactly.

        An unreadable file (or none) is an answer too, with the one-line reason in ``error`` and
        no prediction fields, as a failed file is a row with an ``error`` in ``pneumoscope predict``.
        """
        path = _path_of(image)
        if not path:
            return api_result(None, error=NO_UPLOAD)
        name, seen = Path(path).name, _identity(path)
        try:
            return api_result(name, self.predictor.predict(path))
        except Exception as exc:
            return api_result(name, error=_message(exc))
        finally:
            self.discard(path, seen)

    def predict_batch(self, images: list[Any] | None) -> tuple[list[list[Any]], str | None]:
        """Many files -> (table rows: ``HEADERS``; the rows as a CSV file, with ``CSV_EXTRA`` too).

        A file that is not a chest X-ray is labelled so, with the reasons in ``warnings``; the table
        shows no probability for it (the single-image page hides it too), the CSV keeps the raw one
        in ``raw_probability``. An unreadable file is a row labelled ERROR with the message.
        """
        rows: list[list[Any]] = []
        extra: list[list[Any]] = []
        for upload in images or []:
            path = _path_of(upload)
            if not path:
                continue
            name, seen = Path(path).name, _identity(path)
            try:
                prediction = self.predictor.predict(path)
            except Exception as exc:
                rows.append([name, "ERROR", None, "", _message(exc)])
                extra.append([None, None])
            else:
                xray = prediction.is_chest_xray
                label = prediction.label if xray else NOT_XRAY_LABEL
                shown = round(prediction.probability, 4) if xray else None
                rows.append([name, label, shown, prediction.subtype_pattern or "", "; ".join(prediction.warnings)])
                p_bacterial = None if prediction.p_bacterial is None else round(prediction.p_bacterial, 4)
                extra.append([p_bacterial, round(prediction.probability, 4)])
            finally:
                self.discard(path, seen)
        if not rows:
            return [], None
        # Written into the private folder: Gradio serves it from there, the sweep and shutdown delete it.
        handle, csv_path = tempfile.mkstemp(prefix="pneumoscope-results-", suffix=".csv", dir=self.upload_dir)
        with os.fdopen(handle, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(HEADERS + CSV_EXTRA)
            writer.writerows(row + more for row, more in zip(rows, extra))
        return rows, csv_path


# ---------------------------------------------------------------------------- layout
CSS = """
.ps-card{padding:14px;border-radius:8px;border:1px solid #ddd}
.ps-error{border-color:#c0392b;background:#fdecea;color:#222}
.ps-warning{border-color:#e67e22;background:#fff4e5;color:#222}
.ps-label{font-size:2em;font-weight:700}
.ps-bar{position:relative;height:16px;background:#eee;border-radius:8px;margin:8px 0}
.ps-fill{height:100%;border-radius:8px}
.ps-mark{position:absolute;top:-4px;width:2px;height:24px;background:#000}
.ps-note{font-size:.85em;opacity:.75}
.ps-file{font-family:ui-monospace,monospace;font-size:.9em;opacity:.8;margin-bottom:4px;overflow-wrap:anywhere}
.ps-colourbar{display:flex;align-items:center;gap:6px;font-size:.85em;max-width:760px;margin:4px 0}
.ps-gradient{flex:1;height:12px;border-radius:3px}
.ps-subtype{font-size:1.1em;font-weight:600;margin-top:8px}
.ps-figure{margin:0}
.ps-figure img{width:100%;max-width:760px;height:auto}
.ps-figures img{display:inline-block;max-width:48%;margin:4px;vertical-align:top}
"""
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Consolas", "monospace"]


def about_content(predictor: Any) -> tuple[str, str]:
    """(the model card as Markdown, the confusion matrix and ROC figures as HTML) of the model folder."""
    folder = getattr(predictor, "model_path", None)
    folder = Path(folder) if folder is not None else None
    card = folder / "MODEL_CARD.md" if folder is not None and folder.is_dir() else None
    if card is not None and card.is_file():
        text = card.read_text(encoding="utf-8")
    else:
        name = getattr(predictor, "name", "this model")
        text = f"No model card found for `{name}` (a model card is the MODEL_CARD.md of a model folder)."
    figures = ""
    for name, title in (("confusion_matrix.png", "Confusion matrix"), ("roc.png", "ROC curve")):
        figure = folder / "figures" / name if card is not None else None
        if figure is not None and figure.is_file():
            uri = "data:image/png;base64," + base64.b64encode(figure.read_bytes()).decode()
            figures += f'<img src="{uri}" alt="{title}" title="{title}"/>'
    if figures:
        figures = f'<div class="ps-figures" id="ps-figures">{figures}</div>'
    return text, figures


def example_files(folder: str | Path, limit: int = MAX_EXAMPLES) -> list[Path]:
    """Up to ``limit`` images under ``folder``, taken in turn from each subfolder (NORMAL, PNEUMONIA, ...)."""
    root = Path(folder)
    groups: dict[Path, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in FILE_TYPES:
            groups.setdefault(path.parent, []).append(path)
    chosen: list[Path] = []
    queues = [collections.deque(files) for _, files in sorted(groups.items())]
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.popleft())
    return chosen


def build_app(predictor: Any, upload_dir: Path, examples: str | Path | None = None) -> tuple[Any, App]:
    """The Blocks and their handlers. ``GRADIO_TEMP_DIR`` must already name ``upload_dir``."""
    import gradio as gr

    with gr.Blocks(title="pneumoscope", analytics_enabled=False, delete_cache=SWEEP) as demo:
        pending = PendingUploads(demo.upload_file_set)
        demo.temp_file_sets = [pending if s is demo.upload_file_set else s for s in demo.temp_file_sets]
        demo.upload_file_set = pending
        app = App(predictor, upload_dir, pending)

        gr.Markdown(
            "# pneumoscope\nPneumonia on a paediatric frontal chest X-ray, with the regions that drove "
            f"the answer. **{DISCLAIMER}**"
        )
        with gr.Tab("Single image"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(
                        label="Chest X-ray (PNG, JPEG or DICOM): drop it here or click", elem_id="ps-upload",
                    )
                    button = gr.Button("Predict", variant="primary", elem_id="ps-predict")
                    show = gr.Checkbox(value=True, label="Show the Grad-CAM heatmap", elem_id="ps-show-heatmap")
                    opacity = gr.Slider(
                        0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Heatmap opacity", elem_id="ps-opacity",
                    )
                    gr.Markdown(
                        "Uploads are deleted from the server as soon as they are predicted.", elem_classes="ps-note",
                    )
                    if examples:
                        files = example_files(examples)
                        if files:
                            gr.Examples(
                                [[str(p)] for p in files], inputs=[upload], label="Examples",
                                example_labels=[str(p.relative_to(examples)) for p in files],
                                examples_per_page=MAX_EXAMPLES, cache_examples=False, api_visibility="private",
                            )
                with gr.Column(scale=2):
                    card = gr.HTML(elem_id="ps-result")
                    picture = gr.HTML(elem_id="ps-picture")
                    with gr.Accordion("Result as the API returns it", open=False):
                        result = gr.JSON(label="result", elem_id="ps-json")
            state = gr.State(None, time_to_live=900)
            button.click(
                app.predict_one, [upload, show, opacity], [card, picture, result, state, upload],
                api_visibility="private", concurrency_id="model", preprocess=False,
            )
            # A new upload clears the last result, so no answer ever stands beside another file's name.
            # (``upload``, not ``change``: Predict itself empties the file box, and must keep its answer.)
            upload.upload(
                lambda: ("", "", None, None), None, [card, picture, result, state],
                api_visibility="private", queue=False, show_progress="hidden",
            )
            for event in (show.change, opacity.release):  # redraw from the session's state, no new prediction
                event(app.redraw, [state, show, opacity], picture, api_visibility="private", show_progress="hidden")
        with gr.Tab("Batch"):
            many = gr.File(
                label="Many chest X-rays (PNG, JPEG or DICOM)", file_count="multiple", elem_id="ps-batch-upload",
            )
            run = gr.Button("Predict all", variant="primary", elem_id="ps-batch-run")
            table = gr.Dataframe(
                headers=HEADERS, datatype=["str", "str", "number", "str", "str"], interactive=False,
                wrap=True, label="results", elem_id="ps-table", show_search="search",
                column_widths=["20%", "14%", "10%", "22%", "34%"],
            )
            gr.Markdown("Find a file or a label with the search box above the table; the CSV below holds "
                        "every row.", elem_classes="ps-note")
            download = gr.File(label="results as CSV", elem_id="ps-csv", interactive=False)
            run.click(
                app.predict_batch, [many], [table, download], api_name="predict_batch", concurrency_id="model",
                preprocess=False,
            ).then(lambda: None, None, many, api_visibility="private", queue=False)
        with gr.Tab("About the model"):
            text, figures = about_content(predictor)
            gr.Markdown(
                f"**Model** `{predictor.name}` · threshold {predictor.threshold:.4f} · scored by "
                f"{predictor.backend}"
            )
            if figures:
                gr.HTML(figures)
            gr.Markdown(text, elem_id="ps-card")

        # The API's single-image endpoint: a file in, the prediction's dict out (no HTML, no pictures).
        api_file = gr.File(label="image", visible=False)
        api_result = gr.JSON(label="prediction", visible=False)
        api_trigger = gr.Button(visible=False)
        api_trigger.click(
            app.api_predict, [api_file], [api_result], api_name="predict", concurrency_id="model", preprocess=False,
        )

    app.file_blocks = [upload, many, api_file]
    # Nothing has been uploaded yet: whatever is in the folder now is an example's cached copy.
    app.protected = {_key(p) for p in Path(upload_dir).rglob("*") if p.is_file()}
    return demo, app


# ---------------------------------------------------------------------------- serving
@dataclass
class Served:
    """A running app: its URL, the Blocks, the handlers (``app.upload_dir`` is the private folder)."""

    url: str
    demo: Any
    app: App

    def close(self) -> None:
        self.demo.close()
        shutil.rmtree(self.app.upload_dir, ignore_errors=True)


def _parse_auth(auth: str | None) -> tuple[str, str] | None:
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        from pneumoscope.errors import UserError

        raise UserError("--auth must be USER:PASS")
    return user, password


def _ready_heatmaps(predictor: Any, warm_up: bool, started: float) -> None:
    """Load PyTorch for heatmaps (when the app started on the cached export) and warm the first
    heatmap, in the thread that started the app, while it already answers: until then a heatmap
    request waits, a prediction does not."""
    if predictor.can_explain and not predictor.network_loaded:
        print("pneumoscope: loading PyTorch for heatmaps...", file=sys.stderr, flush=True)
        with _ast_serialised():
            predictor.load_heatmap_network()
        if predictor.network_loaded:
            print(f"pneumoscope: heatmaps ready {time.perf_counter() - started:.1f} s after start",
                  file=sys.stderr, flush=True)
    if warm_up:
        with _ast_serialised():
            _warm_up(predictor)


@contextlib.contextmanager
def _ast_serialised() -> Any:
    """``ast.parse`` one call at a time while PyTorch (which parses its own source) is imported
    beside requests. CPython before 3.11.8 converts parse trees through shared state that is not
    thread-safe (gh-106905): two threads parsing at once failed here with "SystemError: AST
    constructor recursion depth mismatch". Every parse made by Python code goes through
    ``ast.parse``; a lock around it removes the race and costs nothing measurable."""
    import ast

    if sys.version_info >= (3, 11, 8):
        yield
        return
    original, lock = ast.parse, threading.Lock()

    def parse(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(*args, **kwargs)

    ast.parse = parse
    try:
        yield
    finally:
        ast.parse = original


def _warm_up(predictor: Any) -> None:
    """The first heatmap (PyTorch's autograd, matplotlib's colour map; MONAI and its hooks when
    scoring without ONNX Runtime), so the first user does not wait."""
    try:
        gradient = np.tile(np.linspace(0, 255, 256, dtype=np.uint8), (256, 1))
        predictor.predict(gradient, heatmap=predictor.can_explain)
    except Exception as exc:  # pragma: no cover - a failed warm-up only costs the first user time
        log.warning("warm-up failed: %s", type(exc).__name__)


def serve(
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples: str | None = None,
    auth: str | None = None,
    share: bool = False,
    block: bool = True,
    warm_up: bool = True,
) -> Served:
    """Start the app. Binds to loopback and makes no public link unless asked.

    ``block=False`` returns at once with the server running in a thread; call ``close()``.
    ``warm_up`` runs one Grad-CAM pass once serving (PyTorch loaded, so the first heatmap asked for is quick).
    """
    started = time.perf_counter()
    heap.limit_arenas()
    from pneumoscope.errors import UserError

    credentials = _parse_auth(auth)
    if examples is not None and not Path(examples).is_dir():
        raise UserError(f"--examples: not a folder: {examples}")
    if examples is None and DEFAULT_EXAMPLES.is_dir():
        examples = str(DEFAULT_EXAMPLES)
    upload_dir = Path(tempfile.mkdtemp(prefix="pneumoscope-uploads-"))
    atexit.register(shutil.rmtree, upload_dir, True)
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir)  # before Gradio makes a component or a route
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # Gradio's queue keeps a record of the last 10,000 events and rebuilds a pandas summary of
    # them after every event (for its monitoring page, off here): CPU and memory that grow with
    # traffic. Keep a short record and skip the summary.
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "100")
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))
    try:
        from pneumoscope.inference.predictor import Predictor

        # ONNX Runtime's threads sleep between runs instead of spinning: they leave the cores to
        # decoding and to Gradio (about 20 % more requests/s under concurrent load, bench/load.py).
        # From a cached export the app answers before PyTorch is imported (heatmaps only need it).
        predictor = Predictor.load(model, spin=False, heatmaps="background")
        import gradio as gr

        demo, app = build_app(predictor, upload_dir, examples)
        demo.queue(default_concurrency_limit=CONCURRENCY, max_size=256)
        try:
            _, url, _ = demo.launch(
                server_name=host, server_port=port, share=share, auth=credentials,
                max_file_size=MAX_UPLOAD, show_error=False, quiet=True, prevent_thread_lock=True, max_threads=8,
                footer_links=["api"], ssr_mode=False, mcp_server=False, pwa=False, enable_monitoring=False,
                state_session_capacity=200, css=CSS,
                theme=gr.themes.Default(font=SYSTEM_FONTS, font_mono=MONO_FONTS),  # no web-font requests
            )
        except OSError as exc:
            raise UserError(f"cannot serve on {host}:{port}: {str(exc).splitlines()[0]}") from None
    except BaseException:
        shutil.rmtree(upload_dir, ignore_errors=True)
        raise
    served = Served(url=url or f"http://{host}:{port}/", demo=demo, app=app)
    seconds = time.perf_counter() - started
    if host not in ("127.0.0.1", "localhost", "::1") and credentials is None:
        print(f"pneumoscope: warning: listening on {host} without --auth: anyone who can reach this "
              "machine can use the app", file=sys.stderr, flush=True)
    print(f"pneumoscope: serving model '{predictor.name}' at {served.url} (answering {seconds:.1f} s after start)",
          file=sys.stderr, flush=True)
    _ready_heatmaps(predictor, warm_up, started)
    if block:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl+C does: uploads folder removed
        try:
            demo.block_thread()
        finally:
            served.close()
    return served


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
