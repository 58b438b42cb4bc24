"""What ``pneumoscope predict`` is asked to score: files, folders, manifests and storage URIs.

An archive on a cluster is rarely a folder on this machine: it is a list (a manifest exported
from a PACS or a data lake) or a prefix on object storage. Everything here turns those into one
list of :class:`Source` (the name a results row shows, where a worker reads it), so that the
Ray engine and the single-machine one agree on what a row's ``path`` is. Local paths are listed
exactly as :func:`~pneumoscope.inference.batch.expand_paths` lists them (same order, same rows);
a URI (``file://``, ``s3://``, ``gs://``, ...) is listed through ``pyarrow.fs``, imported only then.

A named input that does not exist is kept: it becomes an error row, as in the local engine.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from pneumoscope.data.images import IMAGE_SUFFIXES
from pneumoscope.errors import UserError

MANIFEST_COLUMNS = ("path", "uri", "file", "filename")
"""A CSV manifest's column of inputs, the first of these its header has (else its first column)."""


@dataclass(frozen=True)
class Source:
    """One input: ``path`` as the results show it, ``location`` where any worker can read it."""

    path: str
    """As given (a relative path stays relative, as in the local engine's rows), or the full URI."""
    location: str
    """An absolute local path or a URI: a worker's current folder is not the driver's."""


def is_uri(text: str) -> bool:
    """Whether ``text`` names storage by scheme (``s3://``, ``file:///``), not a local path."""
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isalnum() and len(scheme) > 1  # a Windows drive letter is one character


def read_manifest(path: str | Path) -> list[str]:
    """The inputs a manifest lists: a CSV with a header naming one of ``MANIFEST_COLUMNS`` (else
    its first column), or text with one path or URI a line (blank lines and ``#`` comments skipped).
    Entries are kept as written: a relative path is relative to the current folder, as on the command line."""
    manifest = Path(path)
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"cannot read the manifest {manifest}: {exc.strerror or exc}") from None
    if manifest.suffix.lower() == ".csv":
        rows = [row for row in csv.reader(text.splitlines()) if row and any(cell.strip() for cell in row)]
        if not rows:
            return []
        header = [cell.strip().lower() for cell in rows[0]]
        column = next((header.index(name) for name in MANIFEST_COLUMNS if name in header), None)
        body = rows[1:] if column is not None else rows
        column = column or 0
        return [row[column].strip() for row in body if len(row) > column and row[column].strip()]
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def list_sources(paths: Iterable[str | Path], recursive: bool = False) -> tuple[list[Source], int]:
    """Every input named, folders and URI prefixes expanded, in a stable order without duplicates.

    Returns the sources and the number of subfolders skipped for want of ``recursive``.
    """
    from pneumoscope.inference.batch import expand_paths

    found: list[Source] = []
    skipped = 0
    local: list[str] = []

    def flush_local() -> None:
        nonlocal skipped
        if local:
            files, more = expand_paths(local, recursive)
            skipped += more
            found.extend(Source(str(f), os.path.abspath(f)) for f in files)
            local.clear()

    for raw in map(str, paths):
        if is_uri(raw):
            flush_local()
            listed, more = _list_uri(raw, recursive)
            found.extend(listed)
            skipped += more
        else:
            local.append(raw)
    flush_local()
    unique = list({source.path: source for source in found}.values())
    return unique, skipped


def filesystem(uri: str) -> tuple[Any, str]:
    """The ``pyarrow.fs`` filesystem of ``uri`` and the path inside it (a local path is its own)."""
    from pyarrow import fs

    if not is_uri(uri):
        return fs.LocalFileSystem(), os.path.abspath(uri)
    try:
        return fs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ... on a bad URI
        raise UserError(f"cannot open {uri}: {exc}") from None


def _list_uri(uri: str, recursive: bool) -> tuple[list[Source], int]:
    from pyarrow import fs

    filesys, root = filesystem(uri)
    info = filesys.get_file_info(root)
    if info.type != fs.FileType.Directory:
        return [Source(uri, uri)], 0  # a file, or a missing one: its row says which
    scheme = uri.split("://", 1)[0]
    entries = filesys.get_file_info(fs.FileSelector(root, recursive=recursive))
    sources, skipped = [], 0
    for entry in sorted(entries, key=lambda e: e.path):
        name = entry.base_name
        if entry.type == fs.FileType.Directory:
            skipped += 0 if recursive else 1
        elif entry.type == fs.FileType.File and Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith("."):
            full = f"{scheme}://{entry.path}"  # file:///abs/x.png, s3://bucket/key/x.png
            sources.append(Source(full, full))
    return sources, skipped


def manifest_entries(manifests: Sequence[str | Path]) -> list[str]:
    """Every manifest's entries, in order."""
    entries: list[str] = []
    for manifest in manifests:
        entries.extend(read_manifest(manifest))
    return entries


__all__ = ["Source", "filesystem", "is_uri", "list_sources", "manifest_entries", "read_manifest"]
