"""Seconds from ``pneumoscope serve`` to its first answer, this code against a baseline commit.

Run: .venv/bin/python bench/startup.py [--baseline REF] [--rounds N]

For each of the two code versions (this working tree, and REF checked out into a temporary git
worktree, run with the same virtual environment), the server is started N times as a user starts
it (``python -m pneumoscope.cli serve`` on a free port, the bundled model, its ONNX export already
cached), and the clock runs from the start of the process to:

1. the page: ``GET /`` answers 200;
2. the first prediction: ``/predict`` on a real radiograph returns its label;
3. heatmaps ready: the server logs that PyTorch is loaded (this code only; the baseline loads it
   before it answers).

Medians of N rounds, rounds alternating between the two versions, and the ratio. The machine and
its load average are printed: another job on the machine makes every figure worse.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PNEUMOSCOPE_DATA", REPO.parent / "shared" / "data"))
SAMPLE = DATA / "originals" / "PNEUMONIA" / "person1071_virus_1774.jpeg"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def one_start(source: Path, client_class) -> dict[str, float]:
    """Start the server from ``source`` (a checkout's ``src``), time it, stop it."""
    from gradio_client import handle_file

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pneumoscope.cli", "serve", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marks: dict[str, float] = {}

    lazy = threading.Event()  # this code says so when it loads PyTorch after answering

    def watch() -> None:
        for line in process.stderr:
            if "loading PyTorch for heatmaps" in line:
                lazy.set()
            if "heatmaps ready" in line:
                marks["heatmaps"] = time.perf_counter() - started

    threading.Thread(target=watch, daemon=True).start()
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server from {source} exited with {process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        marks["page"] = time.perf_counter() - started
                        break
            except OSError:
                time.sleep(0.05)
        client = client_class(url, verbose=False)
        result = client.predict(handle_file(str(SAMPLE)), api_name="/predict")
        assert result["label"] in ("NORMAL", "PNEUMONIA"), result
        marks["answer"] = time.perf_counter() - started
        deadline = time.perf_counter() + 60
        while lazy.is_set() and "heatmaps" not in marks and time.perf_counter() < deadline and process.poll() is None:
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=30)
    return marks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="ab094b1", help="git ref of the code to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from gradio_client import Client  # imported once, before any clock runs

    sys.path.insert(0, str(REPO / "bench"))
    from inference import load, machine

    print(f"# {machine()}; load average {load()}; {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.baseline],
                       check=True, capture_output=True)
        try:
            versions = {"this code": REPO / "src", f"baseline {args.baseline}": worktree / "src"}
            one_start(versions["this code"], Client)  # caches warm for both: ONNX export, page files
            one_start(versions[f"baseline {args.baseline}"], Client)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in versions}
            for _ in range(args.rounds):
                for name, source in versions.items():
                    runs[name].append(one_start(source, Client))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], capture_output=True)
    print(f"| seconds from start (median of {args.rounds}) | " + " | ".join(runs) + " | speed-up (baseline / this) |")
    print("|---|" + "---:|" * (len(runs) + 1))
    for key, title in (("page", "page answers"), ("answer", "first prediction returned"), ("heatmaps", "heatmaps ready")):
        values = [statistics.median(r[key] for r in rounds if key in r) if any(key in r for r in rounds) else None
                  for rounds in runs.values()]
        cells = " | ".join("n/a" if v is None else f"{v:.2f}" for v in values)
        ratio = f"{values[1] / values[0]:.2f}x" if all(values) else "n/a"
        print(f"| {title} | {cells} | {ratio} |")
    print(f"# load average after: {load()}")


if __name__ == "__main__":
    main()
