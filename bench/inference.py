"""Inference speed on this machine: single-file latency and batch-CLI throughput.

Run: .venv/bin/python bench/inference.py [--model RUN_OR_MODEL]   (prints tables; the machine is named)

1. Latency, p50 and p95, from a full-resolution JPEG file (the shared originals) to a
   probability: ONNX Runtime vs PyTorch, without and with a Grad-CAM heatmap (with ONNX Runtime
   the map comes from its run plus a gradient through the network's head; with PyTorch alone,
   from MONAI's GradCAM in one forward and a truncated backward pass). Decoding alone is
   shown for reference: it is part of every figure.
2. Throughput of ``pneumoscope predict`` (``run_batch``, worker processes decoding while the
   main process scores) on full-resolution originals and on 224 px files, in images/s. The
   marginal rate subtracts a short run's time, so start-up (imports, model load, pool) is not
   counted; the end-to-end rate counts everything. Beside it, the two floors that bound it on
   the same cores: decoding alone (same pool) and the network alone (ONNX Runtime, batches).

Targets from the issue: <= 50 ms p50 file -> probability + heatmap; >= 150 full-resolution
images/s for the batch CLI on 2 cores. The load average is printed: another job on the
machine (a training run) makes every figure worse, and says so here.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
DATA = Path(os.environ.get("PNEUMOSCOPE_DATA", REPO.parent / "shared" / "data"))

from pneumoscope.data.decoding import default_workers  # noqa: E402
from pneumoscope.inference.batch import run_batch  # noqa: E402
from pneumoscope.machine import describe, physical_cores  # noqa: E402
from pneumoscope.inference.predictor import Predictor  # noqa: E402
from pneumoscope.inference.prepare import prepare_image  # noqa: E402


def machine() -> str:
    return describe()


def load() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def timed(function, items, rounds: int) -> np.ndarray:
    for item in items[:3]:
        function(item)  # warm-up: first-call allocations, lazy imports
    times = []
    for _ in range(rounds):
        for item in items:
            start = time.perf_counter()
            function(item)
            times.append(time.perf_counter() - start)
    return np.asarray(times) * 1000.0


def latency_table(model: str | None, files: list[Path], rounds: int) -> list[tuple[str, np.ndarray]]:
    fast = Predictor.load(model)
    eager = Predictor.load(model, backend="torch")
    rows = [
        ("decode + resize only", timed(lambda f: prepare_image(f, fast.image_size), files, rounds)),
        (f"file -> probability, {fast.backend}", timed(fast.predict, files, rounds)),
        ("file -> probability, torch", timed(eager.predict, files, rounds)),
        (f"file -> probability + heatmap, {fast.backend} + head gradient",
         timed(lambda f: fast.predict(f, heatmap=True), files, rounds)),
        ("file -> probability + heatmap, torch (MONAI GradCAM)",
         timed(lambda f: eager.predict(f, heatmap=True), files, rounds)),
    ]
    return rows


def _batch_seconds(model: str | None, files: list[Path], workers: int | None, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        status = run_batch([str(f) for f in files], model=model, out=Path(tmp) / "r.csv", workers=workers,
                           batch_size=batch_size, progress=False)
        elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit("batch run reported failures")
    return elapsed


def _pool_decode_rate(files: list[Path], size: int, workers: int) -> float:
    """Decoding alone, through the batch CLI's own pool and stream."""
    from pneumoscope.data.decoding import close_pool, start_pool
    from pneumoscope.inference.batch import decoded_stream

    pool = start_pool(workers, len(files))
    try:
        for _ in decoded_stream(pool, [str(f) for f in files[:8]], size, False):
            pass
        start = time.perf_counter()
        for _ in decoded_stream(pool, [str(f) for f in files], size, False):
            pass
        return len(files) / (time.perf_counter() - start)
    finally:
        close_pool(pool)


def _model_rate(model: str | None, files: list[Path], batch_size: int) -> float:
    predictor = Predictor.load(model)
    pixels = np.stack([prepare_image(f, predictor.image_size, keep_display=False).pixels for f in files[:batch_size]])
    predictor.scorer.score(pixels)
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < 4.0:
        predictor.scorer.score(pixels)
        done += len(pixels)
    return done / (time.perf_counter() - start)


def linked_copies(files: list[Path], copies: int, folder: Path) -> list[Path]:
    """``copies`` symbolic links to each file: enough images for a steady rate without new data."""
    out = []
    for index in range(copies):
        for path in files:
            link = folder / f"{index}-{path.parent.name}-{path.name}"
            link.symlink_to(path.resolve())
            out.append(link)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="run folder, model folder or .onnx (default: the bundled model)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the 48 originals for latency")
    parser.add_argument("--copies", type=int, default=5, help="links to each original for the throughput run")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: as the CLI)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    import onnxruntime
    import torch

    originals = sorted((DATA / "originals").glob("*/*.jp*g"))
    small = sorted((DATA / "chest_xray" / "train").glob("*/*.jp*g"))[: 48 * args.copies]
    print(f"machine: {machine()}; torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__}; load average at start {load()}")
    sizes = [prepare_image(f, 224).original_size for f in originals]
    print(f"images: {len(originals)} full-resolution originals (median {int(np.median([s[0] for s in sizes]))} x "
          f"{int(np.median([s[1] for s in sizes]))} px), {len(small)} 224 px training copies\n")

    print(f"{'single file, latency (ms)':<52}{'p50':>8}{'p95':>8}")
    for name, times in latency_table(args.model, originals, args.rounds):
        print(f"{name:<52}{np.percentile(times, 50):>8.1f}{np.percentile(times, 95):>8.1f}")
    print(f"load average now {load()}\n")

    workers = args.workers or default_workers()
    print(f"{'batch CLI, throughput (images/s)':<40}{'marginal':>10}{'end-to-end':>12}{'decode floor':>14}{'model floor':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        full = linked_copies(originals, args.copies, Path(tmp))
        model_rate = _model_rate(args.model, small, args.batch_size)
        for name, files in (("full-resolution originals", full), ("224 px files", small)):
            short = _batch_seconds(args.model, files[:16], args.workers, args.batch_size)
            whole = _batch_seconds(args.model, files, args.workers, args.batch_size)
            marginal = (len(files) - 16) / max(whole - short, 1e-9)
            decode = _pool_decode_rate(files, 224, workers)
            print(f"{name + f' (n={len(files)})':<40}{marginal:>10.0f}{len(files) / whole:>12.0f}{decode:>14.0f}{model_rate:>13.0f}")
    print(f"(floors measured alone: decoding with {workers} worker processes; the network alone with ONNX Runtime, "
          f"batch {args.batch_size}, {physical_cores()} threads. Run together they share the same cores, so the pipeline "
          "cannot beat 1 / (1/decode + 1/model).)")
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()
