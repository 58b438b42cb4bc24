"""The page's words in English and Spanish: every sentence the code can write has its Spanish."""

from __future__ import annotations

import numpy as np

from pneumoscope.app.text import FIXED, PHRASES, both, spanish, translations
from pneumoscope.data.images import DecodedImage
from pneumoscope.inference.explain import explanation
from pneumoscope.inference.ood import INVERTED, verdict
from pneumoscope.inference.prediction import Prediction


def test_every_warning_the_ood_check_writes_has_its_spanish() -> None:
    flat = np.full((224, 224), 128, dtype=np.uint8)
    reasons = [
        *verdict(DecodedImage(flat, (3000, 300), 40.0, "PNG"), 91.2, 40.0).reasons,  # colour, aspect, distance
        INVERTED,
    ]
    assert len(reasons) == 4
    for reason in reasons:
        assert spanish(reason) != reason, f"no Spanish for {reason!r}"
    assert "(distancia 91 > 40)" in spanish(reasons[-2])


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
