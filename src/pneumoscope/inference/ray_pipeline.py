"""The Ray Data graph of ``predict --engine ray``: list, read and decode, score, write.

    paths (driver) -> read + decode (CPU tasks) -> score (actor pool) -> Parquet parts

- **Read and decode** run together in stateless tasks, ``files_per_task`` files a task: a file's
  bytes (a DICOM's patient fields among them) never leave the task that read them; only the
  network's 224 px input and the facts the not-a-chest-X-ray check reads go on. Each file goes
  through :func:`~pneumoscope.inference.prepare.prepare_image`, the single-machine command's own
  decoder. A file that cannot be read or decoded becomes an error row here: one bad file never
  fails a task, so Ray's retries are kept for workers that die.
- **Scoring** runs in an actor pool (``map_batches`` with the callable class :class:`ScoringActor`):
  each actor loads the model once (ONNX Runtime) and decides through
  :meth:`~pneumoscope.inference.predictor.Predictor.stream` and
  :func:`~pneumoscope.inference.batch.result_row`, as the single-machine command does. An actor
  whose process dies is restarted and its batch retried (``max_restarts``, ``max_task_retries``).
- **Writing** is a :class:`PartsSink` (``write_datasink``): parts that are complete or absent
  (:mod:`pneumoscope.inference.parts`).

Scheduling, backpressure and retries are Ray's: there is no queue or pool here.
"""

from __future__ import annotations

import io
import math
import warnings
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import ray
from ray.data import Datasink, Dataset

from pneumoscope.config import ScaleConfig
from pneumoscope.data.images import DICOM_SUFFIXES, read_file
from pneumoscope.errors import ImageLoadError, failure_message
from pneumoscope.inference.batch import heatmap_name, result_row
from pneumoscope.inference.parts import RESULT_SCHEMA, rows_table, tally, write_part
from pneumoscope.inference.prepare import PreparedImage, prepare_image
from pneumoscope.inference.sources import Source, filesystem, is_uri

DECODED_SCHEMA = pa.schema([
    ("path", pa.string()), ("heatmap", pa.string()), ("error", pa.string()),
    ("pixels", pa.binary()), ("width", pa.int64()), ("height", pa.int64()), ("colourfulness", pa.float64()),
    ("format", pa.string()), ("display", pa.binary()), ("display_height", pa.int64()), ("display_width", pa.int64()),
])
"""What a decode task hands an actor for each file: the path, where its heatmap goes, then either
an error or the :class:`~pneumoscope.inference.prepare.PreparedImage` (no file bytes, no DICOM fields)."""


# ------------------------------------------------------------------ read and decode (CPU tasks)
def read_source(location: str) -> bytes:
    """A file's bytes from a local path or a ``pyarrow.fs`` URI; missing or unreadable files raise
    the loader's own messages (``file not found: NAME``), so their rows match the local engine's."""
    name = Path(location.split("://", 1)[-1]).name
    if not is_uri(location):
        return read_file(Path(location))
    from pyarrow import fs

    filesys, inner = filesystem(location)
    info = filesys.get_file_info(inner)
    if info.type == fs.FileType.NotFound:
        raise ImageLoadError(f"file not found: {name}")
    if info.type != fs.FileType.File:
        raise ImageLoadError(f"not a file: {name}")
    try:
        with filesys.open_input_file(inner) as handle:
            return handle.read()
    except OSError as exc:
        raise ImageLoadError(f"cannot read {name}: {exc.strerror or exc}") from None


def prepare_bytes(data: bytes, name: str, size: int, keep_display: bool) -> PreparedImage:
    """:func:`prepare_image` of a file's bytes, as it would be of the file itself.

    The loader takes a file for DICOM by its content (the ``DICM`` marker) or by its name; bytes
    carry no name, so the rare DICOM without the marker (a bare data set named ``.dcm``) is decoded
    from a private temporary copy under its own suffix, exactly as the local engine decodes it."""
    if Path(name).suffix.lower() in DICOM_SUFFIXES and data[128:132] != b"DICM" and data:
        with tempfile.TemporaryDirectory(prefix="pneumoscope-") as folder:
            copy = Path(folder) / f"input{Path(name).suffix.lower()}"
            copy.write_bytes(data)
            return prepare_image(copy, size, keep_display=keep_display)
    return prepare_image(data, size, keep_display=keep_display)


def read_and_decode(batch: pa.Table, image_size: int, keep_display: bool) -> pa.Table:
    """One task's files: read, decode, resize; an error row for any file that fails (never a raise)."""
    rows = []
    for path, location, heatmap in zip(*(batch.column(c).to_pylist() for c in ("path", "location", "heatmap"))):
        row: dict[str, Any] = {"path": path, "heatmap": heatmap}
        try:
            prepared = prepare_bytes(read_source(location), location, image_size, keep_display)
        except Exception as exc:  # noqa: BLE001 - a bad file is a row, never a failed task
            row["error"] = failure_message(exc)
        else:
            row.update(pixels=prepared.pixels.tobytes(), width=prepared.original_size[0],
                       height=prepared.original_size[1], colourfulness=prepared.colourfulness, format=prepared.format)
            if prepared.display is not None:
                row.update(display=prepared.display.tobytes(), display_height=prepared.display.shape[0],
                           display_width=prepared.display.shape[1])
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=DECODED_SCHEMA)


def _prepared(row: dict[str, Any], size: int) -> PreparedImage:
    display = None
    if row["display"] is not None:
        display = np.frombuffer(row["display"], np.uint8).reshape(row["display_height"], row["display_width"])
    return PreparedImage(np.frombuffer(row["pixels"], np.uint8).reshape(size, size), (row["width"], row["height"]),
                         row["colourfulness"], row["format"], display)


# ------------------------------------------------------------------ score (an actor pool)
class ScoringActor:
    """One ONNX Runtime session, loaded once per actor; scores decoded batches into result rows."""

    def __init__(self, model: str | None, heatmaps: str | None, heatmaps_shown: str | None,
                 batch_size: int, threads: int) -> None:
        from pneumoscope.inference.predictor import Predictor

        # spin=False: idle ONNX Runtime threads must leave the core to the decode tasks beside them.
        self.predictor = Predictor.load(model, threads=threads, spin=False,
                                        heatmaps="now" if heatmaps else "background")
        self.heatmaps, self.heatmaps_shown, self.batch_size = heatmaps, heatmaps_shown, batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        entries = batch.to_pylist()
        size = self.predictor.image_size
        decoded = ((index, None if row["error"] is not None else _prepared(row, size), row["error"])
                   for index, row in enumerate(entries))
        rows = []
        for index, prediction, error in self.predictor.stream(decoded, heatmap=bool(self.heatmaps),
                                                              batch_size=self.batch_size):
            entry = entries[index]
            saved = self._save_heatmap(entry["heatmap"], prediction) if prediction is not None else None
            rows.append(result_row(entry["path"], prediction, error, saved))
        return rows_table(rows)

    def _save_heatmap(self, name: str | None, prediction: Any) -> str | None:
        """The annotated overlay, as the local engine saves it; none for a refused image."""
        if not self.heatmaps or not name or not prediction.is_chest_xray or prediction.overlay is None:
            return None
        from pneumoscope.inference.explain import annotated

        buffer = io.BytesIO()
        annotated(prediction.overlay, prediction.label, prediction.probability, prediction.threshold).save(
            buffer, format="PNG")
        filesys, folder = filesystem(self.heatmaps)
        filesys.create_dir(folder, recursive=True)
        with filesys.open_output_stream(f"{folder.rstrip('/')}/{name}") as handle:
            handle.write(buffer.getvalue())
        shown = self.heatmaps_shown or self.heatmaps
        return f"{shown.rstrip('/')}/{name}" if is_uri(shown) else str(Path(shown) / name)


def heatmap_names(paths: Iterable[str]) -> list[str]:
    """``<stem>_gradcam.png`` for each input, ``<stem>-1_gradcam.png`` for the next with that stem:
    fixed from the whole input list on the driver (actors cannot see each other's names), so a
    resumed run names each input's map as the first run did."""
    used: set[str] = set()
    return [heatmap_name(Path(path.split("://", 1)[-1]).stem, used) for path in paths]


# ------------------------------------------------------------------ write (a datasink)
class PartsSink(Datasink):
    """Each write task's rows as one complete Parquet part; the run's tally, on the driver."""

    def __init__(self, folder: str, rows_per_part: int) -> None:
        self.folder = folder
        self.rows_per_part = rows_per_part
        self.counts: dict[str, int] = {"files": 0, "failed": 0, "flagged": 0, "cautioned": 0}

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_part

    def get_name(self) -> str:
        return "ParquetParts"

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, int]:
        from ray.data.block import BlockAccessor

        tables = [BlockAccessor.for_block(block).to_arrow().cast(RESULT_SCHEMA) for block in blocks]
        table = pa.concat_tables(tables) if tables else RESULT_SCHEMA.empty_table()
        if not len(table):
            return {}
        write_part(table, self.folder)
        return tally(table)

    def on_write_complete(self, write_result: Any) -> None:
        for counts in write_result.write_returns:
            for key, value in (counts or {}).items():
                self.counts[key] += value


# ------------------------------------------------------------------ the graph
def scoring_plan(config: ScaleConfig) -> tuple[int, float]:
    """How many actors and how many CPUs each reserves, from the cluster's CPUs.

    Actors that reserve every CPU leave none to the read tasks, which then wait forever
    ("backpressured: ResourceBudget", RECIPES.md); so at least one CPU stays free for them.
    """
    cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1.0)))
    actors = config.actors or max(1, int(cpus // 2))
    cpus_each = config.actor_cpus or max(0.1, min(1.0, (cpus - 1.0) / actors))
    return actors, cpus_each


PLANNED_TASKS = 200
"""Read-and-decode tasks planned at least, however few CPUs (Ray's own reads plan about as many):
each input block costs the driver about 5 ms to plan (bench/scale.py), so 10^6 films in blocks
of 32 would take minutes before the first film is read."""


def input_blocks(films: int, cpus: int, files_per_task: int) -> int:
    """How many blocks (read-and-decode tasks) the input list is cut into: a block of
    ``files_per_task`` files while that gives at most ``max(PLANNED_TASKS, 2 x CPUs)`` tasks, bigger
    blocks beyond; never fewer than two per CPU while files last, so a small job decodes in parallel.
    A task decodes its block ``files_per_task`` files at a time and streams them on as it goes."""
    wanted = math.ceil(films / files_per_task)
    return max(1, min(films, max(min(wanted, max(PLANNED_TASKS, 2 * cpus)), 2 * cpus)))


def build_dataset(
    sources: list[Source], heatmaps: list[str | None], *, model: str | None, image_size: int,
    heatmap_folder: str | None, heatmap_shown: str | None, config: ScaleConfig,
    actor_class: type = ScoringActor,
) -> Dataset:
    """The lazy Ray Dataset of result rows for ``sources`` (nothing runs until it is written)."""
    table = pa.table({"path": [s.path for s in sources], "location": [s.location for s in sources],
                      "heatmap": pa.array(heatmaps, pa.string())})
    actors, cpus_each = scoring_plan(config)
    blocks = input_blocks(len(sources), int(ray.cluster_resources().get("CPU", 1)), config.files_per_task)
    with warnings.catch_warnings():
        # Ray 2.60 names no parameter yet for the retry settings, and warns that passing them as
        # remote arguments will change in 2.64: they are the point here, so they are passed.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        decoded = ray.data.from_arrow(table, override_num_blocks=blocks).map_batches(
            read_and_decode, batch_format="pyarrow", batch_size=config.files_per_task,
            fn_kwargs={"image_size": image_size, "keep_display": bool(heatmap_folder)},
            num_cpus=1, max_retries=config.max_retries,
        )
        return decoded.map_batches(
            actor_class, batch_format="pyarrow", batch_size=config.batch_size,
            fn_constructor_kwargs={"model": model, "heatmaps": heatmap_folder, "heatmaps_shown": heatmap_shown,
                                   "batch_size": config.batch_size, "threads": config.threads_per_actor},
            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_each,  # ``concurrency=`` before Ray 2.51
            max_restarts=config.max_restarts, max_task_retries=config.max_task_retries,
        )


def start(address: str | None) -> bool:
    """Connect to Ray (``address``) or start it in this process; whether this call started it."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address)
    else:
        ray.init(include_dashboard=False)
    return True


__all__ = ["DECODED_SCHEMA", "PartsSink", "ScoringActor", "build_dataset", "heatmap_names", "prepare_bytes",
           "read_and_decode", "read_source", "scoring_plan", "start"]
