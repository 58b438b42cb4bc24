"""The page's words in English and Spanish: every sentence the code can write has its Spanish."""

from __future__ import annotations

import numpy as np

from pneumoscope.app.text import FIXED, PHRASES, both, spanish, translations
from pneumoscope.data.images import DecodedImage
from pneumoscope.inference.explain import explanation
from pneumoscope.inference.ood import INVERTED, ROTATED, verdict
from pneumoscope.inference.prediction import NOT_A_DIAGNOSIS, Prediction


def test_every_warning_the_ood_check_writes_has_its_spanish() -> None:
    flat = np.full((224, 224), 128, dtype=np.uint8)
    reasons = [
        *verdict(DecodedImage(flat, (3000, 300), 40.0, "PNG"), 91.2, 40.0).reasons,  # colour, aspect, distance
        INVERTED,
        ROTATED,
    ]
    assert len(reasons) == 5
    for reason in reasons:
        assert spanish(reason) != reason, f"no Spanish for {reason!r}"
    assert "(distancia 91 > 40)" in spanish(reasons[-3])


def test_the_caution_has_its_spanish_with_its_numbers() -> None:
    """A film between the caution and refusal lines is answered, with a caution naming the distance."""
    grey = np.full((224, 224), 60, dtype=np.uint8)
    grey[:, 100:124] = 200  # a spine brighter than the lung fields: not inverted
    judged = verdict(DecodedImage(grey, (1800, 1400), 0.0, "JPEG"), 63.4, 80.0, 55.0)
    assert judged.is_chest_xray and judged.zone == "caution" and not judged.reasons
    assert "distance 63" in judged.caution and "80" in judged.caution
    translated = spanish(judged.caution)
    assert translated != judged.caution and "distancia de rasgos 63; precaución desde 55, rechazo desde 80" in translated
    assert verdict(DecodedImage(grey, (1800, 1400), 0.0, "JPEG"), 54.0, 80.0, 55.0).zone == "pass"
    assert verdict(DecodedImage(grey, (1800, 1400), 0.0, "JPEG"), 81.0, 80.0, 55.0).zone == "refuse"
    assert verdict(DecodedImage(grey, (1800, 1400), 0.0, "JPEG"), 63.4, 80.0, None).zone == "pass"  # two zones


def test_captions_and_patterns_are_translated_with_their_numbers() -> None:
    for label, word in (("NORMAL", "bajaron"), ("PNEUMONIA", "subieron")):
        assert word in spanish(explanation(label))
    pattern = Prediction("PNEUMONIA", 0.9, 0.14, True, subtype="viral", p_bacterial=0.1).subtype_pattern
    assert spanish(pattern) == "patrón más típico de neumonía vírica (p = 0,90)"
    capitalised = pattern[0].upper() + pattern[1:]  # as the card shows it
    assert spanish(capitalised) == "Patrón más típico de neumonía vírica (p = 0,90)"


def test_both_languages_in_the_html_and_unknown_text_kept() -> None:
    html = both("pneumonia probability")
    assert '<span class="ps-en">pneumonia probability</span>' in html
    assert '<span class="ps-es" lang="es">probabilidad de neumonía</span>' in html
    message = "image data is truncated or corrupt: broken data stream"  # a loader's message: kept as is
    assert spanish(message) == message
    assert "&lt;b&gt;" in both("<b>")  # escaped, never markup


def test_fixed_texts_have_both_languages() -> None:
    tables = translations({"extra": ("one", "uno")})
    assert set(tables) == {"en", "es"} and tables["en"].keys() == tables["es"].keys()
    assert tables["es"]["extra"] == "uno" and tables["es"]["predict"] == "Predecir"
    for name, (english, spanish_text) in FIXED.items():
        assert english and spanish_text and english != spanish_text, name
    for english, spanish_text in PHRASES.items():
        assert spanish_text, english


def test_a_cautioned_answer_shows_the_caution_in_both_languages() -> None:
    from pneumoscope.app.cards import result_card
    from pneumoscope.inference.ood import caution_text

    caution = caution_text(63.4, 55.0, 80.0)
    card = result_card(Prediction("NORMAL", 0.05, 0.14, True, ood_distance=63.4, xray_check="caution", caution=caution),
                       "film.jpeg")
    assert 'id="ps-caution"' in card and 'id="ps-label"' in card  # answered, with the caution under it
    assert "feature distance 63" in card and "distancia de rasgos 63" in card
    plain = result_card(Prediction("NORMAL", 0.05, 0.14, True, ood_distance=30.0), "film.jpeg")
    assert "ps-caution" not in plain


def test_one_decimal_mark_per_language_on_the_card() -> None:
    """The card's probability and threshold, like the subtype pattern and the About tab, are
    written 0.594 in English and 0,594 in Spanish (each shown by the page's language)."""
    import re

    from pneumoscope.app.cards import result_card

    card = result_card(Prediction("PNEUMONIA", 0.5941, 0.1538, True, subtype="viral", p_bacterial=0.26))
    english = re.findall(r'class="ps-en" id="ps-(probability|threshold)">([^<]*)<', card)
    spanish_ = re.findall(r'class="ps-es" lang="es" id="ps-(probability|threshold)-es">([^<]*)<', card)
    assert english == [("probability", "0.594"), ("threshold", "0.154")]
    assert spanish_ == [("probability", "0,594"), ("threshold", "0,154")]


# ------------------------------------------------------------------ the Batch tab's table (issue 23, item 1)
def _batch_rows() -> list:
    """One row of each kind the table can show, built as the handler builds them."""
    from pneumoscope.app.table import make_row
    from pneumoscope.inference.batch import result_row
    from pneumoscope.inference.ood import caution_text

    grey = np.full((224, 224), 128, dtype=np.uint8)
    refused = verdict(DecodedImage(grey, (3000, 300), 40.0, "PNG"), 91.2, 40.0)
    predictions = {
        "normal.jpeg": Prediction("NORMAL", 0.0217, 0.1538, True),
        "viral.jpeg": Prediction("PNEUMONIA", 0.5941, 0.1538, True, subtype="viral", p_bacterial=0.26),
        "edge.jpeg": Prediction("NORMAL", 0.05, 0.1538, True, ood_distance=63.4, xray_check="caution",
                                caution=caution_text(63.4, 55.0, 80.0)),
        "photo.png": Prediction("NORMAL", 0.3, 0.1538, False, warnings=(*refused.reasons, NOT_A_DIAGNOSIS),
                                xray_check="refuse"),
        "empty.png": None,
    }
    rows = []
    for name, prediction in predictions.items():
        error = "file is empty (0 bytes)" if prediction is None else None
        rows.append(make_row(name, result_row(name, prediction, error), prediction, error))
    return rows


def test_the_batch_table_is_english_as_before_and_spanish_for_a_spanish_page() -> None:
    from pneumoscope.app.table import HEADERS, tables

    english, spanish_ = tables(_batch_rows())
    assert HEADERS["en"] == ["file", "label", "probability", "pattern", "warnings"]
    assert HEADERS["es"] == ["archivo", "etiqueta", "probabilidad", "patrón", "avisos"]
    assert [row[1] for row in english] == ["NORMAL", "PNEUMONIA", "NORMAL", "NOT A CHEST X-RAY", "ERROR"]
    assert [row[1] for row in spanish_] == ["NORMAL", "NEUMONÍA", "NORMAL", "NO ES UNA RADIOGRAFÍA DE TÓRAX", "ERROR"]
    # One decimal mark per language; no probability for a refused or unreadable file.
    assert [row[2] for row in english] == [0.0217, 0.5941, 0.05, None, None]
    assert [row[2] for row in spanish_] == ["0,0217", "0,5941", "0,0500", "", ""]
    assert english[1][3] == "pattern more typical of viral pneumonia (p = 0.74)"
    assert spanish_[1][3] == "patrón más típico de neumonía vírica (p = 0,74)"
    assert "distancia de rasgos 63; precaución desde 55, rechazo desde 80" in spanish_[2][4]
    assert spanish_[4][4] == "el archivo está vacío (0 bytes)"
    # The refused film's reasons, each in Spanish; the label already says it is no diagnosis.
    assert "colour" in english[3][4] and NOT_A_DIAGNOSIS not in english[3][4]
    for reason in spanish_[3][4].split("; "):
        assert reason and reason == spanish(reason) and reason not in english[3][4], reason
    assert "relación de aspecto de 10,00" in spanish_[3][4]  # the decimal comma inside a warning too
    assert [row[0] for row in spanish_] == [row[0] for row in english]  # file names are no words


def test_no_english_word_left_in_the_spanish_table() -> None:
    import re

    from pneumoscope.app.table import tables

    english, spanish_ = tables(_batch_rows())
    words = {"probability", "pneumonia", "pattern", "distance", "colour", "chest", "file", "empty", "threshold"}
    for row in spanish_:
        for cell in row[1:]:
            assert not words & set(re.findall(r"[a-z]+", str(cell).lower())), cell


def test_every_label_a_person_reads_has_its_spanish() -> None:
    from pneumoscope.inference.prediction import ERROR_LABEL, REFUSED_LABEL
    from pneumoscope.languages import LABELS_ES, label

    assert set(LABELS_ES) == {"NORMAL", "PNEUMONIA", REFUSED_LABEL, ERROR_LABEL}
    assert label("PNEUMONIA", "es") == "NEUMONÍA" and label("PNEUMONIA", "en") == "PNEUMONIA"
    assert label(REFUSED_LABEL, "es") != REFUSED_LABEL


# ------------------------------------------------------------------ the About tab's figures (issue 23, item 2)
def _figure_texts(monkeypatch, draw) -> str:
    """Every text a figure function writes (titles, ticks, axis labels, legend), one per line."""
    from matplotlib.text import Text

    from pneumoscope.evaluation import figures

    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig) or path)
    draw(figures)
    fig = drawn[0]
    fig.draw_without_rendering()  # tick labels are written when drawn
    return "\n".join(t.get_text() for t in fig.findobj(Text) if t.get_text())


def test_the_about_figures_speak_spanish(monkeypatch, tmp_path) -> None:
    labels = np.array([0, 0, 1, 1, 1, 1])
    probs = np.array([0.05, 0.3, 0.2, 0.6, 0.9, 0.1])
    curve = [("ensemble", labels, probs, 0.1538)]
    english_words = ("true ", "pred. PNEUMONIA", "false-positive", "chance", "threshold", "prevalence", "recall",
                     "sensitivity", "Confusion", "PNEUMONIA")
    draws = {
        "confusion": lambda f, lang: f.plot_confusion_matrix([[200, 2], [27, 556]], tmp_path / "c.png",
                                                             f.at_threshold("ensemble", 0.1538, lang), lang),
        "roc": lambda f, lang: f.plot_roc(curve, tmp_path / "r.png", lang),
        "pr": lambda f, lang: f.plot_pr(curve, tmp_path / "p.png", lang),
    }
    for name, draw in draws.items():
        english = _figure_texts(monkeypatch, lambda f: draw(f, "en"))
        spanish_ = _figure_texts(monkeypatch, lambda f: draw(f, "es"))
        assert "0.154" in english and "0,154" in spanish_ and "0.154" not in spanish_, name
        for word in english_words:
            assert word not in spanish_, (name, word)
    confusion = _figure_texts(monkeypatch, lambda f: draws["confusion"](f, "es"))
    assert "real NEUMONÍA" in confusion and "pred. NEUMONÍA" in confusion and "95,4 %" in confusion
    roc = _figure_texts(monkeypatch, lambda f: draws["roc"](f, "es"))
    assert "tasa de falsos positivos (1 - especificidad)" in roc and "azar" in roc
    assert "0,2" in roc and "0.2" not in roc  # the ticks too


def test_figure_words_exist_in_every_language() -> None:
    from pneumoscope.evaluation.figures import WORDS
    from pneumoscope.languages import LANGUAGES

    assert set(WORDS) == set(LANGUAGES)
    assert WORDS["es"].keys() == WORDS["en"].keys()
    for word, english in WORDS["en"].items():
        assert english.count("{}") == WORDS["es"][word].count("{}"), word


def test_the_loaders_fixed_messages_have_their_spanish() -> None:
    """What the batch table's ``avisos`` (and the error card) say of an unreadable file, taken from
    the loader itself, so a reworded message cannot lose its Spanish silently."""
    import io

    import pytest
    from PIL import Image

    from pneumoscope.data.images import decode_image
    from pneumoscope.errors import failure_message

    tiny = io.BytesIO()
    Image.new("L", (10, 10)).save(tiny, format="PNG")
    sources = {b"": "el archivo está vacío", b"no pixels here": "el archivo no es una imagen legible",
               tiny.getvalue(): "la imagen tiene 10 x 10 píxeles: demasiado pequeña"}
    for source, expected in sources.items():
        with pytest.raises(Exception) as raised:
            decode_image(source)
        assert spanish(failure_message(raised.value)).startswith(expected), failure_message(raised.value)
    assert spanish(failure_message(MemoryError())) == "no hay memoria suficiente para decodificar esta imagen"
