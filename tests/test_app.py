"""The web app: its handlers called directly, then the running server through ``gradio_client``.

Real originals from ../shared/data are read in place; images the tests need to delete, break or
invent are written to pytest's temporary folders, never into the repository.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from _inference import colour_photo
from _server import running_app, upload_copy, uploads_left
from pneumoscope.app import (
    NOT_XRAY_LABEL,
    App,
    PendingUploads,
    about_content,
    example_files,
    serve,
)
from pneumoscope.cli import UserError
from pneumoscope.inference.batch import COLUMNS
from pneumoscope.inference.predictor import Predictor


# ------------------------------------------------------------------ files
@pytest.fixture(scope="module")
def odd_files(tmp_path_factory: pytest.TempPathFactory, normal_original: Path) -> dict[str, Path]:
    """A broken JPEG (a real original cut short), bytes that are no image, and a colour photograph."""
    folder = tmp_path_factory.mktemp("odd")
    broken = folder / "broken.jpeg"
    broken.write_bytes(normal_original.read_bytes()[:4000])
    garbage = folder / "garbage.png"
    garbage.write_bytes(b"this is not an image at all\n" * 20)
    photo = folder / "astronaut.png"
    Image.fromarray(colour_photo()).save(photo)
    return {"broken": broken, "garbage": garbage, "photo": photo}


@pytest.fixture()
def app(predictor: Predictor, tmp_path: Path) -> App:
    upload_dir = tmp_path / "uploads"
    upload_dir.mkdir()
    return App(predictor, upload_dir)


def test_predict_one_real_originals(app: App, normal_original: Path, pneumonia_original: Path) -> None:
    for path in (normal_original, pneumonia_original):
        expected = app.predictor.predict(path, heatmap=True)
        out = app.predict_one(str(path), True, 0.45)
        assert out.result["label"] == expected.label
        assert out.result["probability"] == pytest.approx(expected.probability, abs=1e-6)
        assert out.result["is_chest_xray"] is True and out.result["threshold"] == pytest.approx(app.predictor.threshold)
        assert f'id="ps-label" style="color:' in out.card and f'<span class="ps-en">{expected.label}</span>' in out.card
        assert f'id="ps-file">{path.name}</div>' in out.card  # the card names its file
        assert 'id="ps-colourbar"' in out.picture and f"Grad-CAM for the label {expected.label}" in out.picture
        assert f"{expected.probability:.3f}" in out.card and f"{expected.threshold:.3f}" in out.card
        assert 'class="ps-bar"' in out.card and "ps-warning" not in out.card and "ps-error" not in out.card
        assert 'id="ps-image" src="data:image/jpeg;base64,' in out.picture and "Grad-CAM" in out.picture
        assert out.state["image"] is not None and out.state["heatmap"] is not None
        assert out.upload is None  # the file input is cleared: the upload is gone
        # An original outside the private folder (an example, a file named by a test) is never deleted.
        assert path.is_file()
        # The bacterial/viral line: on a PNEUMONIA X-ray only, worded as a pattern, in the JSON too.
        assert out.result["subtype"] == expected.subtype and out.result["subtype_pattern"] == expected.subtype_pattern
        if expected.label == "PNEUMONIA":
            assert expected.subtype in ("bacterial", "viral")
            assert 'id="ps-subtype"' in out.card and f"Pattern more typical of {expected.subtype} pneumonia (p = " in out.card
            assert "not a diagnosis of the cause" in out.card
        else:
            assert expected.subtype is None and "ps-subtype" not in out.card


def test_heatmap_toggle_and_opacity_redraw(app: App, pneumonia_original: Path) -> None:
    out = app.predict_one(str(pneumonia_original), True, 0.45)
    plain = app.redraw(out.state, False, 0.45)
    assert "The image as read" in plain and "Grad-CAM" not in plain
    stronger = app.redraw(out.state, True, 0.9)
    assert "Grad-CAM" in stronger and stronger != out.picture
    assert app.predict_one(str(pneumonia_original), False, 0.45).picture.count("The image as read") == 2  # alt + caption


def test_an_empty_map_is_said_not_drawn(app: App, normal_original: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A borderline film whose map the ReLU leaves empty gets the reason in words, not an all-blue
    overlay that would read as "nothing here"; the prediction itself is unchanged."""
    import dataclasses

    real = app.predictor.predict(normal_original, heatmap=True)
    emptied = dataclasses.replace(real, heatmap=real.heatmap * 0.0)
    monkeypatch.setattr(app.predictor, "predict", lambda *args, **kwargs: emptied)
    out = app.predict_one(str(normal_original), True, 0.45)
    assert out.result["label"] == real.label and out.state["heatmap"] is None
    assert "ps-colourbar" not in out.picture and "the map is empty" in out.picture and "el mapa está vacío" in out.picture


def test_upload_is_deleted_after_prediction(app: App, pneumonia_original: Path, odd_files: dict[str, Path]) -> None:
    good = upload_copy(app, pneumonia_original)
    assert app.predict_one(str(good), True, 0.5).result["label"] in ("NORMAL", "PNEUMONIA")
    assert not good.exists() and not good.parent.exists()  # the hash-named folder goes too
    bad = upload_copy(app, odd_files["broken"])
    assert app.predict_one({"path": str(bad)}, True, 0.5).result["error"]  # Gradio's payload form
    assert not bad.exists()
    assert list(app.upload_dir.iterdir()) == []


def test_example_copies_are_never_deleted(app: App, normal_original: Path) -> None:
    example = upload_copy(app, normal_original)
    app.uploads.protected = {os.path.realpath(example)}
    for _ in range(2):  # clicked twice: still there for the third click
        assert app.predict_one(str(example), False, 0.5).result["label"] in ("NORMAL", "PNEUMONIA")
        assert example.is_file()


def test_same_file_uploaded_twice_survives_the_first_prediction(app: App, normal_original: Path) -> None:
    """Gradio stores both uploads of one file at one path: the first prediction must not delete it."""
    app.uploads.pending = PendingUploads()
    path = upload_copy(app, normal_original)
    app.uploads.pending.update([str(path)])
    app.uploads.pending.update([str(path)])  # a second client uploads the same file before the first is predicted
    assert "label" in app.predict_one(str(path), False, 0.5).result
    assert path.is_file()
    assert "label" in app.predict_one(str(path), False, 0.5).result
    assert not path.exists()


@pytest.mark.parametrize("which", ["broken", "garbage"])
def test_unreadable_file_is_one_line_in_the_page(app: App, odd_files: dict[str, Path], which: str) -> None:
    out = app.predict_one(str(odd_files[which]), True, 0.45)
    assert 'id="ps-error"' in out.card and "Cannot read this file" in out.card
    assert out.result["error"] and "\n" not in out.result["error"] and "Traceback" not in out.card
    assert out.result["file"] == odd_files[which].name and odd_files[which].name in out.card  # names its file
    assert out.result["label"] is None and out.result["probability"] is None
    assert out.picture == "" and out.state is None
    assert odd_files[which].is_file()  # outside the private folder: not ours to delete


def test_no_file(app: App) -> None:
    out = app.predict_one(None, True, 0.45)
    assert out.result["error"] == "Upload a chest X-ray first" and out.result["file"] is None
    assert out.result["label"] is None and "ps-error" in out.card
    assert "Upload a chest X-ray first" in out.card and "Cannot read" not in out.card


def test_colour_photo_gets_a_warning_instead_of_a_diagnosis(app: App, odd_files: dict[str, Path]) -> None:
    out = app.predict_one(str(odd_files["photo"]), True, 0.45)
    assert out.result["is_chest_xray"] is False and out.result["warnings"]
    assert 'id="ps-warning"' in out.card and "does not look like a chest X-ray" in out.card
    assert 'id="ps-label"' not in out.card  # no big NORMAL / PNEUMONIA headline
    assert "colour" in out.card
    assert "Grad-CAM" not in out.picture and "no heatmap" in out.picture and "this does not look like a chest X-ray" in out.picture
    # In Spanish too: the reasons are translated, numbers and all (the page shows one language).
    assert "la imagen está en color" in out.card and "sin mapa de calor" in out.picture


def test_warnings_are_true_of_the_image(app: App, normal_original: Path, tmp_path: Path) -> None:
    """Random grey noise is no radiograph, but calling it "inverted" would be false: the anatomy
    check runs only on what otherwise passes as a grey radiograph. A real film turned negative is
    caught by that check. The card's bullets never repeat its heading."""
    import numpy as np
    from PIL import Image, ImageOps

    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 600), dtype=np.uint8)).save(noise)
    out = app.predict_one(str(noise), True, 0.45)
    assert out.result["is_chest_xray"] is False
    assert not any("inverted" in w for w in out.result["warnings"]), out.result["warnings"]
    assert out.card.count("does not look like a chest X-ray") == 1  # the heading, not again as a bullet
    negative = tmp_path / "negative.png"
    ImageOps.invert(Image.open(normal_original).convert("L")).save(negative)
    out = app.predict_one(str(negative), True, 0.45)
    assert out.result["is_chest_xray"] is False and any("inverted" in w for w in out.result["warnings"])


def test_dicom_upload(app: App, normal_original: Path, tmp_path: Path) -> None:
    import numpy as np

    from test_images import make_dicom

    grey = np.asarray(Image.open(normal_original).convert("L")).astype(np.uint16) * 16  # 12-bit detector values
    dicom = tmp_path / "chest"  # DICOM files often come without an extension
    dicom.write_bytes(make_dicom(grey, BitsStored=12, HighBit=11))
    out = app.predict_one(str(dicom), True, 0.45)
    assert out.result.get("is_chest_xray") is True, out.result
    assert out.result["label"] == app.predictor.predict(normal_original).label


def test_api_predict_has_the_pages_shape(app: App, pneumonia_original: Path, odd_files: dict[str, Path]) -> None:
    """/predict and the page's "Result as the API returns it" are one dict, for a good file, an
    unreadable one and none: the same keys, the file's name, and ``error`` None or one line."""
    result = app.api_predict(str(pneumonia_original))
    assert result == {"file": pneumonia_original.name, **app.predictor.predict(pneumonia_original).to_dict(),
                      "error": None}
    page = app.predict_one(str(pneumonia_original), False, 0.5).result
    assert page == result
    broken = app.api_predict(str(odd_files["broken"]))
    assert list(broken) == list(result) and broken["file"] == "broken.jpeg"
    assert broken["label"] is None and re.search("truncated|corrupt|damaged", broken["error"])
    assert broken == app.predict_one(str(odd_files["broken"]), False, 0.5).result
    nothing = app.api_predict(None)
    assert list(nothing) == list(result) and nothing["error"] == "Upload a chest X-ray first"
    assert nothing == app.predict_one(None, False, 0.5).result


def test_predict_batch(app: App, normal_original: Path, pneumonia_original: Path, odd_files: dict[str, Path]) -> None:
    files = [normal_original, pneumonia_original, odd_files["photo"], odd_files["broken"]]
    uploaded = [upload_copy(app, path) for path in files]
    rows, csv_path = app.predict_batch([str(path) for path in uploaded])
    assert [row[0] for row in rows] == [path.name for path in files]
    for row, path in zip(rows[:2], files[:2]):
        expected = app.predictor.predict(path)
        assert row[1] == expected.label and row[2] == pytest.approx(expected.probability, abs=1e-4) and row[4] == ""
        assert row[3] == (expected.subtype_pattern or "")
    # Not a chest X-ray: labelled so, with no probability shown as a result (the CSV keeps the raw one).
    assert rows[2][1] == NOT_XRAY_LABEL and rows[2][2] is None and rows[2][3] == "" and "colour" in rows[2][4]
    assert rows[3][1] == "ERROR" and rows[3][2] is None and rows[3][4]
    assert not any(path.exists() for path in uploaded)
    assert Path(csv_path).parent == app.upload_dir  # served from the private folder, swept from there
    with open(csv_path, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    # One CSV schema: the page's download has `pneumoscope predict`'s columns, a row per file.
    assert list(table[0]) == COLUMNS and len(table) == 4
    assert [row["path"] for row in table] == [path.name for path in files]
    # One answer everywhere: the CSV's label is the table's, for refused and failed files too.
    assert [row["label"] for row in table] == [row[1] for row in rows]
    photo = table[2]  # the raw output is kept in its own columns, never as the answer
    assert photo["is_chest_xray"] == "False" and photo["label"] == NOT_XRAY_LABEL and photo["probability"] == ""
    raw = app.predictor.predict(files[2])
    assert photo["raw_label"] == raw.label
    assert float(photo["raw_probability"]) == pytest.approx(raw.probability, abs=1e-4)
    assert table[3]["error"] == rows[3][4] and table[3]["label"] == "ERROR" and table[3]["raw_label"] == ""
    assert app.predict_batch([]) == ([], None)


def test_the_batch_tab_shows_a_table_per_language(app: App, normal_original: Path, odd_files: dict[str, Path]) -> None:
    """The page's Batch tab: the same rows in English and in Spanish, and the English CSV (issue 23)."""
    files = [normal_original, odd_files["photo"], odd_files["garbage"]]
    english, spanish, csv_path = app.predict_batch_page([str(upload_copy(app, path)) for path in files])
    expected = app.predictor.predict(normal_original)
    assert english[0][1] == expected.label and english[0][2] == pytest.approx(expected.probability, abs=1e-4)
    assert spanish[0][1] == {"NORMAL": "NORMAL", "PNEUMONIA": "NEUMONÍA"}[expected.label]
    assert spanish[0][2] == f"{expected.probability:.4f}".replace(".", ",")
    assert [row[1] for row in english[1:]] == [NOT_XRAY_LABEL, "ERROR"]
    assert [row[1] for row in spanish[1:]] == ["NO ES UNA RADIOGRAFÍA DE TÓRAX", "ERROR"]
    assert "colour" in english[1][4] and "la imagen está en color" in spanish[1][4]
    assert spanish[2][4].startswith("el archivo no es una imagen legible")
    with open(csv_path, newline="", encoding="utf-8") as handle:  # the CSV stays English, for programs
        assert [row["label"] for row in csv.DictReader(handle)] == [row[1] for row in english]
    assert app.predict_batch_page([]) == ([], [], None)


def test_batch_uploads_are_deleted_even_when_scoring_fails(app: App, normal_original: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    uploaded = [upload_copy(app, normal_original), upload_copy(app, normal_original)]  # one file sent twice
    uploaded.append(uploaded[0])

    def broken(*args, **kwargs):
        raise RuntimeError("scoring failed")

    monkeypatch.setattr(app.predictor, "predict_prepared", broken)
    with pytest.raises(RuntimeError, match="scoring failed"):
        app.predict_batch([str(path) for path in uploaded])
    assert not any(path.exists() for path in uploaded)


def test_about_leads_with_a_summary_then_card_config_and_figures(predictor: Predictor) -> None:
    about = about_content(predictor)
    folder = Path(predictor.model_path)
    assert (folder / "MODEL_CARD.md").read_text(encoding="utf-8") == about.card
    assert (folder / "config.yaml").read_text(encoding="utf-8") == about.config
    # The figures, each drawn in both languages, the page's CSS showing the one of <html lang> (issue 23).
    for stem in ("confusion_matrix", "roc", "pr"):
        for name in (f"{stem}.png", f"{stem}_es.png"):
            assert (folder / "figures" / name).is_file(), name
        assert f'<img class="ps-en" lang="en" id="ps-figure-{stem}"' in about.figures
        assert f'<img class="ps-es" lang="es" id="ps-figure-{stem}-es"' in about.figures
    assert about.figures.count("data:image/png;base64,") == 6
    assert 'title="Curva ROC"' in about.figures and 'title="ROC curve"' in about.figures
    english, spanish = about.summary
    validation = json.loads((folder / "model.json").read_text())["validation"]
    # The summary's figures are the model's own, in each language's number format.
    assert f"AUC {validation['auc']:.3f}" in english and f"AUC {validation['auc']:.3f}".replace(".", ",") in spanish
    assert f"specificity {100 * validation['specificity']:.1f} %" in english
    assert "Do not use it" in english and "No lo use" in spanish
    # Its stressed figures are the fitted pool's; it says why the stress report's differ (issue 23).
    assert "the stress report" in english and "el informe de estrés" in spanish
    assert len(english) < 1400, "a summary, not the card"


def test_bundled_about_figures_are_what_evaluate_drew(predictor: Predictor) -> None:
    """The model folder's figures are copies of ``pneumoscope evaluate``'s on the validation split
    (the README's command), in every language it draws them."""
    from pneumoscope.languages import LANGUAGES, PAGE_FIGURES, figure_file

    evaluated = Path(__file__).resolve().parent.parent / "docs" / "evaluation_val_split"
    for stem in PAGE_FIGURES:
        for language in LANGUAGES:
            name = figure_file(stem, language)
            bundled = Path(predictor.model_path) / "figures" / name
            assert bundled.read_bytes() == (evaluated / name).read_bytes(), name


def test_a_model_folder_with_english_figures_only_shows_them_in_both_languages(tmp_path: Path) -> None:
    from types import SimpleNamespace

    import numpy as np

    from pneumoscope.evaluation.figures import plot_roc

    plot_roc([("m", np.array([0, 1, 1]), np.array([0.2, 0.7, 0.4]), 0.5)], tmp_path / "figures" / "roc.png")
    about = about_content(SimpleNamespace(model_path=tmp_path, name="m", threshold=0.5))
    assert about.figures.count("<img") == 1 and "ps-en" not in about.figures  # unclassed: shown to both
    assert 'id="ps-figure-roc"' in about.figures


def test_example_files_take_turns_between_classes(originals: Path) -> None:
    chosen = example_files(originals, limit=4)
    assert [path.parent.name for path in chosen] == ["NORMAL", "PNEUMONIA", "NORMAL", "PNEUMONIA"]


def test_shipped_examples_are_credited_radiographs_the_model_reads_right(predictor: Predictor) -> None:
    """`make app` offers examples on any machine: four small radiographs inside the package, each
    credited (CC BY 4.0) and each given its own class by the bundled model."""
    from pneumoscope.app import DEFAULT_EXAMPLES

    files = example_files(DEFAULT_EXAMPLES)
    assert len(files) == 4 and all(path.stat().st_size < 60_000 for path in files)
    credits = (DEFAULT_EXAMPLES / "CREDITS.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in credits and "doi:10.17632/rscbjbr9sj.2" in credits
    for path in files:
        assert path.name in credits
        result = predictor.predict(path)
        assert result.is_chest_xray and result.label == path.name.split("_")[0].upper(), path.name
        if result.label == "PNEUMONIA":
            assert result.subtype == ("viral" if "virus" in path.name else "bacterial"), path.name


def test_bad_options_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="USER:PASS"):
        serve(auth="nopassword", block=False)
    with pytest.raises(UserError, match="not a folder"):
        serve(examples=str(tmp_path / "missing"), block=False)


# ------------------------------------------------------------------ the running server
@pytest.fixture(scope="module")
def client(served, tmp_path_factory: pytest.TempPathFactory):
    from gradio_client import Client

    return Client(served.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


@pytest.mark.slow
def test_api_lists_the_two_endpoints(client) -> None:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/predict", "/predict_batch"}


@pytest.mark.slow
def test_api_predict_and_broken_file(served, client, normal_original: Path, pneumonia_original: Path,
                                     odd_files: dict[str, Path]) -> None:
    from gradio_client import handle_file

    for path in (normal_original, pneumonia_original):
        result = client.predict(handle_file(str(path)), api_name="/predict")
        expected = served.app.predictor.predict(path)
        assert result["label"] == expected.label
        assert result["probability"] == pytest.approx(expected.probability, abs=1e-6)
        assert result["is_chest_xray"] is True
    broken = client.predict(handle_file(str(odd_files["broken"])), api_name="/predict")
    assert re.search("truncated|corrupt|damaged", broken["error"]) and broken["label"] is None
    assert "Traceback" not in broken["error"] and broken["file"] == odd_files["broken"].name
    # ... and the server still answers.
    again = client.predict(handle_file(str(pneumonia_original)), api_name="/predict")
    assert again["label"] == served.app.predictor.predict(pneumonia_original).label
    assert uploads_left(served) == []


@pytest.mark.slow
def test_api_predict_batch(served, client, normal_original: Path, odd_files: dict[str, Path]) -> None:
    from gradio_client import handle_file

    table, csv_file = client.predict(
        [handle_file(str(normal_original)), handle_file(str(odd_files["photo"])), handle_file(str(odd_files["garbage"]))],
        api_name="/predict_batch",
    )
    assert table["headers"] == ["file", "label", "probability", "pattern", "warnings"]
    assert [row[1] for row in table["data"]][1:] == [NOT_XRAY_LABEL, "ERROR"]
    assert table["data"][0][1] == served.app.predictor.predict(normal_original).label
    assert Path(csv_file).read_text(encoding="utf-8").startswith(",".join(COLUMNS))
    assert uploads_left(served) == []
    assert served.app.uploads.pending is not None and not served.app.uploads.pending  # nothing waits for a prediction


@pytest.mark.slow
def test_same_file_from_concurrent_clients(served, normal_original: Path, tmp_path: Path) -> None:
    """Gradio stores uploads of one file at one path: concurrent clients must not delete it from under each other."""
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    clients = [Client(served.url, verbose=False, download_files=str(tmp_path)) for _ in range(4)]

    def six_calls(client) -> list[str]:
        return [client.predict(handle_file(str(normal_original)), api_name="/predict")["label"] for _ in range(6)]

    with ThreadPoolExecutor(len(clients)) as pool:
        labels = [label for batch in pool.map(six_calls, clients) for label in batch]
    assert labels == [served.app.predictor.predict(normal_original).label] * 24
    assert uploads_left(served) == []


@pytest.mark.slow
def test_upload_size_limit(served) -> None:
    import httpx

    too_big = b"\0" * (51 * 1024 * 1024)  # MAX_UPLOAD is 50 MB
    answer = httpx.post(served.url + "gradio_api/upload", files={"files": ("huge.dcm", too_big)}, timeout=60)
    assert answer.status_code == 413
    assert not [p for p in served.app.upload_dir.iterdir() if p.name.startswith("tmp")]  # the partial upload is gone
    assert uploads_left(served) == []
