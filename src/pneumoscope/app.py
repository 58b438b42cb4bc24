"""The web page: Gradio Blocks over the Predictor, nothing else.

Privacy by construction: uploads land in a private temporary folder and are deleted as soon as
they are predicted; images are sent back to the browser inline (data URIs) instead of being
written to Gradio's cache; nothing about an image is logged. Every failure becomes one line in
the page; the server keeps serving.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("pneumoscope.app")

MAX_UPLOAD = "25mb"
FILE_TYPES = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"]
DISCLAIMER = "Research and education only. Not a medical device: never use it to diagnose or treat."


def _png_data_uri(image: Any) -> str:
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _error_card(message: str) -> str:
    return f'<div class="ps-card ps-error" id="ps-error"><b>Cannot read this file:</b> {html.escape(message)}</div>'


def result_card(prediction: Any) -> str:
    """The label, probability, threshold and a confidence bar; a warning instead when not an X-ray."""
    probability = prediction.probability
    percent = 100 * probability
    threshold = 100 * prediction.threshold
    colour = "#c0392b" if prediction.label == "PNEUMONIA" else "#27ae60"
    bar = (
        f'<div class="ps-bar"><div class="ps-fill" style="width:{percent:.1f}%;background:{colour}"></div>'
        f'<div class="ps-mark" style="left:{threshold:.1f}%" title="threshold"></div></div>'
    )
    figures = (
        f'<div class="ps-prob">pneumonia probability <b id="ps-probability">{probability:.3f}</b> '
        f"(threshold {prediction.threshold:.3f})</div>{bar}"
    )
    if not prediction.is_chest_xray:
        reasons = "".join(f"<li>{html.escape(r)}</li>" for r in prediction.warnings)
        return (
            '<div class="ps-card ps-warning" id="ps-warning"><b>This does not look like a chest X-ray.</b> '
            "The model was trained only on frontal chest radiographs, so its output here is not a "
            f"diagnosis and is not shown as one.<ul>{reasons}</ul>"
            f'<details><summary>raw model output</summary>{figures}</details></div>'
        )
    return (
        f'<div class="ps-card"><div class="ps-label" id="ps-label" style="color:{colour}">{prediction.label}</div>'
        f"{figures}<div class='ps-note'>{DISCLAIMER}</div></div>"
    )


def images_html(image: np.ndarray, overlay: Any | None, show_heatmap: bool, opacity: float) -> str:
    from pneumoscope.inference.explain import overlay_heatmap

    shown = "image as read"
    picture = image
    if show_heatmap and overlay is not None:
        picture = overlay_heatmap(image, overlay, alpha=opacity)
        shown = "Grad-CAM: regions that raised the pneumonia score"
    return (
        f'<figure class="ps-figure"><img id="ps-image" src="{_png_data_uri(picture)}" alt="{shown}"/>'
        f"<figcaption>{shown}</figcaption></figure>"
    )


def _is_inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


class App:
    """The handlers, holding one Predictor; kept apart from the layout so tests can call them."""

    def __init__(self, predictor: Any, upload_dir: Path) -> None:
        self.predictor = predictor
        self.upload_dir = upload_dir

    def _discard(self, path: str | None) -> None:
        """Delete an upload once predicted (only files in our own temporary folder)."""
        if path and _is_inside(Path(path), self.upload_dir):
            try:
                os.remove(path)
            except OSError:
                pass

    def predict_one(self, path: str | None, show_heatmap: bool, opacity: float):
        """-> (result dict for the API, result card HTML, image HTML, session state)."""
        if not path:
            return {"error": "no file uploaded"}, _error_card("no file uploaded"), "", None
        try:
            prediction = self.predictor.predict(path, heatmap=True)
        except Exception as exc:  # every failure is one line in the page, never a traceback
            message = _message(exc)
            return {"error": message}, _error_card(message), "", None
        finally:
            self._discard(path)
        state = {"image": prediction.image, "heatmap": prediction.heatmap}
        result = prediction.to_dict()
        return result, result_card(prediction), images_html(prediction.image, prediction.heatmap, show_heatmap, opacity), state

    def redraw(self, state: dict | None, show_heatmap: bool, opacity: float) -> str:
        if not state:
            return ""
        return images_html(state["image"], state["heatmap"], show_heatmap, opacity)

    def predict_batch(self, paths: list[str] | None):
        """-> (table rows, CSV file path)."""
        rows: list[list[Any]] = []
        for path in paths or []:
            name = Path(path).name
            try:
                prediction = self.predictor.predict(path, heatmap=False)
                warning = "; ".join(prediction.warnings) if not prediction.is_chest_xray else ""
                label = prediction.label if prediction.is_chest_xray else f"({prediction.label}) not a chest X-ray?"
                rows.append([name, label, round(prediction.probability, 4), warning])
            except Exception as exc:
                rows.append([name, "ERROR", None, _message(exc)])
            finally:
                self._discard(path)
        handle = tempfile.NamedTemporaryFile("w", suffix=".csv", prefix="pneumoscope-results-", delete=False, newline="")
        with handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "label", "probability", "warnings"])
            writer.writerows(rows)
        return rows, handle.name


def _message(exc: Exception) -> str:
    from pneumoscope.errors import USER_ERRORS

    if isinstance(exc, USER_ERRORS):
        return str(exc)
    log.error("prediction failed: %s", type(exc).__name__)  # the type only: never image content
    return f"the image could not be processed ({type(exc).__name__})"


CSS = """
.ps-card{padding:14px;border-radius:8px;border:1px solid #ddd}
.ps-error{border-color:#c0392b;background:#fdecea}
.ps-warning{border-color:#e67e22;background:#fff4e5}
.ps-label{font-size:2em;font-weight:700}
.ps-bar{position:relative;height:16px;background:#eee;border-radius:8px;margin:8px 0}
.ps-fill{height:100%;border-radius:8px}
.ps-mark{position:absolute;top:-4px;width:2px;height:24px;background:#000}
.ps-note{font-size:.85em;color:#666}
.ps-figure img{max-width:100%;max-height:560px}
"""


def about_markdown(bundle_path: Path | None) -> str:
    card = bundle_path / "MODEL_CARD.md" if bundle_path else None
    text = card.read_text(encoding="utf-8") if card and card.is_file() else "No model card found for this model."
    figures = ""
    for name in ("confusion_matrix.png", "roc.png"):
        figure = bundle_path / "figures" / name if bundle_path else None
        if figure and figure.is_file():
            uri = "data:image/png;base64," + base64.b64encode(figure.read_bytes()).decode()
            figures += f'<img src="{uri}" alt="{name}" style="max-width:48%;margin:4px"/>'
    return text, figures


def build_app(predictor: Any, upload_dir: Path, examples: str | None = None):
    import gradio as gr

    app = App(predictor, upload_dir)
    card_text, figures = about_markdown(getattr(predictor, "model_path", None))
    with gr.Blocks(title="pneumoscope", delete_cache=(300, 600)) as demo:
        gr.Markdown(f"# pneumoscope\nPneumonia on a paediatric chest X-ray, with what drove the answer. **{DISCLAIMER}**")
        with gr.Tab("Single image"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label="Chest X-ray (PNG, JPEG or DICOM)", file_types=FILE_TYPES, type="filepath", elem_id="ps-upload")
                    show = gr.Checkbox(value=True, label="Show Grad-CAM heatmap")
                    opacity = gr.Slider(0.0, 1.0, value=0.45, step=0.05, label="Heatmap opacity")
                    button = gr.Button("Predict", variant="primary", elem_id="ps-predict")
                    if examples:
                        files = sorted(p for p in Path(examples).rglob("*") if p.suffix.lower() in FILE_TYPES)[:12]
                        if files:
                            gr.Examples([[str(p)] for p in files], inputs=[upload], label="Examples")
                with gr.Column(scale=2):
                    card = gr.HTML(elem_id="ps-result")
                    picture = gr.HTML(elem_id="ps-picture")
                    result = gr.JSON(label="Result (as the API returns it)", visible=True)
            state = gr.State(None)
            button.click(app.predict_one, [upload, show, opacity], [result, card, picture, state], api_name="predict")
            show.change(app.redraw, [state, show, opacity], picture, api_name=False)
            opacity.release(app.redraw, [state, show, opacity], picture, api_name=False)
        with gr.Tab("Batch"):
            many = gr.File(label="Many chest X-rays", file_count="multiple", file_types=FILE_TYPES, type="filepath")
            run = gr.Button("Predict all", variant="primary")
            table = gr.Dataframe(headers=["file", "label", "probability", "warnings"], interactive=False, elem_id="ps-table")
            download = gr.File(label="Results as CSV")
            run.click(app.predict_batch, [many], [table, download], api_name="predict_batch")
        with gr.Tab("About the model"):
            gr.Markdown(card_text)
            gr.HTML(figures)
    return demo


def serve(
    model: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    examples: str | None = None,
    auth: str | None = None,
    share: bool = False,
    block: bool = True,
):
    """Start the app. Binds to loopback and makes no public link unless asked."""
    upload_dir = Path(tempfile.mkdtemp(prefix="pneumoscope-uploads-"))
    os.environ["GRADIO_TEMP_DIR"] = str(upload_dir)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from pneumoscope.inference.predictor import Predictor

    predictor = Predictor.load(model)
    demo = build_app(predictor, upload_dir, examples)
    credentials = None
    if auth:
        user, sep, password = auth.partition(":")
        if not sep or not user or not password:
            from pneumoscope.cli import UserError

            raise UserError("--auth must be USER:PASS")
        credentials = (user, password)
    demo.queue(default_concurrency_limit=2)
    try:
        demo.launch(
            server_name=host, server_port=port, share=share, auth=credentials,
            max_file_size=MAX_UPLOAD, allowed_paths=[examples] if examples else None,
            show_error=False, quiet=True, prevent_thread_lock=not block,
        )
    finally:
        if block:
            shutil.rmtree(upload_dir, ignore_errors=True)
    return demo
