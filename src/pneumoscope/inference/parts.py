"""Results as a folder of Parquet parts: what ``predict --engine ray`` writes, and what a rerun skips.

``results.parquet`` is a folder (the layout Spark, DuckDB, pandas and ``pyarrow.dataset`` read as
one table) of ``part-<digest>.parquet`` files with today's CSV columns
(:data:`~pneumoscope.inference.batch.COLUMNS`), one row per input. Two promises make a crashed
job resumable without losing or repeating a film:

- A part is complete or absent. On a local or mounted filesystem it is written under a hidden
  temporary name, then renamed (atomic); an object store (S3, GCS) shows an object only once its
  upload has completed. A rerun deletes the temporary leftovers of a crash and reads every part.
- A part's name is a digest of the paths it holds, so a write task that Ray retries (its worker
  died after writing) rewrites the same file instead of adding a second copy of the same rows.

pyarrow comes with the ``scale`` extra; this module is imported only by the Ray engine.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from pneumoscope.errors import UserError
from pneumoscope.inference.batch import COLUMNS
from pneumoscope.inference.prediction import ERROR_LABEL
from pneumoscope.inference.sources import filesystem

PART_PREFIX, PART_SUFFIX = "part-", ".parquet"
TEMP_SUFFIX = ".tmp"

_TYPES: dict[str, pa.DataType] = {
    "probability": pa.float64(), "raw_probability": pa.float64(), "threshold": pa.float64(),
    "ood_distance": pa.float64(), "p_bacterial": pa.float64(), "is_chest_xray": pa.bool_(),
    "warnings": pa.list_(pa.string()),
}
RESULT_SCHEMA = pa.schema([(name, _TYPES.get(name, pa.string())) for name in COLUMNS])
"""Today's CSV columns with real types (a probability is a double, ``warnings`` a list), fixed
here rather than inferred per part: a part whose rows all lack a subtype must not give that
column a null type that the other parts then contradict."""


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Result rows (:func:`~pneumoscope.inference.batch.result_row`) as a table of ``RESULT_SCHEMA``."""
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def part_name(paths: Iterable[str]) -> str:
    """``part-<digest>.parquet``, the same for the same inputs (a retried write overwrites itself)."""
    digest = hashlib.sha256("\n".join(sorted(paths)).encode("utf-8", "surrogateescape")).hexdigest()[:20]
    return f"{PART_PREFIX}{digest}{PART_SUFFIX}"


def write_part(table: pa.Table, folder: str) -> str:
    """Write ``table`` as one complete part in ``folder`` (a local path or URI); its file name."""
    filesys, root = filesystem(folder)
    filesys.create_dir(root, recursive=True)
    table = table.cast(RESULT_SCHEMA)
    final = f"{root.rstrip('/')}/{part_name(table.column('path').to_pylist())}"
    if isinstance(filesys, fs.LocalFileSystem):
        name = final.rsplit("/", 1)[1]
        temporary = f"{root.rstrip('/')}/.{name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        pq.write_table(table, temporary, filesystem=filesys)
        filesys.move(temporary, final)  # rename(2): readers see the whole part or none
    else:
        pq.write_table(table, final, filesystem=filesys)  # an object appears once its upload completes
    return final


def _parts(folder: str) -> tuple[Any, list[fs.FileInfo]]:
    filesys, root = filesystem(folder)
    info = filesys.get_file_info(root)
    if info.type == fs.FileType.NotFound:
        return filesys, []
    if info.type != fs.FileType.Directory:
        raise UserError(f"{folder} exists and is not a folder of Parquet parts; choose another --out")
    return filesys, filesys.get_file_info(fs.FileSelector(root, recursive=False))


def clear_leftovers(folder: str) -> int:
    """Delete the temporary files a crash left mid-write (never a finished part); how many."""
    filesys, entries = _parts(folder)
    stale = [e.path for e in entries if e.base_name.startswith(".") and e.base_name.endswith(TEMP_SUFFIX)]
    for path in stale:
        filesys.delete_file(path)
    return len(stale)


def read_parts(folder: str, columns: list[str] | None = None) -> pa.Table:
    """Every finished part in ``folder`` as one table (empty when there is none yet)."""
    filesys, entries = _parts(folder)
    tables = []
    for entry in sorted(entries, key=lambda e: e.path):
        if not (entry.base_name.startswith(PART_PREFIX) and entry.base_name.endswith(PART_SUFFIX)):
            continue
        try:
            tables.append(pq.read_table(entry.path, filesystem=filesys, columns=columns))
        except (OSError, pa.ArrowException) as exc:
            raise UserError(f"{entry.path} is not a readable Parquet part ({exc}); move it away and rerun") from None
    schema = RESULT_SCHEMA if columns is None else pa.schema([RESULT_SCHEMA.field(c) for c in columns])
    return pa.concat_tables([t.cast(schema) for t in tables]) if tables else schema.empty_table()


def done_paths(folder: str) -> set[str]:
    """The inputs that already have a row in ``folder``: a rerun skips them."""
    return set(read_parts(folder, columns=["path"]).column("path").to_pylist())


def tally(table: pa.Table) -> dict[str, int]:
    """What the one-line summary counts: rows, failed, not like a chest X-ray, answered with a caution."""
    rows = table.select(["label", "is_chest_xray", "caution"]).to_pylist()
    return {
        "files": len(rows),
        "failed": sum(r["label"] == ERROR_LABEL for r in rows),
        "flagged": sum(r["is_chest_xray"] is False for r in rows),
        "cautioned": sum(bool(r["caution"]) and r["is_chest_xray"] is True for r in rows),
    }


__all__ = ["RESULT_SCHEMA", "clear_leftovers", "done_paths", "part_name", "read_parts", "rows_table", "tally",
           "write_part"]
