"""``pneumoscope serve``: start the page on the bundled model (or one named), and stop it cleanly.

Privacy by construction: uploads land in a private temporary folder (``GRADIO_TEMP_DIR``) and
are deleted as soon as they are predicted; images go back to the browser inline (data URIs)
instead of being written to Gradio's cache; nothing about an image is logged; the server binds
to loopback and makes no public link unless asked.
"""

from __future__ import annotations

import atexit
import contextlib
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
from typing import Any

import numpy as np

from pneumoscope import heap
from pneumoscope.app.handlers import App
from pneumoscope.app.layout import CSS, DEFAULT_EXAMPLES, MONO_FONTS, SYSTEM_FONTS, build_app

log = logging.getLogger("pneumoscope.app")

MAX_UPLOAD = "50mb"
"""Per file; an uncompressed 16-bit DICOM radiograph is up to ~40 MB."""
CONCURRENCY = 2
"""Model runs at once, all endpoints together: one per core on the machines we target."""


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

        page = build_app(predictor, upload_dir, examples)
        demo, app = page.demo, page.app
        demo.queue(default_concurrency_limit=CONCURRENCY, max_size=256)
        try:
            _, url, _ = demo.launch(
                server_name=host, server_port=port, share=share, auth=credentials,
                max_file_size=MAX_UPLOAD, show_error=False, quiet=True, prevent_thread_lock=True, max_threads=8,
                footer_links=["api", "settings"], ssr_mode=False, mcp_server=False, pwa=False, enable_monitoring=False,
                state_session_capacity=200, css=CSS, i18n=gr.I18n(**page.translations),
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
