"""What a model costs to serve, against a baseline model, in the same run on the same machine.

The issue-20 budget for adopting an ensemble (or any heavier model): file -> probability +
heatmap p50 at most 2.5x the baseline's, batch throughput at least 0.4x. Each measurement runs in
its own process (so peak memory is the model's own), alternating candidate and baseline round by
round so that a change in the machine's load hits both alike; medians over rounds are printed.

Run: .venv/bin/python bench/model_cost.py --baseline MODEL_DIR [--model MODEL_DIR] [--rounds 2]
(default model: the bundled one)
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


def measure(model: str, copies: int) -> dict:
    """One model, in this process: heatmap latency over the 48 originals, then batch throughput."""
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
        start = time.perf_counter()
        run_batch(links, model=model, out=Path(tmp) / "r.csv", progress=False)
        batch_seconds = time.perf_counter() - start
    return {"heatmap_p50_ms": 1000 * float(np.median(times)), "heatmap_p95_ms": 1000 * float(np.percentile(times, 95)),
            "batch_images_per_s": len(links) / batch_seconds, "load_seconds": load_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="candidate model folder (default: the bundled model)")
    parser.add_argument("--baseline", required=True, help="baseline model folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--copies", type=int, default=4, help="links to each original for the batch run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child or None, args.copies)))
        return

    from pneumoscope.machine import describe
    from pneumoscope.models.bundle import DEFAULT_MODEL_DIR

    candidate = args.model or str(DEFAULT_MODEL_DIR)
    runs: dict[str, list[dict]] = {"candidate": [], "baseline": []}
    for _ in range(args.rounds):
        for role, model in (("candidate", candidate), ("baseline", args.baseline)):
            out = subprocess.run([sys.executable, __file__, "--baseline", args.baseline, "--copies", str(args.copies),
                                  "--child", model], check=True, capture_output=True, text=True).stdout
            runs[role].append(json.loads(out.strip().splitlines()[-1]))
    median = {role: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for role, rs in runs.items()}
    print(f"machine: {describe()}; {args.rounds} alternating rounds, medians; 48 full-resolution originals")
    print(f"candidate: {candidate}\nbaseline:  {args.baseline}\n")
    print(f"{'':<36}{'candidate':>12}{'baseline':>12}{'ratio':>8}")
    for key, title in (("heatmap_p50_ms", "file -> p + heatmap, p50 (ms)"), ("heatmap_p95_ms", "file -> p + heatmap, p95 (ms)"),
                       ("batch_images_per_s", f"batch CLI ({48 * args.copies} files), images/s"),
                       ("load_seconds", "load (s)"), ("peak_rss_mb", "peak memory (MB)")):
        c, b = median["candidate"][key], median["baseline"][key]
        print(f"{title:<36}{c:>12.1f}{b:>12.1f}{c / b:>8.2f}")
    p50 = median["candidate"]["heatmap_p50_ms"] / median["baseline"]["heatmap_p50_ms"]
    rate = median["candidate"]["batch_images_per_s"] / median["baseline"]["batch_images_per_s"]
    print(f"\nbudget: heatmap p50 <= 2.5x ({p50:.2f}x: {'met' if p50 <= 2.5 else 'NOT met'}); "
          f"batch >= 0.4x ({rate:.2f}x: {'met' if rate >= 0.4 else 'NOT met'})")


if __name__ == "__main__":
    main()
