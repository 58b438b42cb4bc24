"""The life of an upload: Gradio stores it, a prediction reads it, this module deletes it.

This is the one module that reaches into Gradio's private state (``Blocks.upload_file_set``,
``Blocks.temp_file_sets``, a file component's ``temp_files``): Gradio offers no public way to
delete an upload once used, and keeps each path it stored in memory for ever. Each reach is
named in :func:`install` and :meth:`Uploads.discard`, so a Gradio upgrade that moves them
breaks here, and ``tests/test_app.py`` catches it.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from pathlib import Path
from typing import Any

SWEEP = (60, 600)
"""Gradio's cache sweep (every 60 s, files older than 600 s): removes uploads never predicted
(a browser uploads as soon as a file is chosen) and CSV results nobody downloaded."""


def path_key(path: str | Path) -> str:
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
                    self._times.setdefault(path_key(path), collections.deque()).append(now)
        super().update(*others)

    def release(self, path: str) -> bool:
        """One upload of ``path`` has been predicted; True when no other upload of it is pending."""
        key, horizon = path_key(path), time.monotonic() - self.max_age
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


def path_of(value: Any) -> str | None:
    """An upload as the handlers receive it: a path (direct calls, tests) or Gradio's file payload.

    The events skip Gradio's preprocessing (``preprocess=False``), whose ``gr.File`` leaves an
    empty temporary file behind for every upload; Gradio still checks that the path is an upload.
    """
    if value is None or isinstance(value, (str, os.PathLike)):
        return None if value is None else os.fspath(value)
    if isinstance(value, dict):
        return value.get("path")
    return getattr(value, "path", None)


def identity(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns


def is_inside(path: Path, folder: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except OSError:
        return False


class Uploads:
    """Deletes uploads once predicted: only files inside ``folder``, never those in ``protected``
    (the cached copies of the examples, which Gradio places there before the server starts)."""

    def __init__(self, folder: Path, pending: PendingUploads | None = None) -> None:
        self.folder = Path(folder)
        self.pending = pending
        self.protected: set[str] = set()
        self.file_blocks: list[Any] = []
        """The file components: Gradio remembers each upload's path in their ``temp_files`` for ever."""

    def discard(self, path: str | None, seen: tuple[int, int] | None = None) -> None:
        """Delete an upload once predicted: only files in our own temporary folder, never an example.

        ``seen``: the file's identity when its prediction started; a file replaced since then
        is another client's upload of the same content (Gradio moved it onto this path), left
        for that client's own prediction to delete.
        """
        if not path or not is_inside(Path(path), self.folder):
            return
        last = self.pending is None or self.pending.release(path)
        if not last or path_key(path) in self.protected:
            return  # the same file was uploaded again and waits for its own prediction; or an example
        for block in self.file_blocks:
            block.temp_files.discard(path)
        if seen is not None and identity(path) != seen:
            return
        try:
            os.remove(path)
        except OSError:
            return
        parent = Path(path).parent
        if parent != self.folder and is_inside(parent, self.folder) and not self.upload_in_flight():
            try:
                parent.rmdir()  # Gradio's per-upload folder, named by a hash of the content
            except OSError:
                pass

    def upload_in_flight(self) -> bool:
        """Whether Gradio is receiving an upload now: it streams each into a ``tmp*`` file at the
        top of the folder, then makes the hash-named folder and moves the file in; removing that
        folder in between would lose the upload."""
        try:
            with os.scandir(self.folder) as entries:
                return any(entry.name.startswith("tmp") and entry.is_file() for entry in entries)
        except OSError:
            return True


def install(demo: Any) -> PendingUploads:
    """Replace the Blocks' set of uploaded paths by a :class:`PendingUploads` (Gradio's private
    ``upload_file_set``, also listed in ``temp_file_sets`` for the cache sweep)."""
    pending = PendingUploads(demo.upload_file_set)
    demo.temp_file_sets = [pending if s is demo.upload_file_set else s for s in demo.temp_file_sets]
    demo.upload_file_set = pending
    return pending
