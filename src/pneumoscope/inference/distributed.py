"""``pneumoscope predict --engine ray``: a whole archive on a Ray cluster, no film lost or scored twice.

The driver's side of the job: what to score (:mod:`~pneumoscope.inference.sources`), what an
earlier run already wrote (so a rerun resumes), the run itself (:mod:`~pneumoscope.inference.ray_pipeline`,
Ray Data's progress bars on stderr), then the single-machine command's one-line summary.

Output: ``--out x.parquet`` is a folder of Parquet parts with the CSV's columns, written by the
workers as they go, so a crash keeps every finished part and a rerun of the same command skips
their inputs. ``--out x.csv`` (``.json``, ``.jsonl``, or CSV on stdout) is for small jobs: the rows
come back to the driver and are written in input order when the run ends (a rerun keeps the
file's rows and scores the rest).

Ray is an optional extra (``pip install "pneumoscope[scale]"``) and is imported only here and in
the pipeline, never by ``import pneumoscope``, the web app or the local engine.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Sequence

from pneumoscope.config import ScaleConfig
from pneumoscope.errors import UserError
from pneumoscope.inference.batch import COLUMNS, RowWriter, listing_notes, output_kind, summary_line
from pneumoscope.inference.sources import Source, is_uri, list_sources, manifest_entries

MISSING_RAY = 'the Ray engine needs Ray and pyarrow, which are not installed: pip install "pneumoscope[scale]"'


def require_ray() -> None:
    """Raise a one-line :class:`UserError` naming the install command when Ray is missing."""
    try:
        import pyarrow  # noqa: F401
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError(MISSING_RAY) from None


def is_parquet(out: str | Path | None) -> bool:
    """Whether ``--out`` names a Parquet folder (``results.parquet``, local or a URI)."""
    return out is not None and str(out).rstrip("/").lower().endswith(".parquet")


def run_ray(
    paths: Sequence[str | Path],
    *,
    manifests: Sequence[str | Path] = (),
    model: str | Path | None = None,
    recursive: bool = False,
    out: str | Path | None = None,
    heatmaps: str | Path | None = None,
    config: ScaleConfig | None = None,
    progress: bool | None = None,
    actor_class: type | None = None,
) -> int:
    """Score every input on Ray; write one row per input to ``out``; the exit status (1: a file failed).

    ``actor_class``: the scoring actor (a subclass of ``ScoringActor``; the tests pass one that
    kills its own process). ``progress``: Ray Data's progress bars (None: Ray's default, on).
    """
    require_ray()
    config = config or ScaleConfig()
    out_text = str(out) if out is not None else None
    if out_text and not is_parquet(out_text):
        if is_uri(out_text):
            raise UserError("--out as a URI must be a Parquet folder (NAME.parquet); CSV and JSON are written here")
        if Path(out_text).suffix.lower() not in (".csv", ".json", ".jsonl"):
            raise UserError(f"--out must end in .parquet, .csv, .json or .jsonl, not {Path(out_text).suffix or 'nothing'}")
        output_kind(out_text)
    sources = _sources(list(paths) + manifest_entries(manifests), recursive)

    from pneumoscope.inference.predictor import Predictor

    # Loaded once here to fail fast on a bad --model (not in every actor) and to learn its input size.
    checked = Predictor.load(model, spin=False, heatmaps="background")
    if heatmaps and not checked.can_explain:
        raise UserError("--heatmaps needs the model folder (PyTorch); an .onnx file cannot explain its scores")
    image_size = checked.image_size
    del checked

    from pneumoscope.inference import parts, ray_pipeline

    out_location = None
    kept: list[dict[str, Any]] = []
    if out_text and is_parquet(out_text):
        out_location = out_text if is_uri(out_text) else os.path.abspath(out_text)
        parts.clear_leftovers(out_location)
        done = parts.done_paths(out_location)
    else:
        kept = read_rows(out_text) if out_text and Path(out_text).is_file() else []
        done = {row["path"] for row in kept}
    names = dict(zip((s.path for s in sources), ray_pipeline.heatmap_names(s.path for s in sources)))
    todo = [s for s in sources if s.path not in done]
    resumed = len(sources) - len(todo)
    if resumed:
        print(f"note: {resumed} of {len(sources)} input(s) already have a row in {out_text}: skipped", file=sys.stderr)
    if not todo:
        print(f"0 file(s) left to score: all {len(sources)} already in {out_text}", file=sys.stderr)
        return 0

    import ray

    started = ray_pipeline.start(config.address)
    context = ray.data.DataContext.get_current()
    bars = context.enable_progress_bars
    if progress is not None:
        context.enable_progress_bars = progress
    try:
        heatmap_folder = None
        if heatmaps:
            heatmap_folder = str(heatmaps) if is_uri(str(heatmaps)) else os.path.abspath(heatmaps)
        dataset = ray_pipeline.build_dataset(
            todo, [names[s.path] if heatmaps else None for s in todo],
            model=os.path.abspath(model) if model else None,  # an actor's current folder is not ours
            image_size=image_size, heatmap_folder=heatmap_folder, heatmap_shown=str(heatmaps) if heatmaps else None,
            config=config, actor_class=actor_class or ray_pipeline.ScoringActor,
        )
        try:
            if out_location is not None:
                sink = ray_pipeline.PartsSink(out_location, config.rows_per_part)
                dataset.write_datasink(sink, ray_remote_args={"max_retries": config.max_retries})
                counts = sink.counts
                missing = [s.path for s in todo if s.path not in parts.done_paths(out_location)]
            else:
                new = [row for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None)
                       for row in batch.to_pylist()]
                counts = parts.tally(parts.rows_table(new))
                missing = sorted({s.path for s in todo} - {row["path"] for row in new})
                _write_rows(out_text, kept + new, [s.path for s in sources])
        except ray.exceptions.RayError as exc:
            kept_note = f"; the parts written so far are kept in {out_text}: rerun the same command to resume" \
                if out_location else ""
            raise UserError(f"the Ray job failed ({type(exc).__name__}){kept_note}") from None
    finally:
        context.enable_progress_bars = bars
        if started:
            ray.shutdown()
    if missing:  # never expected: Ray retries what dies. Said loudly rather than passed over.
        print(f"error: {len(missing)} input(s) got no row (e.g. {missing[0]}); rerun the same command to score them",
              file=sys.stderr)
    print(summary_line(counts["files"], counts["failed"], counts["flagged"], counts["cautioned"], out_text),
          file=sys.stderr)
    return 1 if counts["failed"] or missing else 0


def _sources(inputs: list[str | Path], recursive: bool) -> list[Source]:
    """The inputs, listed; the local engine's notes on empty folders and skipped subfolders."""
    if not inputs:
        raise UserError("nothing to score: name files, folders, URIs or a --manifest")
    sources, skipped = list_sources(inputs, recursive)
    listing_notes(inputs, len(sources), skipped)
    return sources


def read_rows(out: str | Path) -> list[dict[str, Any]]:
    """The rows of an earlier run's CSV, JSON or JSON Lines results (a rerun keeps them)."""
    path = Path(out)
    kind = output_kind(path)
    text = path.read_text(encoding="utf-8")
    if kind == "csv":
        rows = list(csv.DictReader(text.splitlines()))
        if rows and list(rows[0]) != COLUMNS:
            raise UserError(f"{path} is not a pneumoscope results file (its columns differ); choose another --out")
        return rows
    try:
        rows = json.loads(text) if kind == "json" else [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        raise UserError(f"{path} is not a complete results file; move it away and rerun") from None
    return rows


def _write_rows(out: str | None, rows: list[dict[str, Any]], order: list[str]) -> None:
    """All rows in input order, to stdout or to ``out`` through a temporary file and a rename (a
    crash never leaves half a file that a rerun would misread)."""
    rank = {path: index for index, path in enumerate(order)}
    rows = sorted(rows, key=lambda row: rank.get(row["path"], len(rank)))
    if out is None:
        writer = RowWriter(None)
    else:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.stem}.{uuid.uuid4().hex}{target.suffix}")
        writer = RowWriter(temporary)
    try:
        for row in rows:
            writer.write(row)
    finally:
        writer.close()
    if out is not None:
        os.replace(temporary, out)


__all__ = ["MISSING_RAY", "is_parquet", "read_rows", "require_ray", "run_ray"]
