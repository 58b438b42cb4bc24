"""The web app under load, through Gradio's API: throughput, latency, errors, memory, leftovers.

Run: .venv/bin/python bench/load.py [--requests 500] [--clients 8] [--model RUN_OR_MODEL]

Starts ``pneumoscope serve`` on a free loopback port (a subprocess, as deployed), then
``--clients`` threads, each with its own ``gradio_client.Client``, send ``--requests``
single-image predictions to ``/predict`` between them: real X-rays (the full-resolution
originals and 224 px training images, drawn at random) with a few broken files mixed in
(about one request in twenty: a truncated JPEG, bytes that are no image, an empty file).
Latency is one ``Client.predict`` call as a user sees it: upload, queue, prediction, answer.

Prints requests/s, p50/p95/p99 latency, errors for valid files (must be 0), errors for broken
files (every one must be an error), the server's resident memory (VmRSS) at start, after a
warm-up and at the end (growth over the run must stay < 50 MB), and whether the private
upload folder is empty of uploads afterwards. Exit status 1 when a check fails. The clients
run on the same machine as the server and take part of its cores (the CPU time of each side
is printed): the figures are for the whole system, named with the machine and its load average.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PNEUMOSCOPE_DATA", REPO.parent / "shared" / "data"))
MAX_GROWTH_MB = 50.0
BROKEN_EVERY = 20


def machine() -> str:
    from pneumoscope.machine import describe

    return describe()


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def valid_files(per_class: int = 24) -> list[Path]:
    """The full-resolution originals and as many 224 px training images, both classes."""
    originals = sorted((DATA / "originals").glob("*/*.jpeg"))
    small: list[Path] = []
    for name in ("NORMAL", "PNEUMONIA"):
        small += sorted((DATA / "chest_xray" / "train" / name).iterdir())[:per_class]
    if not originals or not small:
        raise SystemExit(f"no images under {DATA} (set PNEUMOSCOPE_DATA)")
    return originals + small


def broken_files(folder: Path, original: Path) -> list[Path]:
    truncated = folder / "truncated.jpeg"
    truncated.write_bytes(original.read_bytes()[:5000])
    garbage = folder / "garbage.png"
    garbage.write_bytes(os.urandom(2048))
    empty = folder / "empty.jpeg"
    empty.write_bytes(b"")
    return [truncated, garbage, empty]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    tmp: Path
    """The server's TMPDIR: its private upload folder is the one pneumoscope-uploads-* inside."""
    log: Path
    startup_s: float

    @property
    def upload_dir(self) -> Path:
        found = sorted(self.tmp.glob("pneumoscope-uploads-*"))
        if len(found) != 1:
            raise RuntimeError(f"expected one upload folder in {self.tmp}, found {found}")
        return found[0]

    def uploads_left(self) -> list[Path]:
        """Files in the upload folder that could be uploads: not CSV results, not the copies of the
        shipped examples that Gradio places there at start (the app never deletes those)."""
        from pneumoscope.app import DEFAULT_EXAMPLES

        examples = {p.name for p in DEFAULT_EXAMPLES.iterdir()}
        return [p for p in self.upload_dir.rglob("*")
                if p.is_file() and p.suffix != ".csv" and p.name not in examples]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(model: str | None, timeout: float = 300.0) -> Server:
    tmp = Path(tempfile.mkdtemp(prefix="pneumoscope-load-"))
    port = free_port()
    command = [sys.executable, "-m", "pneumoscope.cli", "serve", "--port", str(port)]
    if model:
        command += ["--model", model]
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(REPO / "src")}
    log = tmp / "server.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            text = log.read_text()
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"the server exited ({process.returncode}):\n{text}")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as answer:
                if answer.status == 200:
                    return Server(process, url, tmp, log, time.perf_counter() - started)
        except OSError:
            time.sleep(0.5)
    process.kill()
    process.wait()
    text = log.read_text()
    shutil.rmtree(tmp, ignore_errors=True)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n{text}")


@dataclass
class Outcome:
    valid: bool
    seconds: float
    error: str | None = None


@dataclass
class Report:
    requests: int
    clients: int
    wall_s: float
    outcomes: list[Outcome] = field(repr=False)
    rss_start_mb: float
    rss_warm_mb: float
    rss_end_mb: float
    uploads_left: list[str]
    startup_s: float
    load_before: str
    rss_samples: list[float]
    """RSS (MB) sampled through the measured run, every half second."""
    server_cpu_s: float
    clients_cpu_s: float
    folder_removed: bool
    """Whether the server removed its upload folder when stopped (SIGTERM)."""

    @property
    def valid_errors(self) -> list[str]:
        return [o.error for o in self.outcomes if o.valid and o.error is not None]

    @property
    def broken_sent(self) -> int:
        return sum(not o.valid for o in self.outcomes)

    @property
    def broken_errors(self) -> int:
        return sum(not o.valid and o.error is not None for o in self.outcomes)

    @property
    def growth_mb(self) -> float:
        return self.rss_end_mb - self.rss_warm_mb

    @property
    def ok(self) -> bool:
        return (not self.valid_errors and self.broken_errors == self.broken_sent
                and self.growth_mb < MAX_GROWTH_MB and not self.uploads_left and self.folder_removed)

    def _tenths(self) -> list[float]:
        if not self.rss_samples:
            return []
        return [self.rss_samples[min(len(self.rss_samples) - 1, round(i * (len(self.rss_samples) - 1) / 10))]
                for i in range(1, 11)]

    def latencies(self, valid: bool = True) -> np.ndarray:
        return np.asarray([o.seconds for o in self.outcomes if o.valid == valid]) * 1000.0

    def text(self) -> str:
        valid = self.latencies()
        p50, p95, p99 = np.percentile(valid, [50, 95, 99])
        lines = [
            f"machine: {machine()}; load average before the run: {self.load_before}",
            f"server start (process start to first answer): {self.startup_s:.1f} s",
            f"{self.requests} requests from {self.clients} concurrent clients in {self.wall_s:.1f} s: "
            f"{self.requests / self.wall_s:.2f} requests/s",
            f"CPU time over the run: server {self.server_cpu_s:.1f} s ({1000 * self.server_cpu_s / self.requests:.0f} ms "
            f"a request), the {self.clients} clients {self.clients_cpu_s:.1f} s, of {self.wall_s * os.cpu_count():.0f} "
            "core-seconds",
            f"latency, valid files (n={valid.size}): p50 {p50:.0f} ms  p95 {p95:.0f} ms  p99 {p99:.0f} ms  "
            f"max {valid.max():.0f} ms",
            f"errors for valid files: {len(self.valid_errors)}" + (f"  e.g. {self.valid_errors[0]}" if self.valid_errors else ""),
            f"errors for broken files: {self.broken_errors} of {self.broken_sent} (expected: all)",
            f"server RSS: {self.rss_start_mb:.0f} MB at start, {self.rss_warm_mb:.0f} MB after warm-up, "
            f"{self.rss_end_mb:.0f} MB at the end: growth over the run {self.growth_mb:+.1f} MB (limit {MAX_GROWTH_MB:.0f}); "
            f"at each tenth of the run: {' '.join(f'{mb:.0f}' for mb in self._tenths())}",
            f"uploads left in the server's upload folder: {len(self.uploads_left)}; "
            f"folder removed when the server stopped: {'yes' if self.folder_removed else 'NO'}",
            "checks: " + ("all passed" if self.ok else "FAILED"),
        ]
        return "\n".join(lines)


def run(requests: int = 500, clients: int = 8, model: str | None = None, seed: int = 0,
        warm_up: int | None = None, log=print) -> Report:
    from gradio_client import Client, handle_file

    rng = random.Random(seed)
    load_before = load_average()
    work_dir = Path(tempfile.mkdtemp(prefix="pneumoscope-load-files-"))
    valid = valid_files()
    broken = broken_files(work_dir, valid[0])
    plan = [(rng.choice(broken), False) if i % BROKEN_EVERY == BROKEN_EVERY // 2 else (rng.choice(valid), True)
            for i in range(requests)]
    try:
        server = start_server(model)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    try:
        log(f"server up at {server.url} in {server.startup_s:.1f} s")
        rss_start = rss_mb(server.process.pid)
        downloads = work_dir / "downloads"
        connections = [Client(server.url, verbose=False, download_files=str(downloads)) for _ in range(clients)]
        # Warm-up: every client's first calls, every kind of file, outside the measurement.
        warm = [(path, True) for path in rng.sample(valid, min(len(valid), warm_up or 2 * clients))]
        warm += [(path, False) for path in broken]
        _drive(connections, warm, handle_file)
        time.sleep(1.0)
        rss_warm = rss_mb(server.process.pid)
        log(f"warm-up done; sending {requests} requests from {clients} clients")
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                samples.append(rss_mb(server.process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started, server_cpu, clients_cpu = time.perf_counter(), cpu_seconds(server.process.pid), time.process_time()
        outcomes = _drive(connections, plan, handle_file)
        wall = time.perf_counter() - started
        server_cpu = cpu_seconds(server.process.pid) - server_cpu
        clients_cpu = time.process_time() - clients_cpu
        done.set()
        sampler.join()
        time.sleep(1.0)
        rss_end = rss_mb(server.process.pid)
        left = [str(p.relative_to(server.upload_dir)) for p in server.uploads_left()]
        upload_dir = server.upload_dir
        server.stop()
        removed = not upload_dir.exists()
    finally:
        server.stop()
        shutil.rmtree(work_dir, ignore_errors=True)
        shutil.rmtree(server.tmp, ignore_errors=True)
    return Report(requests, clients, wall, outcomes, rss_start, rss_warm, rss_end, left, server.startup_s,
                  load_before, samples, server_cpu, clients_cpu, removed)


def _drive(connections: list, plan: list[tuple[Path, bool]], handle_file) -> list[Outcome]:
    """Send ``plan`` through the clients, each thread taking the next request when it is free."""
    outcomes: list[Outcome | None] = [None] * len(plan)
    cursor = iter(range(len(plan)))
    lock = threading.Lock()

    def worker(client) -> None:
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            path, is_valid = plan[index]
            start = time.perf_counter()
            try:
                result = client.predict(handle_file(str(path)), api_name="/predict")
                if not isinstance(result, dict) or "error" not in result:
                    error = f"unexpected answer {result!r}"
                else:  # an unreadable file is an answer with its reason in "error" (docs/api.md)
                    error = result["error"] or (None if result.get("label") else "no label and no error")
            except Exception as exc:  # noqa: BLE001 - every failure is counted, by its message
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            outcomes[index] = Outcome(is_valid, time.perf_counter() - start, error)

    threads = [threading.Thread(target=worker, args=(client,)) for client in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [o for o in outcomes if o is not None]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--model", help="run folder or model folder (default: the bundled model)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = run(args.requests, args.clients, args.model, args.seed)
    print(report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
