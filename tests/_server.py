"""The web app running in the test process, on a free loopback port (shared by the app and browser tests).

``serve(block=False)`` sets ``GRADIO_TEMP_DIR`` for the process (Gradio reads it when it
checks uploads), so one server runs at a time: each test module starts its own and stops it,
and the variable is put back.
"""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_app(**options) -> Iterator["pneumoscope.app.Served"]:  # noqa: F821
    from pneumoscope.app import serve

    saved = os.environ.get("GRADIO_TEMP_DIR")
    served = serve(port=free_port(), block=False, **options)
    try:
        yield served
    finally:
        served.close()
        if saved is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved


def uploads_left(served) -> list[Path]:
    """Files in the app's private folder that could be an upload: not the examples' cached
    copies, not the CSV results, not Gradio's own empty bookkeeping folders."""
    protected = served.app.uploads.protected
    left = []
    for path in served.app.upload_dir.rglob("*"):
        if path.is_file() and os.path.realpath(path) not in protected and path.suffix.lower() != ".csv":
            left.append(path)
    return left


def upload_copy(app, source: Path) -> Path:
    """A copy of ``source`` where Gradio would put an upload: ``<upload dir>/<hash folder>/<name>``
    (one folder per file name, as Gradio makes one per content hash)."""
    folder = app.upload_dir / f"hash-{source.name}"
    folder.mkdir(exist_ok=True)
    return Path(shutil.copyfile(source, folder / source.name))
