"""The page's layout: Gradio Blocks wired to the handlers, every fixed text through Gradio's i18n."""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pneumoscope.app import text
from pneumoscope.app.about import about_content
from pneumoscope.app.handlers import DEFAULT_OPACITY, App
from pneumoscope.app.table import DATATYPES, HEADERS
from pneumoscope.app.text import key
from pneumoscope.app.uploads import SWEEP, install, path_key
from pneumoscope.data.images import IMAGE_SUFFIXES

DEFAULT_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
"""Four small credited radiographs shipped in the package (examples/CREDITS.md): what the page
offers when ``--examples`` names no folder of one's own."""
MAX_EXAMPLES = 12

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
.ps-caution{margin-top:8px;padding:6px 8px;border-left:4px solid #e67e22;background:#fff4e5;color:#222}
.ps-figure{margin:0}
.ps-figure img{width:100%;max-width:760px;height:auto}
.ps-figures img{display:inline-block;width:32%;min-width:240px;margin:4px;vertical-align:top}
""" + text.CSS
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Consolas", "monospace"]


def example_files(folder: str | Path, limit: int = MAX_EXAMPLES) -> list[Path]:
    """Up to ``limit`` images under ``folder``, taken in turn from each subfolder (NORMAL, PNEUMONIA, ...)."""
    root = Path(folder)
    groups: dict[Path, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            groups.setdefault(path.parent, []).append(path)
    chosen: list[Path] = []
    queues = [collections.deque(files) for _, files in sorted(groups.items())]
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.popleft())
    return chosen


@dataclass
class Page:
    """The Blocks, their handlers, and the translations ``launch`` needs (``gr.I18n``'s tables)."""

    demo: Any
    app: App
    translations: dict[str, dict[str, str]]


def build_app(predictor: Any, upload_dir: Path, examples: str | Path | None = None) -> Page:
    """The Blocks and their handlers. ``GRADIO_TEMP_DIR`` must already name ``upload_dir``."""
    import gradio as gr

    about = about_content(predictor)
    with gr.Blocks(title="pneumoscope", analytics_enabled=False, delete_cache=SWEEP) as demo:
        app = App(predictor, upload_dir, install(demo))

        gr.Markdown("# pneumoscope")
        gr.Markdown(key("intro"))
        with gr.Tab(key("tab_single"), id="single"):
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(label=key("upload"), elem_id="ps-upload")
                    button = gr.Button(key("predict"), variant="primary", elem_id="ps-predict")
                    show = gr.Checkbox(value=True, label=key("show_heatmap"), elem_id="ps-show-heatmap")
                    opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label=key("opacity"),
                                        elem_id="ps-opacity")
                    gr.Markdown(key("deleted"), elem_classes="ps-note")
                    if examples:
                        files = example_files(examples)
                        if files:
                            gr.Examples(
                                [[str(p)] for p in files], inputs=[upload], label=key("examples"),
                                example_labels=[str(p.relative_to(examples)) for p in files],
                                examples_per_page=MAX_EXAMPLES, cache_examples=False, api_visibility="private",
                            )
                with gr.Column(scale=2):
                    card = gr.HTML(elem_id="ps-result")
                    picture = gr.HTML(elem_id="ps-picture")
                    with gr.Accordion(key("api_result"), open=False):
                        result = gr.JSON(label=key("result"), elem_id="ps-json")
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
        with gr.Tab(key("tab_batch"), id="batch"):
            many = gr.File(label=key("batch_upload"), file_count="multiple", elem_id="ps-batch-upload")
            run = gr.Button(key("predict_all"), variant="primary", elem_id="ps-batch-run")
            # One table per language, the page's CSS showing the one of <html lang> (app/table.py).
            tables = [
                gr.Dataframe(
                    headers=HEADERS[language], datatype=DATATYPES[language], interactive=False, wrap=True,
                    label=key("results"), elem_id="ps-table" + suffix, elem_classes=f"ps-{language}",
                    show_search="search", column_widths=["20%", "14%", "10%", "22%", "34%"],
                )
                for language, suffix in (("en", ""), ("es", "-es"))
            ]
            gr.Markdown(key("batch_note"), elem_classes="ps-note")
            download = gr.File(label=key("csv"), elem_id="ps-csv", interactive=False)
            run.click(
                app.predict_batch_page, [many], [*tables, download], api_visibility="private",
                concurrency_id="model", preprocess=False,
            ).then(lambda: None, None, many, api_visibility="private", queue=False)
        with gr.Tab(key("tab_about"), id="about"):
            gr.Markdown(key("about_summary"), elem_id="ps-summary")
            if about.figures:
                with gr.Accordion(key("figures_section"), open=True):
                    gr.HTML(about.figures)
            with gr.Accordion(key("card_section"), open=False, elem_id="ps-card-section"):
                gr.Markdown(about.card, elem_id="ps-card")
            if about.config:
                with gr.Accordion(key("config_section"), open=False, elem_id="ps-config-section"):
                    gr.Code(about.config, language="yaml", interactive=False, elem_id="ps-config")

        # The API's single-image endpoint: a file in, the prediction's dict out (no HTML, no pictures).
        api_file = gr.File(label="image", visible=False)
        api_answer = gr.JSON(label="prediction", visible=False)
        api_trigger = gr.Button(visible=False)
        api_trigger.click(
            app.api_predict, [api_file], [api_answer], api_name="predict", concurrency_id="model", preprocess=False,
        )
        # The API's batch endpoint: files in, the English table and the CSV out (the page shows its
        # table per language; programs read one).
        api_files = gr.File(label="images", file_count="multiple", visible=False)
        api_table = gr.Dataframe(headers=HEADERS["en"], datatype=DATATYPES["en"], label="table", visible=False)
        api_csv = gr.File(label="csv", visible=False)
        api_batch = gr.Button(visible=False)
        api_batch.click(
            app.predict_batch, [api_files], [api_table, api_csv], api_name="predict_batch", concurrency_id="model",
            preprocess=False,
        )

    app.uploads.file_blocks = [upload, many, api_file, api_files]
    # Nothing has been uploaded yet: whatever is in the folder now is an example's cached copy.
    app.uploads.protected = {path_key(p) for p in Path(upload_dir).rglob("*") if p.is_file()}
    return Page(demo, app, text.translations({"about_summary": about.summary}))
