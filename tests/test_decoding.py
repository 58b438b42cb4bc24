"""The one decoding pool: input order, errors as outcomes, and the training cache's refusal of a bad film."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from pneumoscope.data.cache import decode_all
from pneumoscope.data.decoding import Job, close_pool, start_pool, stream
from pneumoscope.data.images import load_image
from pneumoscope.errors import ImageLoadError


def _files(chest_xray: Path, tmp_path: Path, n: int = 12) -> list[str]:
    good = sorted((chest_xray / "train" / "NORMAL").iterdir())[:n]
    broken = tmp_path / "broken.jpeg"
    broken.write_bytes(good[0].read_bytes()[:400])
    return [str(p) for p in good[: n // 2]] + [str(broken)] + [str(p) for p in good[n // 2:]]


@pytest.mark.parametrize("workers", [1, 2])
def test_stream_keeps_order_and_turns_failures_into_messages(chest_xray: Path, tmp_path: Path, workers: int) -> None:
    files = _files(chest_xray, tmp_path)
    pool = start_pool(workers, len(files))
    try:
        outcomes = list(stream(pool, files, Job(load_image, 64), window=3))
    finally:
        close_pool(pool)
    assert [path for path, _, _ in outcomes] == files
    for path, array, error in outcomes:
        if path.endswith("broken.jpeg"):
            assert array is None and "truncated" in error.lower()
        else:
            assert error is None
            np.testing.assert_array_equal(array, load_image(path, 64))


def test_training_cache_refuses_a_bad_film_by_name(chest_xray: Path, tmp_path: Path) -> None:
    files = _files(chest_xray, tmp_path, n=70)  # over 64 files: decoded in the pool
    with pytest.raises(ImageLoadError, match=r"broken\.jpeg: .*(?i:truncated)"):
        decode_all(files, 64, workers=2)
    good = [f for f in files if not f.endswith("broken.jpeg")]
    np.testing.assert_array_equal(decode_all(good, 64, workers=2)[5], load_image(good[5], 64))



def _stuck(path: str) -> None:
    time.sleep(3600)  # a decoder that never returns (a hung codec)


@pytest.mark.timeout(120)
def test_a_stuck_worker_is_stopped_even_when_the_parent_handles_sigterm() -> None:
    """``ray.init`` leaves a Python SIGTERM handler in its driver; a worker that inherited one and sat
    in a hung decoder ignored ``Pool.terminate``, and CI's ``close_pool`` waited for ever."""
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        pool = start_pool(2, 4)
        outcomes = list(stream(pool, ["a.png", "b.png"], Job(_stuck), window=2, timeout=2))
        close_pool(pool)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert [error for _, _, error in outcomes] == [outcomes[0][2]] * 2 and "did not finish within 2 s" in outcomes[0][2]


def test_workers_are_not_forked_from_a_busy_parent() -> None:
    """Workers come from the fork server, a fresh interpreter, never from this process and its threads."""
    pool = start_pool(2, 4)
    try:
        (_, parent, error), = list(stream(pool, ["x"], Job(_parent_pid)))
    finally:
        close_pool(pool)
    assert error is None and parent != os.getpid()


def _parent_pid(path: str) -> int:
    return os.getppid()
