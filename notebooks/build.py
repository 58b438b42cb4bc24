"""Build the walkthrough notebooks from their one source, ``notebooks/story.py``, and run them.

``story.py`` is a jupytext percent script. Its code cells are shared; each Markdown cell carries
``lang="en"`` or ``lang="es"``. One source, two notebooks: the English ``walkthrough.ipynb`` and the
Spanish ``recorrido.ipynb`` cannot drift apart in their code, and a translation sits next to the
text it translates. The notebooks are committed with their outputs (GitHub renders them), so they
are built by running them, as CI runs them (``tests/test_notebooks.py``):

    .venv/bin/python notebooks/build.py              # both notebooks, executed (a few minutes each)
    .venv/bin/python notebooks/build.py --only es    # one of them
    .venv/bin/python notebooks/build.py --no-execute # code and text only, outputs left empty

Edit ``story.py``, not the ``.ipynb`` files: the test fails when a notebook is not what this
script builds from the source.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbformat import NotebookNode

HERE = Path(__file__).resolve().parent
STORY = HERE / "story.py"
NOTEBOOKS = {"en": HERE / "walkthrough.ipynb", "es": HERE / "recorrido.ipynb"}
"""Language -> the notebook built for it."""
CELL_TIMEOUT = 900
"""Seconds one cell may run: the training cell takes about a minute on two idle cores, and a busy CI
machine can be several times slower; a hung cell must still fail rather than wait forever."""


def build(language: str, source: Path = STORY) -> NotebookNode:
    """The notebook of ``language`` from the story: every code cell, and the Markdown cells in that
    language, without outputs. Cell ids are numbered, not random, so that a rebuild changes nothing
    that did not change in the source."""
    story = jupytext.read(source, fmt="py:percent")
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": story.metadata["kernelspec"],
                                                  "language_info": {"name": "python"}})
    for cell in story.cells:
        cell = copy.deepcopy(cell)
        cell_language = cell.metadata.pop("lang", None)
        if cell.cell_type == "markdown" and cell_language != language:
            continue
        if cell.cell_type == "code" and cell_language is not None:
            raise ValueError(f"{source}: a code cell has lang={cell_language!r}; code cells are shared")
        cell.id = f"{cell.cell_type}-{len(notebook.cells)}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        notebook.cells.append(cell)
    nbformat.validate(notebook)
    return notebook


def execute(notebook: NotebookNode, cwd: Path = HERE, timeout: int = CELL_TIMEOUT) -> NotebookNode:
    """Run ``notebook`` top to bottom in a fresh kernel, headless, from ``cwd``; an error in any cell
    raises (nbclient's ``CellExecutionError``). Streams are coalesced, so a progress bar is kept as its
    last line rather than as hundreds of redraws, and no run times are recorded in cell metadata."""
    from nbclient import NotebookClient

    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", record_timing=False,
                            coalesce_streams=True, resources={"metadata": {"path": str(cwd)}})
    client.execute(env={**os.environ, "PNEUMOSCOPE_HEADLESS": "1"})  # the kernel's: the web page is not started
    return notebook


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(NOTEBOOKS), help="build one language only")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = parser.parse_args(argv)
    for language, path in NOTEBOOKS.items():
        if args.only and language != args.only:
            continue
        notebook = build(language)
        started = time.perf_counter()
        if not args.no_execute:
            execute(notebook)
        nbformat.write(notebook, path)
        print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size / 1e6:.2f} MB"
              + ("" if args.no_execute else f", ran in {time.perf_counter() - started:.0f} s") + ")", file=sys.stderr)


if __name__ == "__main__":
    main()
