"""What a model costs to serve, against a baseline model, in the same run on the same machine.

The issue-20 budget for adopting an ensemble (or any heavier model): file -> probability +
heatmap p50 at most 2.5x the baseline's, batch throughput at least 0.4x. Each measurement runs in
its own process (so peak memory is the model's own), alternating candidate and baseline round by
round so that a change in the machine's load hits both alike; medians over rounds are printed.

The batch run is repeated at several ``--batch-size`` values (``--batch-sizes``): on two cores the
networks' first layers at 32 films a batch outgrow the caches, and throughput, above all an
ensemble's, falls well below what 4 or 8 give. The budget line compares both models at the batch
size the CLI uses (:data:`pneumoscope.config.INFERENCE_BATCH_SIZE`), the same code for both.

Run: .venv/bin/python bench/model_cost.py --baseline MODEL_DIR [--model MODEL_DIR] [--rounds 2]
[--batch-sizes 4,8,16,32] (default model: the bundled one)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
DATA = Path(os.environ.get("PNEUMOSCOPE_DATA", REPO.parent / "shared" / "data"))


def measure(model: str, copies: int, batch_sizes: list[int]) -> dict:
    """One model, in this process: heatmap latency over the 48 originals, then batch throughput at
    each batch size, smallest first, with the process's peak memory after each (so the peak at a
    size also covers the heatmap runs and the smaller batches before it)."""
    from pneumoscope.inference.batch import run_batch
    from pneumoscope.inference.predictor import Predictor

    originals = sorted((DATA / "originals").glob("*/*.jp*g"))
    started = time.perf_counter()
    predictor = Predictor.load(model)
    load_seconds = time.perf_counter() - started
    for path in originals[:3]:
        predictor.predict(path, heatmap=True)
    times = []
    for path in originals:
        start = time.perf_counter()
        predictor.predict(path, heatmap=True)
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        links = []
        for index in range(copies):
            for path in originals:
                link = Path(tmp) / f"{index}-{path.parent.name}-{path.name}"
                link.symlink_to(path.resolve())
                links.append(str(link))
        rates = {}
        for size in sorted(batch_sizes):
            start = time.perf_counter()
            run_batch(links, model=model, out=Path(tmp) / "r.csv", batch_size=size, progress=False)
            rates[f"batch_{size}"] = len(links) / (time.perf_counter() - start)
            rates[f"peak_rss_mb_{size}"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"heatmap_p50_ms": 1000 * float(np.median(times)), "heatmap_p95_ms": 1000 * float(np.percentile(times, 95)),
            **rates, "load_seconds": load_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="candidate model folder (default: the bundled model)")
    parser.add_argument("--baseline", required=True, help="baseline model folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--copies", type=int, default=4, help="links to each original for the batch run")
    parser.add_argument("--batch-sizes", default="4,8,16,32", help="comma-separated batch sizes for the batch run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from pneumoscope.config import INFERENCE_BATCH_SIZE

    sizes = sorted({int(v) for v in args.batch_sizes.split(",")} | {INFERENCE_BATCH_SIZE})
    if args.child is not None:
        print(json.dumps(measure(args.child or None, args.copies, sizes)))
        return

    from pneumoscope.machine import describe
    from pneumoscope.models.bundle import DEFAULT_MODEL_DIR

    candidate = args.model or str(DEFAULT_MODEL_DIR)
    runs: dict[str, list[dict]] = {"candidate": [], "baseline": []}
    for _ in range(args.rounds):
        for role, model in (("candidate", candidate), ("baseline", args.baseline)):
            out = subprocess.run([sys.executable, __file__, "--baseline", args.baseline, "--copies", str(args.copies),
                                  "--batch-sizes", ",".join(map(str, sizes)), "--child", model],
                                 check=True, capture_output=True, text=True).stdout
            runs[role].append(json.loads(out.strip().splitlines()[-1]))
    median = {role: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for role, rs in runs.items()}
    print(f"machine: {describe()}; {args.rounds} alternating rounds, medians; 48 full-resolution originals")
    print(f"candidate: {candidate}\nbaseline:  {args.baseline}\n")
    print(f"{'':<52}{'candidate':>12}{'baseline':>12}{'ratio':>8}")
    rows = [("heatmap_p50_ms", "file -> p + heatmap, p50 (ms)"), ("heatmap_p95_ms", "file -> p + heatmap, p95 (ms)")]
    rows += [(f"batch_{size}", f"batch CLI ({48 * args.copies} files), batch {size}"
              + (" (the CLI's)" if size == INFERENCE_BATCH_SIZE else "") + ", img/s") for size in sizes]
    rows += [("load_seconds", "load (s)")]
    rows += [(f"peak_rss_mb_{size}", f"peak memory up to batch {size} (MB)") for size in (INFERENCE_BATCH_SIZE, sizes[-1])]
    for key, title in rows:
        c, b = median["candidate"][key], median["baseline"][key]
        print(f"{title:<52}{c:>12.1f}{b:>12.1f}{c / b:>8.2f}")
    p50 = median["candidate"]["heatmap_p50_ms"] / median["baseline"]["heatmap_p50_ms"]
    rate = median["candidate"][f"batch_{INFERENCE_BATCH_SIZE}"] / median["baseline"][f"batch_{INFERENCE_BATCH_SIZE}"]
    print(f"\nbudget: heatmap p50 <= 2.5x ({p50:.2f}x: {'met' if p50 <= 2.5 else 'NOT met'}); "
          f"batch >= 0.4x, both at batch {INFERENCE_BATCH_SIZE} ({rate:.2f}x: {'met' if rate >= 0.4 else 'NOT met'})")
    if 32 in sizes:
        print(f"candidate at batch {INFERENCE_BATCH_SIZE} against the baseline at batch 32 (the CLI's default until "
              f"2026-12-04): {median['candidate'][f'batch_{INFERENCE_BATCH_SIZE}'] / median['baseline']['batch_32']:.2f}x")

if __name__ == "__main__":
    main()
