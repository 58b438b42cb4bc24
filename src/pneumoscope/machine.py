"""What this machine is: CPU model, instruction-set flags, cores. The one reader of ``/proc/cpuinfo``.

Speed figures are only meaningful with the machine beside them (benchmarks print
:func:`describe`), and two choices depend on the CPU: how many threads ONNX Runtime gets
(:func:`physical_cores`) and whether bf16 is worth asking for (:func:`has_native_bf16`).
Off Linux every reader falls back to what ``os`` knows.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[dict[str, str], ...]:
    """``/proc/cpuinfo`` as one dict per logical CPU (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return parse_cpuinfo(handle.read())
    except OSError:
        return ()


def parse_cpuinfo(text: str) -> tuple[dict[str, str], ...]:
    blocks = []
    for chunk in text.split("\n\n"):
        fields = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if fields:
            blocks.append(fields)
    return tuple(blocks)


def logical_cores() -> int:
    """Logical CPUs this process may run on (its affinity, not the whole machine)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical cores available to this process: ONNX Runtime and PyTorch gain nothing from SMT siblings."""
    available = logical_cores()
    pairs = {(cpu.get("physical id", "0"), cpu["core id"]) for cpu in _cpuinfo() if "core id" in cpu}
    return max(1, min(len(pairs), available)) if pairs else max(1, available)


def cpu_model() -> str:
    return next((cpu["model name"] for cpu in _cpuinfo() if "model name" in cpu), platform.processor() or "unknown CPU")


def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the first CPU (``avx2``, ``avx512_bf16``, ``amx_bf16``, ...)."""
    return frozenset(next((cpu["flags"].split() for cpu in _cpuinfo() if "flags" in cpu), ()))


def has_native_bf16() -> bool:
    """Whether the CPU computes in bf16 natively (AVX-512 BF16 or AMX); on AVX2 alone bf16 is emulated, and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def describe() -> str:
    """One line naming the machine, for every published speed figure."""
    return (f"{cpu_model()}, {physical_cores()} physical cores ({logical_cores()} logical), "
            f"{platform.system()} (Python {platform.python_version()})")
