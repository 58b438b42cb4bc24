"""What the page's and the API's events call: one Predictor behind them, never an exception out."""

from __future__ import annotations

import os
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pneumoscope import heap
from pneumoscope.app.cards import api_result, error_card, images_html, notice_card, result_card, user_message
from pneumoscope.app.table import Row, cells, make_row, tables
from pneumoscope.app.text import NO_HEATMAP_EMPTY, NO_HEATMAP_NOT_XRAY, NO_HEATMAP_ONNX, NO_UPLOAD
from pneumoscope.app.uploads import PendingUploads, Uploads, identity, path_of

DEFAULT_OPACITY = 0.45


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
    Every upload goes to :class:`~pneumoscope.app.uploads.Uploads` once predicted."""

    def __init__(self, predictor: Any, upload_dir: Path, pending: PendingUploads | None = None) -> None:
        self.predictor = predictor
        self.uploads = Uploads(upload_dir, pending)
        self.upload_dir = self.uploads.folder
        self._predicted = 0
        self._count_lock = threading.Lock()

    def discard(self, path: str | None, seen: tuple[int, int] | None = None) -> None:
        """A prediction is done with ``path``: delete the upload (:meth:`Uploads.discard`) and,
        every ``TRIM_EVERY`` predictions, give freed memory back to the system."""
        with self._count_lock:
            self._predicted += 1
            trim = self._predicted % TRIM_EVERY == 0
        if trim:
            heap.trim()
        self.uploads.discard(path, seen)

    # ------------------------------------------------------------------ the page
    def predict_one(self, upload: Any, show_heatmap: bool = True, opacity: float = DEFAULT_OPACITY) -> SingleResult:
        """Predict one upload (a path) for the page; never raises."""
        path = path_of(upload)
        if not path:
            return SingleResult(notice_card(NO_UPLOAD), "", api_result(None, error=NO_UPLOAD), None, None)
        name, seen = Path(path).name, identity(path)
        try:
            prediction = self.predictor.predict(path, heatmap=self.predictor.can_explain)
        except Exception as exc:  # every failure is one line in the page, never a traceback
            message = user_message(exc)
            return SingleResult(error_card(message, name), "", api_result(name, error=message), None, None)
        finally:
            self.discard(path, seen)
        heatmap = None if prediction.heatmap is None else prediction.heatmap.astype(np.float16)
        reason = NO_HEATMAP_ONNX
        if not prediction.is_chest_xray:  # no "regions that raised the pneumonia score" on a photograph
            heatmap, reason = None, NO_HEATMAP_NOT_XRAY
        elif heatmap is not None and not heatmap.any():  # an all-blue overlay would read as "nothing here"
            heatmap, reason = None, NO_HEATMAP_EMPTY
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
        path = path_of(image)
        if not path:
            return api_result(None, error=NO_UPLOAD)
        name, seen = Path(path).name, identity(path)
        try:
            return api_result(name, self.predictor.predict(path))
        except Exception as exc:
            return api_result(name, error=user_message(exc))
        finally:
            self.discard(path, seen)

    def predict_batch(self, images: list[Any] | None) -> tuple[list[list[Any]], str | None]:
        """``/predict_batch``: many files -> (the English table, ``table.HEADERS["en"]``; every row as
        a CSV file, in ``pneumoscope predict``'s columns)."""
        rows, csv_path = self._batch(images)
        return [cells(row) for row in rows], csv_path

    def predict_batch_page(self, images: list[Any] | None) -> tuple[Any, ...]:
        """The Batch tab: many files -> (one table per language, ``LANGUAGES``' order; the CSV file)."""
        rows, csv_path = self._batch(images)
        return (*tables(rows), csv_path)

    def _batch(self, images: list[Any] | None) -> tuple[list[Row], str | None]:
        """Many files -> (the table's rows; every row as a CSV file), through the Predictor's one
        batch loop.

        A file that is not a chest X-ray is labelled so, with the reasons in ``notes``; the table
        shows no probability for it (the single-image page hides it too), the CSV keeps the raw one
        in ``raw_probability``. An unreadable file is a row labelled ERROR with the message.
        """
        from pneumoscope.inference.batch import RowWriter, decoded_stream, result_row

        uploads = [path for path in map(path_of, images or []) if path]
        if not uploads:
            return [], None
        seen = {path: identity(path) for path in uploads}
        left = Counter(uploads)  # one file sent twice is one path, released twice
        decoded = decoded_stream(None, uploads, self.predictor.image_size, keep_display=False)
        rows: list[Row] = []
        # Written into the private folder: Gradio serves it from there, the sweep and shutdown delete it.
        handle, csv_path = tempfile.mkstemp(prefix="pneumoscope-results-", suffix=".csv", dir=self.upload_dir)
        os.close(handle)
        table = RowWriter(csv_path)
        try:
            for path, prediction, error in self.predictor.stream(decoded):
                name = Path(path).name
                row = result_row(name, prediction, error)  # the CSV's row: the table shows the same answer
                table.write(row)
                self.discard(path, seen[path])
                left[path] -= 1
                rows.append(make_row(name, row, prediction, error))
        finally:
            table.close()
            for path, count in left.items():  # not reached: scoring stopped mid-batch
                for _ in range(count):
                    self.discard(path, seen[path])
        return rows, csv_path
