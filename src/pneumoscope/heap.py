"""glibc malloc tuning: the two workloads want opposite things from the heap.

- Batch jobs (training, ``finalize``, evaluation) allocate activations of tens to hundreds of MB
  per batch. glibc serves each from a fresh ``mmap`` and unmaps it when freed, so the kernel
  zeroes every page again on the next batch: measured here, more system than user CPU time and
  a forward pass 2-3x slower at batch 64 (``keep_freed_memory``).
- The web server must keep its memory flat across thousands of uploads of every size:
  ``limit_arenas`` and a periodic ``trim`` give freed memory back.

Every function is a no-op where glibc is not the C library.
"""

from __future__ import annotations

from typing import Any

_libc: Any = None
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8


def _glibc() -> Any:
    global _libc
    if _libc is None:
        try:
            import ctypes

            _libc = ctypes.CDLL("libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
            _libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        except (OSError, AttributeError):
            _libc = False
    return _libc


def keep_freed_memory(limit_mb: int = 1024) -> None:
    """Serve allocations up to ``limit_mb`` from the heap and keep freed memory for reuse,
    instead of a fresh page-faulted ``mmap`` for every large tensor of every batch."""
    if _glibc():
        _libc.mallopt(M_MMAP_THRESHOLD, limit_mb << 20)
        _libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1)


def trim() -> None:
    """Give freed heap memory back to the system.

    Decoding radiographs of every size in several worker threads leaves each thread's malloc
    arena holding its high-water mark: without this the server's RSS creeps up with traffic.
    """
    if _glibc():
        _libc.malloc_trim(0)


def limit_arenas(arenas: int = 2) -> None:
    """At most ``arenas`` malloc arenas for the threads to come (glibc's default is 8 per core)."""
    if _glibc():
        _libc.mallopt(M_ARENA_MAX, arenas)
