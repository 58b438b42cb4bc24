"""The Ray engine on this machine: films/s with 1 and 2 scoring actors against the single-machine
command, Ray's start-up cost and its per-film overhead.

Run: .venv/bin/python bench/scale.py [--copies 4] [--repeats 2] [--model RUN_OR_MODEL]   (prints a table; the machine is named)

Every run scores the same full-resolution originals (the shared originals/, linked ``--copies``
times under new names) to Parquet (Ray) or CSV (local), from cold files in the page cache.

- **start-up**: ``ray.init`` of a local cluster with this machine's CPUs, measured alone; then
  each engine's fixed cost per run (imports done, model load, Ray's dataset and actor start),
  the time of a 16-film run less 16 films at the marginal rate.
- **marginal rate**: films/s once running, (n - 16) / (time(n) - time(16)), as bench/inference.py.
- **per-film overhead**: what Ray adds to each film over the single-machine command on the same
  cores, 1/rate(ray) - 1/rate(local): moving decoded pixels through the object store, the tasks,
  Arrow conversion, the Parquet parts.
- **per core**: the best Ray marginal rate over the cluster's CPUs, for docs/scale.md's plan.
- **driver**: what planning a 10^5-film job costs the driver (the input table and its blocks).

The load average is printed at start and end: another job on the machine makes every figure worse.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
DATA = Path(os.environ.get("PNEUMOSCOPE_DATA", REPO.parent / "shared" / "data"))

from inference import linked_copies, load  # noqa: E402
from pneumoscope.config import ScaleConfig  # noqa: E402
from pneumoscope.inference.batch import run_batch  # noqa: E402
from pneumoscope.machine import describe, logical_cores  # noqa: E402

SHORT = 16
"""Films in the short run whose time is taken as each engine's fixed cost."""


def local_seconds(model: str | None, files: list[Path], folder: Path) -> float:
    start = time.perf_counter()
    status = run_batch([str(f) for f in files], model=model, out=folder / f"local-{len(files)}.csv", progress=False)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit("the local run reported failures")
    return elapsed


def ray_seconds(model: str | None, files: list[Path], folder: Path, actors: int) -> float:
    from pneumoscope.inference.distributed import run_ray

    out = folder / f"ray-{actors}-{len(files)}-{time.monotonic_ns()}.parquet"  # a new folder: nothing to resume
    start = time.perf_counter()
    status = run_ray([str(f) for f in files], model=model, out=out, config=ScaleConfig(actors=actors), progress=False)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit("the Ray run reported failures")
    return elapsed


def driver_seconds(films: int) -> float:
    """Planning ``films`` inputs on the driver: the path table and its blocks (nothing runs)."""
    from pneumoscope.inference.ray_pipeline import build_dataset
    from pneumoscope.inference.sources import Source

    sources = [Source(f"/archive/{i // 1000:04d}/film-{i:07d}.dcm", f"/archive/{i // 1000:04d}/film-{i:07d}.dcm")
               for i in range(films)]
    start = time.perf_counter()
    build_dataset(sources, [None] * films, model=None, image_size=224, heatmap_folder=None, heatmap_shown=None,
                  config=ScaleConfig(actors=1))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="run folder, model folder or .onnx (default: the bundled model)")
    parser.add_argument("--copies", type=int, default=4, help="links to each of the 48 originals per long run")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each measurement; the fastest counts")
    args = parser.parse_args()

    import ray

    cpus = logical_cores()
    originals = sorted((DATA / "originals").glob("*/*.jp*g"))
    print(f"machine: {describe()}; ray {ray.__version__}; load average at start {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        links = folder / "films"
        links.mkdir()
        films = linked_copies(originals, args.copies, links)
        print(f"films: {len(originals)} full-resolution originals x {args.copies} = {len(films)} per long run, "
              f"{SHORT} per short run\n")

        def best(run) -> float:  # the least disturbed of --repeats runs: other jobs only ever slow one down
            return min(run() for _ in range(args.repeats))

        rows = []
        short = best(lambda: local_seconds(args.model, films[:SHORT], folder))
        whole = best(lambda: local_seconds(args.model, films, folder))
        rows.append((f"single machine: pneumoscope predict ({cpus} decoding processes)", short, whole))

        start = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        init = time.perf_counter() - start
        try:
            for actors in (1, 2):
                short = best(lambda: ray_seconds(args.model, films[:SHORT], folder, actors))
                whole = best(lambda: ray_seconds(args.model, films, folder, actors))
                rows.append((f"--engine ray, {actors} scoring actor(s)", short, whole))
            plan = driver_seconds(100_000)
        finally:
            ray.shutdown()

    n = len(films)
    print(f"{'engine':<58}{'films/s marginal':>17}{'end-to-end':>12}{'fixed cost s':>14}")
    rates = []
    for name, short, whole in rows:
        marginal = (n - SHORT) / max(whole - short, 1e-9)
        rates.append(marginal)
        fixed = short - SHORT / marginal
        print(f"{name:<58}{marginal:>17.1f}{n / whole:>12.1f}{fixed:>14.1f}")
    local, best = rates[0], max(rates[1:])
    print(f"\nRay start-up (ray.init, local cluster of {cpus} CPUs): {init:.1f} s, once per job")
    for actors, rate in zip((1, 2), rates[1:]):
        print(f"per-film overhead of Ray, {actors} actor(s): {1000 / rate - 1000 / local:+.1f} ms "
              f"({1000 / rate:.1f} ms a film against {1000 / local:.1f} ms locally)")
    print(f"per core (best Ray marginal rate / {cpus} CPUs): {best / cpus:.1f} films/s")
    print(f"driver: planning 100,000 films (path table and blocks): {plan:.2f} s")
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()
