"""Decode a collection once into a uint8 array at the model's size.

Decoding a JPEG costs milliseconds, a training step on a batch little more; decoding every
epoch would double training time. The array is a ``.npy`` file memory-mapped on later runs,
keyed by the file list (paths, sizes, modification times) and the size, so any change to the
data makes a new cache instead of a stale one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from pneumoscope.data.decoding import Job, close_pool, start_pool, stream
from pneumoscope.data.images import DRAFT_MARGIN, load_image
from pneumoscope.errors import ImageLoadError


def default_cache_dir() -> Path:
    return Path(os.environ.get("PNEUMOSCOPE_CACHE", Path.home() / ".cache" / "pneumoscope"))


RESIZE_VERSION = f"bilinear-1|draft-{DRAFT_MARGIN}x"
"""Part of every cache key: a change to how the loader decodes or resizes must not reuse arrays made
the old way (a JPEG's reduced decode keeps ``DRAFT_MARGIN`` times the size: a 224 px file decoded
for a 64 px network changed when the margin did)."""


def cache_key(paths: Sequence[str], size: int) -> str:
    digest = hashlib.sha256(f"{size}|{RESIZE_VERSION}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def decode_all(paths: Sequence[str], size: int, workers: int | None = None, progress: bool = False) -> np.ndarray:
    """Decode ``paths`` into an (N, size, size) uint8 array, in the one decoding pool (``data/decoding``);
    an unreadable file stops it with an error naming the file (training must not skip a film silently)."""
    out = np.empty((len(paths), size, size), dtype=np.uint8)
    workers = workers or min(4, os.cpu_count() or 1)
    pool = start_pool(workers, len(paths)) if len(paths) > 64 else None
    decoded: Iterable[tuple[str, Any, str | None]] = stream(pool, [str(p) for p in paths], Job(load_image, size))
    if progress:
        from tqdm import tqdm

        decoded = tqdm(decoded, total=len(paths), desc=f"decoding {size}px", unit="img")
    try:
        for index, (path, array, error) in enumerate(decoded):
            if error is not None:
                raise ImageLoadError(f"{path}: {error}")
            out[index] = array
    finally:
        close_pool(pool)
    return out


def cached_images(
    paths: Sequence[str], size: int, cache_dir: Path | None = None, progress: bool = True
) -> np.ndarray:
    """The decoded images of ``paths``, from the cache when it is current, built otherwise."""
    cache_dir = cache_dir or default_cache_dir()
    target = cache_dir / f"images-{size}px-{cache_key(paths, size)}.npy"
    if target.exists():
        array = np.load(target, mmap_mode="r")
        if array.shape == (len(paths), size, size):
            return array
    array = decode_all(paths, size, progress=progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(partial, array)
    partial.replace(target)
    return array
