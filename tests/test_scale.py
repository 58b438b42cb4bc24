"""``pneumoscope predict --engine ray`` on a local 2-CPU Ray cluster (started once for the module):
the same rows as the single-machine command on the originals and the hostile corpus, a rerun that
resumes, a scoring actor killed mid-run, DICOM patient fields kept out of output and Ray's logs,
and the one-line error when Ray is not installed."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _dicom import make_dicom
from _hostile import OK, check_error_message, hostile_corpus, reference_grey, write_corpus
from pneumoscope.cli import main
from pneumoscope.config import ScaleConfig
from pneumoscope.inference.batch import COLUMNS, run_batch
from pneumoscope.inference.prediction import ERROR_LABEL

pytestmark = pytest.mark.slow  # starts a Ray cluster; still runs in `make test`

PROBABILITY_TOLERANCE = 1e-5
"""Ray's rows against the local engine's: the same decoder and the same network, so only ONNX
Runtime's thread count (one per actor here) may move a probability, in the last float digits."""
SECRET_NAME, SECRET_ID = "Sentinelova^Privacia", "PID-SENTINEL-4821"


@pytest.fixture(scope="module")
def ray_cluster():
    try:
        import ray
    except ImportError:
        pytest.fail('Ray is not installed: pip install "pneumoscope[scale]" (make test installs it)')
    import signal

    before = signal.getsignal(signal.SIGTERM)  # ray.init installs its own and leaves it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    signal.signal(signal.SIGTERM, before)


def _ray_rows(out: Path) -> dict[str, dict]:
    from pneumoscope.inference.parts import read_parts

    rows = read_parts(str(out)).to_pylist()
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), "an input has two rows"
    return {row["path"]: row for row in rows}


def _same_row(local: dict, remote: dict) -> None:
    name = local["path"]
    for key in ("label", "raw_label", "is_chest_xray", "xray_check", "subtype", "error", "warnings", "heatmap"):
        assert local[key] == remote[key], (name, key, local[key], remote[key])
    for key in ("probability", "raw_probability", "p_bacterial", "threshold"):
        if local[key] is None:
            assert remote[key] is None, (name, key)
        else:
            assert abs(local[key] - remote[key]) <= PROBABILITY_TOLERANCE, (name, key, local[key], remote[key])


def _bare_dicom(grey: np.ndarray) -> bytes:
    """A DICOM data set without the 128-byte preamble and ``DICM`` marker: known as DICOM by its name only."""
    return make_dicom(grey.astype(np.uint16) * 16, PatientName=SECRET_NAME, PatientID=SECRET_ID)[132:]


@pytest.fixture(scope="module")
def hostile_files(normal_original: Path, pneumonia_original: Path, tmp_path_factory: pytest.TempPathFactory):
    grey = reference_grey(normal_original)
    cases = hostile_corpus(grey, pneumonia_original.read_bytes())
    files = write_corpus(cases, tmp_path_factory.mktemp("hostile") / "uploads — ünïcødé")
    bare = files[next(iter(files))].parent / "bare data set.dcm"
    bare.write_bytes(_bare_dicom(grey))
    return cases, files, bare


def test_same_rows_as_the_local_engine(ray_cluster, originals: Path, hostile_files, model_path: Path,
                                       tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The 48 originals, the hostile and odd corpus and a missing file: one row each, as locally."""
    cases, files, bare = hostile_files
    named = [str(files[case.name]) for case in cases] + [str(bare), str(tmp_path / "gone.png")]
    manifest = tmp_path / "hostile.txt"  # the hostile files reach the Ray engine through a manifest
    manifest.write_text("# the hostile corpus\n" + "\n".join(named) + "\n", encoding="utf-8")
    local_out, ray_out = tmp_path / "local.json", tmp_path / "ray.parquet"

    assert run_batch([str(originals), *named], model=model_path, recursive=True, out=local_out, progress=False) == 1
    status = main(["predict", str(originals), "--recursive", "--manifest", str(manifest), "--engine", "ray",
                   "--model", str(model_path), "--out", str(ray_out), "--actors", "2", "--batch-size", "8"])
    assert status == 1  # some files failed: the job did not
    err = capsys.readouterr().err
    summary = err.strip().splitlines()[-1]
    assert "Traceback" not in err and summary.startswith(f"{48 + len(named)} file(s): ") and "failed" in summary

    local = {row["path"]: row for row in json.loads(local_out.read_text())}
    remote = _ray_rows(ray_out)
    assert set(remote) == set(local) and len(local) == 48 + len(named)
    for path, row in local.items():
        _same_row(row, remote[path])
    assert all(remote[str(p)]["label"] in ("NORMAL", "PNEUMONIA") for p in originals.rglob("*.jpeg"))
    for case in cases:
        row = remote[str(files[case.name])]
        if case.expect == OK:
            assert row["error"] is None and row["is_chest_xray"], case.name
        elif row["label"] == ERROR_LABEL:
            check_error_message(case, row["error"])
    assert remote[str(bare)]["error"] is None and remote[str(bare)]["is_chest_xray"]
    assert "not found" in remote[str(tmp_path / "gone.png")]["error"]


def test_a_rerun_resumes_and_skips_what_is_written(ray_cluster, originals: Path, model_path: Path,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """file:// URIs in and out; a crash's half-written part is cleared; nothing is scored twice."""
    films = sorted((originals / "NORMAL").iterdir())[:4] + sorted((originals / "PNEUMONIA").iterdir())[:4]
    out = f"file://{tmp_path}/results.parquet"
    manifest = tmp_path / "films.csv"
    with manifest.open("w", newline="") as handle:
        csv.writer(handle).writerows([["patient_note", "path"]] + [["x", f"file://{f}"] for f in films[:3]])
    config = ScaleConfig(actors=1, batch_size=4)
    from pneumoscope.inference.distributed import run_ray
    from pneumoscope.inference.parts import read_parts

    assert run_ray([], manifests=[manifest], model=model_path, out=out, config=config, progress=False) == 0
    folder = tmp_path / "results.parquet"
    first = sorted(p.name for p in folder.iterdir())
    (folder / ".part-deadbeef.parquet.0123.tmp").write_bytes(b"PAR1 half a part, as a crash leaves it")
    capsys.readouterr()

    with (tmp_path / "all.txt").open("w") as handle:
        handle.write("\n".join(f"file://{f}" for f in films) + "\n")
    assert run_ray([], manifests=[tmp_path / "all.txt"], model=model_path, out=out, config=config, progress=False) == 0
    err = capsys.readouterr().err
    assert "3 of 8 input(s) already have a row" in err and err.strip().splitlines()[-1].startswith("5 file(s): 5 scored")
    names = sorted(p.name for p in folder.iterdir())
    assert not any(n.endswith(".tmp") for n in names) and set(first) < set(names)
    rows = read_parts(out).to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(f"file://{f}" for f in films)

    assert run_ray([], manifests=[tmp_path / "all.txt"], model=model_path, out=out, config=config, progress=False) == 0
    assert "0 file(s) left to score" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == names


def test_csv_output_resumes_in_input_order_with_heatmaps(ray_cluster, some_originals: list[Path], model_path: Path,
                                                         tmp_path: Path) -> None:
    from pneumoscope.inference.distributed import run_ray

    out, maps = tmp_path / "results.csv", tmp_path / "maps"
    files = [str(f) for f in some_originals[:3]]
    config = ScaleConfig(actors=1, batch_size=4)
    assert run_ray(files[1:], model=model_path, out=out, config=config, progress=False) == 0
    assert run_ray(files, model=model_path, out=out, heatmaps=maps, config=config, progress=False) == 0
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == COLUMNS and [r["path"] for r in rows] == files
    assert rows[0]["heatmap"] == str(maps / f"{Path(files[0]).stem}_gradcam.png")  # scored in the second run
    assert (maps / f"{Path(files[0]).stem}_gradcam.png").is_file() and rows[1]["heatmap"] == ""
    assert all(r["label"] in ("NORMAL", "PNEUMONIA") for r in rows)


def test_a_killed_scoring_actor_loses_no_film(ray_cluster, chest_xray: Path, model_path: Path, tmp_path: Path) -> None:
    """One actor's process is SIGKILLed on its second batch: Ray restarts it and retries the
    batch; every input then has exactly one row."""
    from pneumoscope.inference.distributed import run_ray
    from pneumoscope.inference.parts import read_parts
    from pneumoscope.inference.ray_pipeline import ScoringActor

    marker = str(tmp_path / "killed")

    class DiesOnce(ScoringActor):  # defined here, so Ray ships it by value to its workers
        calls = 0

        def __call__(self, batch):
            self.calls += 1
            if self.calls == 2:
                try:
                    os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    pass  # another actor already died once: this one goes on
                else:
                    Path(marker).write_text(str(os.getpid()))
                    os.kill(os.getpid(), 9)
            return super().__call__(batch)

    films = sorted((chest_xray / "train" / "NORMAL").iterdir())[:12] + sorted((chest_xray / "train" / "PNEUMONIA").iterdir())[:12]
    out = tmp_path / "results.parquet"
    config = ScaleConfig(actors=2, batch_size=2, files_per_task=4, rows_per_part=4)
    assert run_ray([str(f) for f in films], model=model_path, out=out, config=config, progress=False,
                   actor_class=DiesOnce) == 0
    assert Path(marker).read_text().isdigit(), "no actor was killed"
    paths = read_parts(str(out)).column("path").to_pylist()
    assert sorted(paths) == sorted(map(str, films))  # every film, each exactly once


def test_dicom_patient_fields_never_reach_output_or_ray_logs(ray_cluster, normal_original: Path, model_path: Path,
                                                             tmp_path: Path) -> None:
    from pneumoscope.inference.distributed import run_ray

    grey = reference_grey(normal_original)
    folder = tmp_path / "dicom"
    folder.mkdir()
    fields = {"PatientName": SECRET_NAME, "PatientID": SECRET_ID}
    (folder / "readable.dcm").write_bytes(make_dicom(grey.astype(np.uint16) * 16, **fields))
    (folder / "no pixels.dcm").write_bytes(make_dicom(grey.astype(np.uint16), with_pixels=False, **fields))
    (folder / "junk.dcm").write_bytes(make_dicom(grey.astype(np.uint16), transfer_syntax="1.2.840.10008.1.2.4.90",
                                                 pixel_data=b"\x00junk" * 64, **fields))
    (folder / "bare.dcm").write_bytes(_bare_dicom(grey))
    out = tmp_path / "results.parquet"
    assert run_ray([str(folder)], model=model_path, out=out, config=ScaleConfig(actors=1), progress=False) == 1
    rows = _ray_rows(out)
    assert rows[str(folder / "readable.dcm")]["error"] is None and rows[str(folder / "bare.dcm")]["error"] is None
    assert "no pixel data" in rows[str(folder / "no pixels.dcm")]["error"]

    session = Path(ray_cluster._private.worker._global_node.get_session_dir_path())
    searched = [p for p in [*out.rglob("*"), *session.rglob("*")] if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".log" or p.suffix in (".out", ".err") for p in searched), "no Ray logs were searched"
    for path in searched:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for secret in (SECRET_NAME.encode(), SECRET_ID.encode(), b"Sentinelova"):
            assert secret not in data, f"a patient field reached {path}"


def test_without_ray_the_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch, normal_original: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["predict", str(normal_original), "--engine", "ray"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "pneumoscope[scale]"' in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ray_stays_out_of_the_package_import_and_the_local_engine() -> None:
    code = ("import sys, pneumoscope, pneumoscope.cli, pneumoscope.inference.batch, pneumoscope.inference.sources;"
            "pneumoscope.cli.build_parser(); sys.exit('ray' in sys.modules or 'pyarrow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_local_engine_refuses_ray_only_options(tmp_path: Path, normal_original: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert main(["predict", str(normal_original), "--out", str(tmp_path / "r.parquet")]) == 2
    assert "--engine ray" in capsys.readouterr().err
    assert main(["predict", f"file://{normal_original}"]) == 2
    assert "--engine ray" in capsys.readouterr().err
