"""Decoding many files in worker processes: the one pool of the project.

Used by the training cache (``data/cache.decode_all``: a bad file stops the run) and by
``pneumoscope predict`` and the app's Batch tab (``inference/batch``: a bad file becomes a row).
Either way a job turns one file into ``(path, value, None)`` or ``(path, None, message)`` and never
raises, results come back in input order, at most ``window`` are in flight (memory stays bounded
however many files there are), and a worker that dies mid-file (the OOM killer, a crashing codec)
costs that file ``timeout`` seconds, not the whole run.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from typing import Any, Callable, Iterable, Iterator, TypeVar

from pneumoscope.errors import failure_message
from pneumoscope.machine import logical_cores

T = TypeVar("T")
Outcome = tuple[str, Any, "str | None"]

DECODE_TIMEOUT_S = 120.0
"""A file not decoded within this becomes an error: a worker killed mid-file never answers, and
waiting for it would hang the whole run."""


def default_workers() -> int:
    """Decoding processes: one per core available (the main process mostly waits on ONNX Runtime)."""
    return logical_cores()


PRELOAD = ["pneumoscope.data.images", "pneumoscope.inference.prepare"]
"""Imported once by the fork server, so each worker starts with the decoders loaded (0.2 s saved a worker)."""


def _worker_init() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    # ``Pool.terminate`` stops workers with SIGTERM. A Python-level handler (``ray.init`` installs
    # one in its driver) only runs between bytecodes, so a worker blocked in C would never leave
    # and the parent's join would wait for ever: the kernel's default action cannot be delayed.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _context() -> Any:
    """Workers come from a fork server: a fresh single-threaded interpreter that forks them.

    A plain fork copies the parent as it is, and the parents here are busy: the web server's
    threads, ONNX Runtime's and PyTorch's thread pools, Ray's gRPC threads after ``--engine ray``
    or in the test run. A child forked while one of those threads held a lock can wait on that
    lock for ever; CI hung so, two tests past their 600 s limit in ``close_pool`` after the Ray
    tests had run in the same process. The fork server starts once per process and preloads the
    decoders: 200 films decoded in 0.64 s against 0.42 s forked, the second pool of a process as fast
    as a fork (2 workers, 2-core EPYC, 2026-12-03). As with any
    spawned worker (Python 3.14's default on Linux too), a script that decodes in a pool needs the
    usual ``if __name__ == "__main__":`` guard; Windows and macOS spawn.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def start_pool(workers: int, files: int) -> Any:
    """A pool of decoding processes, or None when one process is enough."""
    if workers <= 1 or files < 4:
        return None
    return _context().Pool(workers, initializer=_worker_init)


class Job:
    """``decode(path, *args)`` for one file, as a picklable callable that never raises."""

    def __init__(self, decode: Callable[..., Any], *args: Any) -> None:
        self.decode, self.args = decode, args

    def __call__(self, path: str) -> Outcome:
        try:
            return path, self.decode(path, *self.args), None
        except Exception as exc:  # noqa: BLE001 - a bad file must never stop the pool
            return path, None, failure_message(exc)


def stream(
    pool: Any, paths: Iterable[str], job: Job, window: int = 64, timeout: float = DECODE_TIMEOUT_S
) -> Iterator[Outcome]:
    """``job`` over ``paths`` in ``pool`` (in this process when None), in input order."""
    if pool is None:
        yield from map(job, paths)
        return
    in_flight: deque = deque()

    def oldest() -> Outcome:
        path, pending = in_flight.popleft()
        try:
            return pending.get(timeout)
        except multiprocessing.TimeoutError:
            return path, None, f"decoding did not finish within {timeout:g} s (the decoder stopped or hung); skipped"

    for path in paths:
        in_flight.append((path, pool.apply_async(job, (path,))))
        if len(in_flight) >= window:
            yield oldest()
    while in_flight:
        yield oldest()


def close_pool(pool: Any) -> None:
    if pool is not None:
        pool.terminate()
        pool.join()
