"""The walkthrough notebooks (issue 22): built from one source, run top to bottom, outputs current.

``notebooks/walkthrough.ipynb`` (English) and ``notebooks/recorrido.ipynb`` (Spanish) are built from
``notebooks/story.py`` by ``notebooks/build.py`` and committed with their outputs, so that GitHub shows
them as run. Three promises are checked here:

- the two notebooks have the same code cells, and both are exactly what the source builds (so
  nobody edits one notebook and forgets the other, or the source);
- each runs top to bottom on the bundled model and ../shared/data without an error (nbclient, the
  way ``build.py`` runs them);
- what the committed outputs show is what a run shows now: in the cells tagged ``stable`` (data
  counts, the bundled model's figures), the printed text with its numbers equal to within 0.01
  (or 1 %); in every cell, the same images and the same kinds of output. Cells that depend on the
  minute of training (the first CNN's figures, its progress bar, timings) are not compared number
  for number: the training is seeded and in fp32, but a CPU of another kind may round differently.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
MAX_BYTES = 3_000_000
"""GitHub renders notebooks up to a few MB; images are drawn at 80 dpi to stay well below."""


def _build_module() -> ModuleType:
    """``notebooks/build.py`` (a script, not part of the package) loaded as a module."""
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _build_module()


def _committed(language: str) -> Any:
    return nbformat.read(build.NOTEBOOKS[language], as_version=4)


def _cells(notebook: Any) -> list[tuple[str, str, list[str]]]:
    return [(cell.cell_type, cell.source, list(cell.metadata.get("tags", []))) for cell in notebook.cells]


def test_both_languages_share_every_code_cell() -> None:
    english, spanish = (_committed(language) for language in ("en", "es"))
    code = [[(source, tags) for kind, source, tags in _cells(nb) if kind == "code"] for nb in (english, spanish)]
    assert code[0] == code[1]
    assert len(code[0]) >= 15
    prose = [[source for kind, source, _ in _cells(nb) if kind == "markdown"] for nb in (english, spanish)]
    assert len(prose[0]) == len(prose[1]) and not set(prose[0]) & set(prose[1]), "every text cell is translated"


@pytest.mark.parametrize("language", sorted(build.NOTEBOOKS))
def test_committed_notebook_is_what_the_story_builds(language: str) -> None:
    assert _cells(_committed(language)) == _cells(build.build(language)), (
        f"{build.NOTEBOOKS[language].name} is not built from notebooks/story.py: run `python notebooks/build.py`")


def test_notebook_uses_the_public_api_only() -> None:
    """The story is told with ``pneumoscope.<name>`` for names the package exports (README, "Python"),
    never with a module path: a private function it needed would be a sign the API is missing it."""
    import pneumoscope

    code = "\n".join(source for kind, source, _ in _cells(build.build("en")) if kind == "code")
    assert not re.findall(r"^\s*(?:from|import)\s+pneumoscope\.", code, flags=re.MULTILINE)
    imported = re.findall(r"^from pneumoscope import (.+)$", code, flags=re.MULTILINE)
    used = set(re.findall(r"\bpneumoscope\.(\w+)", code)) | {n.strip() for line in imported for n in line.split(",")}
    assert used - {"__file__"} <= set(pneumoscope.__all__), used - set(pneumoscope.__all__)
    for name in pneumoscope.__all__:
        assert getattr(pneumoscope, name) is not None


@pytest.mark.parametrize("language", sorted(build.NOTEBOOKS))
def test_committed_notebook_has_its_outputs(language: str) -> None:
    path = build.NOTEBOOKS[language]
    notebook = _committed(language)
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code), "committed without running every cell"
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert sum(_view(cell)["images"] for cell in code) >= 8
    headless = next(cell for cell in code if "HEADLESS =" in cell.source)
    assert "headless run" in _view(headless)["text"], "committed from a run that started the web page"


# ---------------------------------------------------------------------------- comparing two runs
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _view(cell: Any) -> dict[str, Any]:
    """What a reader sees of one code cell: its printed and displayed text (stderr is left out:
    progress bars and library warnings), the kinds of output, and how many images."""
    texts, kinds, images = [], set(), 0
    for output in cell.outputs:
        if output.output_type == "stream":
            if output.name == "stdout":
                texts.append(output.text)
                kinds.add("stdout")
            continue
        data = output.get("data", {})
        images += "image/png" in data
        kinds.update(f"{output.output_type}:{mime}" for mime in data)
        for mime in ("text/markdown", "text/plain"):
            if mime in data and not (mime == "text/plain" and "image/png" in data):
                texts.append(data[mime])
                break
    return {"text": "\n".join(texts), "kinds": kinds, "images": images}


def _same_numbers(fresh: str, committed: str) -> str | None:
    """None when the two texts read the same, numbers equal to within 0.01 or 1 %; else why not."""
    words = [" ".join(_NUMBER.sub("#", text).split()) for text in (fresh, committed)]
    if words[0] != words[1]:
        return f"the text differs:\n--- now\n{fresh}\n--- committed\n{committed}"
    for now, then in zip(*(map(float, _NUMBER.findall(text)) for text in (fresh, committed))):
        if not math.isclose(now, then, rel_tol=0.01, abs_tol=0.0101):
            return f"{now} now, {then} committed:\n--- now\n{fresh}\n--- committed\n{committed}"
    return None


def _differences(fresh: Any, committed: Any) -> list[str]:
    problems = []
    pairs = [(a, b) for a, b in zip(fresh.cells, committed.cells) if a.cell_type == "code"]
    for index, (now, then) in enumerate(pairs):
        seen_now, seen_then = _view(now), _view(then)
        where = f"code cell {index + 1} ({now.source.splitlines()[0][:60]!r})"
        if seen_now["images"] != seen_then["images"] or seen_now["kinds"] != seen_then["kinds"]:
            problems.append(f"{where}: outputs {sorted(seen_now['kinds'])} with {seen_now['images']} images now, "
                            f"{sorted(seen_then['kinds'])} with {seen_then['images']} committed")
        elif "stable" in now.metadata.get("tags", []):
            if why := _same_numbers(seen_now["text"], seen_then["text"]):
                problems.append(f"{where}: {why}")
    return problems


def test_comparison_reads_numbers_not_layout() -> None:
    assert _same_numbers("auc   0.9975\nn 785", "auc 0.998 n 785") is None
    assert _same_numbers("n 785", "n 784") is None  # within 1 %
    assert _same_numbers("refused 2 of 2", "refused 1 of 2") is not None
    assert _same_numbers("label NORMAL", "label PNEUMONIA") is not None


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a few minutes on 2 idle cores; room for a CI machine busy with other work
@pytest.mark.parametrize("language", sorted(build.NOTEBOOKS))
def test_notebook_runs_and_its_committed_outputs_are_current(language: str, data_root: Path) -> None:
    """Run the notebook as CI does (headless, a fresh kernel, from notebooks/); any error in a cell
    fails here with the cell and its traceback. Then compare with the committed outputs."""
    fresh = build.execute(build.build(language))
    problems = _differences(fresh, _committed(language))
    assert not problems, (f"{build.NOTEBOOKS[language].name}: the committed outputs are stale "
                          "(run `python notebooks/build.py`):\n\n" + "\n\n".join(problems))
