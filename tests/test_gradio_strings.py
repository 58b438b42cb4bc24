"""The two English strings of the Spanish page that are Gradio's (docs/i18n.md): checked on the
installed Gradio, so that an upgrade that fixes either one makes the document say so."""

from __future__ import annotations

import re
from pathlib import Path

import gradio


def _assets() -> Path:
    return Path(gradio.__file__).parent / "templates" / "frontend" / "assets"


def _table(language: str) -> str:
    files = sorted(_assets().glob(f"{language}-*.js"))
    assert files, f"no {language} translation table in Gradio {gradio.__version__}"
    return files[0].read_text(encoding="utf-8")


def test_the_documented_gradio_version_is_installed() -> None:
    assert f"Gradio {gradio.__version__}" in (Path(__file__).parent.parent / "docs" / "i18n.md").read_text()


def test_the_table_search_placeholder_is_a_literal_in_gradio() -> None:
    literal = [p.name for p in _assets().glob("Index-*.js") if "`Search...`" in p.read_text(encoding="utf-8")]
    assert literal, "Gradio's Dataframe no longer writes 'Search...' as a literal: update docs/i18n.md"


def test_common_complete_is_announced_but_in_no_translation_table() -> None:
    announced = any("i18n(`common.complete`)" in p.read_text(encoding="utf-8") for p in _assets().glob("*.js"))
    assert announced, "Gradio no longer announces common.complete: update docs/i18n.md"
    for language in ("en", "es"):
        assert not re.search(r"\bcomplete:`", _table(language)), f"{language} now translates common.complete"
