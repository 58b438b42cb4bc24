"""``pneumoscope predict PATH...``: many files through the Predictor, results streamed as they come.

Decoding a full-resolution JPEG costs about half the network's CPU time, so it runs in worker
processes (the project's one decoding pool, ``data/decoding``: results in input order from a
bounded window) while the main process scores batches with ONNX Runtime; workers send back the
network's 224 px input and the facts the out-of-distribution check needs (~50 kB an image),
never the full image. On two cores the network, not decoding, bounds the rate (bench/inference.py).

A file that cannot be read becomes a row with its error message and the run goes on; the exit
status is 1 when any file failed, 0 otherwise. Rows whose image does not look like a chest
X-ray get a warning on stderr: their label is not a diagnosis.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TextIO

from pneumoscope.config import INFERENCE_BATCH_SIZE
from pneumoscope.data.decoding import DECODE_TIMEOUT_S, Job, close_pool, default_workers, start_pool, stream
from pneumoscope.data.images import IMAGE_SUFFIXES
from pneumoscope.errors import UserError
from pneumoscope.inference.prediction import ERROR_LABEL, REFUSED_LABEL, Prediction
from pneumoscope.inference.prepare import PreparedImage, prepare_image

COLUMNS = ["path", "label", "probability", "raw_label", "raw_probability", "threshold", "is_chest_xray", "xray_check",
           "ood_distance", "caution", "subtype", "p_bacterial", "heatmap", "error", "warnings"]
"""``label`` / ``probability``: the answer, as the page gives it: NORMAL or PNEUMONIA with its
probability; ``NOT A CHEST X-RAY`` with no probability for an image the check refuses; ``ERROR``
for a file that could not be read. ``raw_label`` / ``raw_probability``: the network's output
whatever the check said (not a diagnosis when the image was refused).
``subtype`` / ``p_bacterial``: bacterial-vs-viral pattern, filled only for a PNEUMONIA film that
passes as a chest X-ray, by a model with a subtype head (empty otherwise). ``xray_check``: ``pass``,
``caution`` (answered, with the ``caution`` text) or ``refuse`` (``is_chest_xray`` False), from the
feature distance ``ood_distance`` and the file checks. ``heatmap``: the PNG
saved for this row with ``--heatmaps`` (two inputs both named ``x.jpeg`` get different files)."""


def expand_paths(paths: Iterable[str | Path], recursive: bool = False) -> tuple[list[Path], int]:
    """Files named, plus image files inside folders named (and their subfolders with ``recursive``).

    Returns the files, in a stable order without duplicates, and the number of subfolders
    skipped for want of ``recursive``. A named path that does not exist is kept: it gets an error row.
    """
    found: list[Path] = []
    skipped = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = path.rglob("*") if recursive else path.iterdir()
            for child in sorted(candidates):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES and not child.name.startswith("."):
                    found.append(child)
                elif child.is_dir() and not recursive:
                    skipped += 1
        else:
            found.append(path)
    unique = list(dict.fromkeys(found))
    return unique, skipped


class RowWriter:
    """Streams rows to CSV (stdout when no path), JSON (one array) or JSON Lines."""

    def __init__(self, out: str | Path | None) -> None:
        self.path = Path(out) if out else None
        self.kind = output_kind(out)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.handle: TextIO = self.path.open("w", encoding="utf-8", newline="")
        else:
            self.handle = sys.stdout
        self.count = 0
        if self.kind == "csv":
            self.csv = csv.writer(self.handle)
            self.csv.writerow(COLUMNS)
        elif self.kind == "json":
            self.handle.write("[")

    def write(self, row: dict[str, Any]) -> None:
        if self.kind == "csv":
            self.csv.writerow([_csv_cell(row[c]) for c in COLUMNS])
        elif self.kind == "json":
            self.handle.write(("," if self.count else "") + "\n  " + json.dumps(row))
        else:
            self.handle.write(json.dumps(row) + "\n")
        self.count += 1

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        if self.kind == "json":
            self.handle.write("\n]\n")
        if self.handle is sys.stdout:
            self.handle.flush()
        else:
            self.handle.close()


def output_kind(out: str | Path | None) -> str:
    """``csv``, ``json`` or ``jsonl`` from the file name (CSV when no file: stdout)."""
    suffix = Path(out).suffix.lower() if out else ".csv"
    if suffix not in (".csv", ".json", ".jsonl"):
        raise UserError(f"--out must end in .csv, .json or .jsonl, not {suffix or 'nothing'}")
    return suffix[1:]


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return " | ".join(value)
    if isinstance(value, float):
        return f"{value:.6f}"
    return value


def result_row(path: str, prediction: Prediction | None, error: str | None, heatmap: str | None = None) -> dict[str, Any]:
    if prediction is None:
        return {"path": path, "label": ERROR_LABEL, "probability": None, "raw_label": None, "raw_probability": None,
                "threshold": None,
                "is_chest_xray": None, "xray_check": None, "ood_distance": None, "caution": None, "subtype": None, "p_bacterial": None, "heatmap": None, "error": error,
                "warnings": []}
    answered = prediction.is_chest_xray
    return {"path": path, "label": prediction.label if answered else REFUSED_LABEL,
            "probability": prediction.probability if answered else None,
            "raw_label": prediction.label, "raw_probability": prediction.probability,
            "threshold": prediction.threshold, "is_chest_xray": prediction.is_chest_xray,
            "xray_check": prediction.xray_check, "ood_distance": prediction.ood_distance, "caution": prediction.caution,
            "subtype": prediction.subtype, "p_bacterial": prediction.p_bacterial, "heatmap": heatmap,
            "error": None, "warnings": list(prediction.warnings)}


class _HeatmapWriter:
    """Annotated overlay PNGs named after their input (``<stem>_gradcam.png``), never overwriting
    one another; none for an image that does not look like a chest X-ray (as on the page)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()

    def write(self, path: str, prediction: Prediction) -> str | None:
        """Save the picture; return the file's path (None when there is no map to save)."""
        if not prediction.is_chest_xray or prediction.overlay is None:
            return None
        from pneumoscope.inference.explain import annotated

        name = heatmap_name(Path(path).stem, self.used)
        annotated(prediction.overlay, prediction.label, prediction.probability, prediction.threshold).save(
            self.folder / name)
        return str(self.folder / name)


def heatmap_name(stem: str, used: set[str]) -> str:
    """``<stem>_gradcam.png``, or ``<stem>-1_gradcam.png``... when taken; recorded in ``used``.
    One naming for both engines, so a map is found under the same name whichever scored it."""
    name, index = f"{stem}_gradcam.png", 1
    while name in used:
        name, index = f"{stem}-{index}_gradcam.png", index + 1
    used.add(name)
    return name


def listing_notes(inputs: Sequence[str | Path], found: int, skipped: int) -> None:
    """The notes of a listing (subfolders left out), and the error when it found no image at all."""
    if skipped:
        print(f"note: skipped {skipped} subfolder(s); pass --recursive to include them", file=sys.stderr)
    if not found:
        raise UserError("no images found (PNG, JPEG, BMP, TIFF, GIF, WEBP or DICOM) in " + ", ".join(map(str, inputs)))


def summary_line(files: int, failed: int, flagged: int, cautioned: int, out: str | Path | None) -> str:
    """The one line both engines end with."""
    where = f" -> {out}" if out else ""
    return (f"{files} file(s): {files - failed} scored, {failed} failed, "
            f"{flagged} not like a chest X-ray, {cautioned} answered with a caution{where}")


def _prepare(path: str, size: int, keep_display: bool) -> PreparedImage:
    return prepare_image(path, size, keep_display=keep_display)


def decoded_stream(
    pool: Any, files: Sequence[str], size: int, keep_display: bool, window: int = 64, timeout: float = DECODE_TIMEOUT_S
) -> Iterator[tuple[str, PreparedImage | None, str | None]]:
    """Files decoded for the network (``prepare_image``), in input order, through the one decoding
    pool (``data/decoding``); an unreadable file comes back with its message instead."""
    return stream(pool, files, Job(_prepare, size, keep_display), window=window, timeout=timeout)


def run_batch(
    paths: Sequence[str | Path],
    model: str | Path | None = None,
    recursive: bool = False,
    out: str | Path | None = None,
    heatmaps: str | Path | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    progress: bool | None = None,
    decode_timeout: float = DECODE_TIMEOUT_S,
) -> int:
    """Predict every image in ``paths``; stream rows to ``out`` (CSV on stdout by default).

    Returns the exit status: 0 when every file was scored, 1 when any could not be read.
    ``batch_size``: films scored together (default :data:`~pneumoscope.config.INFERENCE_BATCH_SIZE`).
    ``progress``: a bar on stderr (default: only when stderr is a terminal).
    """
    from tqdm import tqdm

    from pneumoscope.inference.predictor import Predictor

    batch_size = INFERENCE_BATCH_SIZE if batch_size is None else batch_size
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    output_kind(out)
    files, skipped = expand_paths(paths, recursive)
    empty = [str(p) for p in paths if Path(p).is_dir() and not any(Path(f).is_relative_to(Path(p)) for f in files)]
    if empty and len(empty) < len(paths):  # alone, they are the error below
        print(f"note: no images found in {', '.join(empty)}", file=sys.stderr)
    listing_notes(paths, len(files), skipped)
    rows = RowWriter(out)
    workers = workers if workers is not None else default_workers()
    pool = start_pool(workers, len(files))
    try:
        # Idle ORT threads must not steal the decoders' cores (spin=False). Without --heatmaps,
        # PyTorch is never needed: the cached ONNX export scores alone (1-2 s less start-up).
        predictor = Predictor.load(model, spin=False, heatmaps="now" if heatmaps else "background")
        if heatmaps and not predictor.can_explain:
            raise UserError("--heatmaps needs the model folder (PyTorch); an .onnx file cannot explain its scores")
        painter = _HeatmapWriter(heatmaps) if heatmaps else None
        stream = decoded_stream(
            pool, [str(f) for f in files], predictor.image_size, bool(heatmaps),
            window=max(4 * batch_size, 8 * workers), timeout=decode_timeout,
        )
        bar = tqdm(total=len(files), unit="img", file=sys.stderr, disable=None if progress is None else not progress,
                   desc="predicting", dynamic_ncols=True)
        failed = flagged = cautioned = 0
        with bar:
            for path, prediction, error in predictor.stream(stream, heatmap=bool(heatmaps), batch_size=batch_size):
                saved = painter.write(path, prediction) if painter is not None and prediction is not None else None
                rows.write(result_row(path, prediction, error, saved))
                bar.update(1)
                if prediction is None:
                    failed += 1
                    bar.write(f"error: {path}: {error}", file=sys.stderr)
                    continue
                if not prediction.is_chest_xray:
                    flagged += 1
                    reasons = "; ".join(prediction.warnings[:-1]) or "unlike the training images"
                    bar.write(f"warning: {path}: does not look like a chest X-ray ({reasons}); "
                              f"its label {prediction.label} is not a diagnosis", file=sys.stderr)
                elif prediction.caution:
                    cautioned += 1
                    bar.write(f"caution: {path}: {prediction.caution}", file=sys.stderr)
                if rows.count % batch_size == 0:
                    rows.flush()
    finally:
        close_pool(pool)
        rows.close()
    print(summary_line(len(files), failed, flagged, cautioned, rows.path), file=sys.stderr)
    return 1 if failed else 0


__all__ = ["COLUMNS", "RowWriter", "decoded_stream", "expand_paths", "heatmap_name", "listing_notes", "result_row",
           "run_batch", "summary_line"]
