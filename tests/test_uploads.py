"""An upload's life on its own: the one module that reaches into Gradio's private state.

If a Gradio upgrade renames what ``app/uploads.py`` touches (``Blocks.upload_file_set``,
``Blocks.temp_file_sets``, a component's ``temp_files``), these tests fail first and say where.
"""

from __future__ import annotations

from pathlib import Path

from pneumoscope.app.uploads import PendingUploads, Uploads, identity, install, path_key


def _upload(folder: Path, name: str, data: bytes = b"x") -> Path:
    target = folder / f"hash-{name}" / name  # where Gradio puts an upload: <temp>/<content hash>/<name>
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def test_install_replaces_gradios_set_of_uploads() -> None:
    import gradio as gr

    with gr.Blocks() as demo:
        gr.File()
    original = demo.upload_file_set
    pending = install(demo)
    assert isinstance(pending, PendingUploads) and demo.upload_file_set is pending
    # The cache sweep walks temp_file_sets: it must see the new set, not the old one (by identity).
    assert any(s is pending for s in demo.temp_file_sets) and not any(s is original for s in demo.temp_file_sets)


def test_an_upload_is_deleted_once_and_only_when_nothing_waits(tmp_path: Path) -> None:
    pending = PendingUploads()
    uploads = Uploads(tmp_path, pending)
    path = _upload(tmp_path, "a.png")
    pending.update([str(path)])
    pending.update([str(path)])  # two clients sent the same file: one path
    uploads.discard(str(path), identity(str(path)))
    assert path.is_file(), "deleted while a second prediction still needs it"
    uploads.discard(str(path), identity(str(path)))
    assert not path.exists() and not path.parent.exists()  # Gradio's hash folder goes too
    assert not pending


def test_examples_outside_files_and_replaced_files_are_kept(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "uploads")
    example = _upload(tmp_path / "uploads", "example.png")
    uploads.protected = {path_key(example)}
    uploads.discard(str(example))
    assert example.is_file()  # an example's cached copy serves the next click too
    outside = tmp_path / "mine.png"
    outside.write_bytes(b"x")
    uploads.discard(str(outside))
    assert outside.is_file()  # never a file outside the private folder
    replaced = _upload(tmp_path / "uploads", "b.png")
    seen = identity(str(replaced))
    replaced.unlink()
    _upload(tmp_path / "uploads", "b.png", b"another client's upload")
    uploads.discard(str(replaced), seen)
    assert replaced.is_file()  # replaced since its prediction started: the other client's to delete


def test_a_file_components_memory_of_the_path_is_cleared(tmp_path: Path) -> None:
    class Component:  # what Gradio's gr.File keeps: every path it ever stored
        temp_files: set[str]

    component = Component()
    path = _upload(tmp_path, "c.png")
    component.temp_files = {str(path)}
    uploads = Uploads(tmp_path)
    uploads.file_blocks = [component]
    uploads.discard(str(path))
    assert component.temp_files == set() and not path.exists()
