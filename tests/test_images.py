"""The one image loader on real radiographs, on files derived from them at run time, and on
everything a user can upload by mistake.

Real pixels come from ``../shared/data`` (read in place). DICOM, 16-bit PNG, CMYK JPEG,
rotated, animated and hostile files are written into ``tmp_path`` from those pixels, so each
test knows exactly what the loader must return: the pixel contract (one grey ``uint8``
channel, DICOM LUTs and MONOCHROME1 applied, deep bit depths stretched linearly, plain square
resize) and, for anything unusable, an :class:`ImageLoadError` subclass whose message names
the problem, within a time bound.
"""

from __future__ import annotations

import shutil
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from _dicom import make_dicom
from _hostile import encode, png_declaring

from pneumoscope.data.images import (
    DRAFT_MARGIN,
    CorruptImageError,
    DecodedImage,
    DicomError,
    EmptyImageError,
    ImageLoadError,
    ImageSizeError,
    ImageTooLargeError,
    NotAnImageError,
    decode_image,
    load_image,
    resize_square,
)

BAD_INPUT_SECONDS = 5.0
"""A refusal must be quick: the app answers uploads synchronously, a bomb must not stall it."""


# --- helpers ------------------------------------------------------------------------------


def refused(
    source: Any, expected: type[ImageLoadError], *words: str, **kwargs: Any
) -> ImageLoadError:
    """Assert ``load_image(source)`` raises ``expected`` in time, naming the problem in one line."""
    started = time.perf_counter()
    with pytest.raises(ImageLoadError) as caught:
        load_image(source, **kwargs)
    elapsed = time.perf_counter() - started
    error = caught.value
    assert type(error) is expected, f"{type(error).__name__}: {error}"
    assert elapsed < BAD_INPUT_SECONDS, f"refusal took {elapsed:.1f} s"
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), f"{word!r} not in {message!r}"
    return error


def stretched(values: np.ndarray) -> np.ndarray:
    """The loader's contract for deep images: min..max mapped linearly onto 0..255."""
    values = values.astype(np.float64)
    low, high = values.min(), values.max()
    return np.clip(np.rint((values - low) * 255.0 / (high - low)), 0, 255).astype(np.uint8)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xray_224(chest_xray: Path) -> Path:
    return sorted((chest_xray / "train" / "NORMAL").iterdir())[0]


@pytest.fixture(scope="module")
def grey(normal_original: Path) -> np.ndarray:
    """A real radiograph at 256 x 200 (wide, so a transposed axis cannot go unnoticed)."""
    full = decode_image(normal_original).grey
    array = np.asarray(Image.fromarray(full).resize((256, 200), Image.Resampling.BILINEAR))
    assert array.min() == 0 and array.max() == 255, "the tests below assume a full-range image"
    return array


# --- real images ----------------------------------------------------------------------------


def test_shared_224_image_is_grey_uint8_and_unchanged(xray_224: Path) -> None:
    decoded = decode_image(xray_224)
    assert decoded.format == "JPEG" and decoded.original_size == (224, 224)
    assert decoded.grey.dtype == np.uint8 and decoded.grey.shape == (224, 224)
    assert decoded.colourfulness < 1.0, "the shared copies are RGB files with grey content"
    pixels = load_image(xray_224)
    assert pixels.shape == (224, 224) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, decoded.grey)


def test_full_resolution_original(normal_original: Path, chest_xray: Path) -> None:
    with Image.open(normal_original) as image:
        stored_size = image.size
    decoded = decode_image(normal_original)
    assert decoded.original_size == stored_size
    assert decoded.grey.shape == (stored_size[1], stored_size[0])
    reduced = decode_image(normal_original, reduce_to=224)
    assert reduced.original_size == stored_size
    # A reduced decode keeps DRAFT_MARGIN x 224 px a side, and halves (or more) a film twice that size
    # (tests/test_fast_paths.py checks that the larger originals really shrink).
    assert DRAFT_MARGIN * 224 <= min(reduced.grey.shape) <= min(decoded.grey.shape)
    if min(stored_size) >= 2 * DRAFT_MARGIN * 224:
        assert min(reduced.grey.shape) < min(decoded.grey.shape), "JPEG draft decoding should shrink"
    fast, exact = load_image(normal_original), resize_square(decoded.grey, 224)
    assert fast.shape == (224, 224)
    assert mean_diff(fast, exact) < 3.0
    # The shared 224 px copy was made from this very file with a plain resize.
    shared_copy = load_image(chest_xray / "train" / "NORMAL" / normal_original.name)
    assert mean_diff(fast, shared_copy) < 6.0


def test_load_image_other_sizes_and_sources(xray_224: Path) -> None:
    data = xray_224.read_bytes()
    from_path, from_bytes = load_image(xray_224, 96), load_image(data, 96)
    assert from_path.shape == (96, 96)
    np.testing.assert_array_equal(from_path, from_bytes)
    np.testing.assert_array_equal(load_image(bytearray(data), 96), from_bytes)
    with Image.open(xray_224) as image:
        np.testing.assert_array_equal(load_image(image, 96), from_bytes)


def test_path_with_spaces_and_unicode(tmp_path: Path, xray_224: Path) -> None:
    folder = tmp_path / "my scans — ünïcødé"
    folder.mkdir()
    odd = folder / "Röntgen thorax 胸部 #1 (copy).jpeg"
    shutil.copyfile(xray_224, odd)  # a derived file in tmp_path, never in the repository
    np.testing.assert_array_equal(load_image(odd), load_image(xray_224))
    refused(folder / "absent 胸部.jpeg", ImageLoadError, "not found", "absent 胸部.jpeg")
    refused(folder, ImageLoadError, "not a file")


# --- other encodings of the same pixels ------------------------------------------------------


def test_16_bit_png_matches_the_8_bit_version(tmp_path: Path, grey: np.ndarray) -> None:
    eight, sixteen = tmp_path / "eight.png", tmp_path / "sixteen.png"
    Image.fromarray(grey).save(eight)
    Image.fromarray((grey.astype(np.uint16) * 257)).save(sixteen)
    with Image.open(sixteen) as image:
        assert image.mode in ("I;16", "I"), image.mode
    decoded = decode_image(sixteen)
    assert decoded.grey.dtype == np.uint8 and decoded.grey.shape == grey.shape
    assert max_diff(decoded.grey, grey) <= 1
    assert max_diff(load_image(sixteen), load_image(eight)) <= 1


def test_12_bit_values_in_a_16_bit_png_are_stretched(tmp_path: Path, grey: np.ndarray) -> None:
    """A detector's 12 bits stored in 16 (values 100..4180) must not come out nearly black."""
    path = tmp_path / "twelve.png"
    Image.fromarray(grey.astype(np.uint16) * 16 + 100).save(path)
    assert max_diff(decode_image(path).grey, grey) <= 1


def test_rgba_is_composited_on_black(tmp_path: Path, grey: np.ndarray) -> None:
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    rgba[:50, :, 3] = 0  # a transparent band: background, i.e. black in a radiograph
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    decoded = decode_image(path).grey
    assert (decoded[:50] == 0).all()
    np.testing.assert_array_equal(decoded[50:], grey[50:])


def test_palette_png(tmp_path: Path, grey: np.ndarray) -> None:
    path = tmp_path / "palette.png"
    Image.fromarray(grey).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(path)
    with Image.open(path) as image:
        assert image.mode == "P"
    assert mean_diff(decode_image(path).grey, grey) < 2.0


def test_cmyk_jpeg(tmp_path: Path, grey: np.ndarray) -> None:
    path = tmp_path / "cmyk.jpeg"
    Image.fromarray(grey).convert("RGB").convert("CMYK").save(path, quality=95)
    with Image.open(path) as image:
        assert image.mode == "CMYK"
    decoded = decode_image(path)
    assert decoded.grey.shape == grey.shape
    assert mean_diff(decoded.grey, grey) < 3.0
    assert decoded.colourfulness < 5.0


def test_exif_orientation_is_applied(tmp_path: Path, grey: np.ndarray) -> None:
    """Orientation 6 means 'rotate 90 degrees clockwise to display': phones write it, and an
    X-ray shown sideways to the network is a different image."""
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpeg"
    Image.fromarray(grey).save(path, quality=95, exif=exif)
    decoded = decode_image(path)
    assert decoded.original_size == (256, 200), "original_size is what the file stores"
    assert decoded.grey.shape == (256, 200), "displayed upright: height and width swapped"
    clockwise, anticlockwise = np.rot90(grey, k=-1), np.rot90(grey, k=1)
    assert mean_diff(decoded.grey, clockwise) < 3.0
    assert mean_diff(decoded.grey, anticlockwise) > 20.0


def test_animated_gif_uses_the_first_frame(tmp_path: Path, grey: np.ndarray) -> None:
    path = tmp_path / "animated.gif"
    first, second = Image.fromarray(grey), Image.fromarray(255 - grey)
    first.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    with Image.open(path) as image:
        assert image.n_frames == 2
    decoded = decode_image(path)
    assert decoded.format == "GIF"
    assert max_diff(decoded.grey, grey) <= 1


@pytest.mark.parametrize(("fmt", "suffix", "params"), [
    ("TIFF", ".tif", {}),
    ("TIFF", ".tiff", {"compression": "tiff_lzw"}),
    ("BMP", ".bmp", {}),
])
def test_lossless_formats_are_exact(tmp_path: Path, grey: np.ndarray, fmt: str, suffix: str, params: dict) -> None:
    for mode in ("L", "RGB"):
        path = tmp_path / f"image-{mode}{suffix}"
        Image.fromarray(grey).convert(mode).save(path, format=fmt, **params)
        decoded = decode_image(path)
        assert decoded.format == fmt
        np.testing.assert_array_equal(decoded.grey, grey)


def test_numpy_arrays(grey: np.ndarray) -> None:
    np.testing.assert_array_equal(decode_image(grey).grey, grey)
    np.testing.assert_array_equal(decode_image(np.dstack([grey] * 3)).grey, grey)
    assert max_diff(decode_image(grey.astype(np.float32) / 255.0).grey, grey) <= 1
    with pytest.raises(ImageSizeError, match="not an image"):
        decode_image(np.zeros((4, 4, 4, 4), dtype=np.uint8))


# --- the grey contract ---------------------------------------------------------------------


def test_colour_photo_is_flagged_and_xray_is_not(tmp_path: Path, grey: np.ndarray, xray_224: Path) -> None:
    """Colourfulness feeds the out-of-distribution check: a colour picture is no radiograph."""
    import matplotlib

    false_colour = (matplotlib.colormaps["viridis"](grey)[..., :3] * 255).astype(np.uint8)
    hues = np.zeros((200, 256, 3), dtype=np.uint8)
    hues[..., 0] = np.linspace(0, 255, 256, dtype=np.uint8)[None, :]
    hues[..., 1] = np.linspace(255, 0, 200, dtype=np.uint8)[:, None]
    hues[..., 2] = 90
    for name, rgb in (("false-colour.jpeg", false_colour), ("gradient.jpeg", hues)):
        path = tmp_path / name
        Image.fromarray(rgb).save(path, quality=90)
        decoded = decode_image(path)
        assert decoded.colourfulness > 10, name
        assert decoded.grey.dtype == np.uint8 and decoded.grey.ndim == 2
    assert decode_image(xray_224).colourfulness < 1.0
    assert decode_image(grey).colourfulness == 0.0


# --- DICOM -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_dicom_rescale_slope_intercept(tmp_path: Path, grey: np.ndarray, signed: bool) -> None:
    stored = grey.astype(np.int32) * 16 + (-2048 if signed else 100)
    stored = stored.astype(np.int16 if signed else np.uint16)
    data = make_dicom(stored, RescaleSlope=2, RescaleIntercept=-1024)
    path = tmp_path / "rescaled.dcm"
    path.write_bytes(data)
    decoded = decode_image(path)
    assert decoded.format == "DICOM" and decoded.original_size == (256, 200)
    assert decoded.grey.dtype == np.uint8 and decoded.grey.shape == grey.shape
    assert max_diff(decoded.grey, grey) <= 1
    # Bytes with the DICM magic are recognised without a file name.
    np.testing.assert_array_equal(decode_image(data).grey, decoded.grey)
    assert load_image(path).shape == (224, 224)


def test_dicom_monochrome1_is_inverted(grey: np.ndarray) -> None:
    """MONOCHROME1 means high values are dark: the output must be the exact inverse."""
    stored = grey.astype(np.uint16) * 16 + 100
    plain = decode_image(make_dicom(stored, RescaleSlope=2, RescaleIntercept=-1024)).grey
    inverse = decode_image(make_dicom(stored, photometric="MONOCHROME1", RescaleSlope=2, RescaleIntercept=-1024)).grey
    np.testing.assert_array_equal(inverse, 255 - plain)


def test_dicom_window_center_width(grey: np.ndarray) -> None:
    stored = grey.astype(np.uint16) * 16 + 100
    values = 2.0 * stored - 1024  # after the modality LUT
    center, width = 2.0 * (128 * 16 + 100) - 1024, 2.0 * 16 * 100  # a window over grey 78..178
    decoded = decode_image(
        make_dicom(stored, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=center, WindowWidth=width)
    ).grey
    # DICOM PS3.3 C.11.2.1.2.1 linear window, then the loader's stretch to 0..255.
    expected = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1) * 255
    assert max_diff(decoded, np.rint(expected).astype(np.uint8)) <= 1
    assert (decoded[grey < 70] == 0).all() and (decoded[grey > 186] == 255).all()
    assert mean_diff(decoded, grey) > 10, "the window must change the image"


def test_dicom_voi_lut_sequence(grey: np.ndarray) -> None:
    from pydicom.dataset import Dataset

    lut = np.rint(65535 * (np.arange(256) / 255.0) ** 2).astype(np.uint16)  # a gamma-2 curve
    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 16])  # LUTDescriptor: entries, first value, bits
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    decoded = decode_image(make_dicom(grey.astype(np.uint16), VOILUTSequence=[item])).grey
    assert max_diff(decoded, stretched(lut[grey])) <= 1
    assert mean_diff(decoded, grey) > 10, "the LUT must change the image"


def test_dicom_multiframe_uses_the_first_frame(grey: np.ndarray) -> None:
    frames = np.stack([grey, 255 - grey]).astype(np.uint16)
    decoded = decode_image(make_dicom(frames, frames=2))
    assert decoded.grey.shape == grey.shape
    assert max_diff(decoded.grey, grey) <= 1


def test_dicom_without_pixel_data(tmp_path: Path, grey: np.ndarray) -> None:
    path = tmp_path / "report.dcm"
    path.write_bytes(make_dicom(grey.astype(np.uint16), with_pixels=False))
    error = refused(path, DicomError, "no pixel data")
    assert error.code == "dicom"


@pytest.mark.parametrize(("syntax", "name"), [
    ("1.2.840.10008.1.2.4.90", "JPEG 2000"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline"),
])
def test_dicom_compressed_junk_is_a_clear_error(tmp_path: Path, grey: np.ndarray, syntax: str, name: str) -> None:
    path = tmp_path / "compressed.dcm"
    path.write_bytes(make_dicom(grey.astype(np.uint16), transfer_syntax=syntax, pixel_data=b"\x00junk" * 64))
    error = refused(path, DicomError, name, "cannot be decoded")
    assert " at 0x" not in str(error)


def test_not_a_dicom_with_dicom_suffix(tmp_path: Path) -> None:
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"this is a text file, not a DICOM dataset\n" * 20)
    refused(path, DicomError, "dicom")


# --- bad inputs ----------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpeg"
    path.write_bytes(b"")
    assert refused(path, EmptyImageError, "empty").code == "empty"


def test_truncated_jpeg(tmp_path: Path, pneumonia_original: Path) -> None:
    data = pneumonia_original.read_bytes()
    path = tmp_path / "truncated.jpeg"
    path.write_bytes(data[: len(data) // 2])
    assert refused(path, CorruptImageError, "truncated").code == "corrupt"


def test_truncated_png(tmp_path: Path, grey: np.ndarray) -> None:
    data = encode(Image.fromarray(grey), "PNG")
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    refused(path, CorruptImageError, "truncated")


@pytest.mark.parametrize(("name", "make"), [
    ("random.jpeg", lambda: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
    ("notes.txt", lambda: "Patient notes: cough for three days.\n".encode() * 40),
    ("notes.jpeg", lambda: "Patient notes: cough for three days.\n".encode() * 40),
    ("page.png", lambda: b"<!DOCTYPE html><html><head><title>Login</title></head><body>Session expired</body></html>"),
])
def test_not_an_image(tmp_path: Path, name: str, make: Callable[[], bytes]) -> None:
    path = tmp_path / name
    path.write_bytes(make())
    error = refused(path, NotAnImageError, "not a readable image")
    assert error.code == "not_an_image"


def test_zip_archive_is_not_an_image(tmp_path: Path, xray_224: Path) -> None:
    path = tmp_path / "scans.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(xray_224, arcname="scan.jpeg")
    refused(path, NotAnImageError, "not a readable image")
    renamed = tmp_path / "scan.jpeg"
    shutil.copyfile(path, renamed)
    refused(renamed, NotAnImageError, "not a readable image")


@pytest.mark.parametrize(("width", "height", "words"), [
    (30_000, 30_000, ("too large", "decompression bomb")),  # over Pillow's hard limit
    (10_000, 10_000, ("10000 x 10000", "decompression bomb")),  # Pillow only warns here
    (9_000, 9_500, ("9000 x 9500", "budget")),  # under Pillow's limit, over ours
])
def test_decompression_bomb_header(tmp_path: Path, width: int, height: int, words: tuple[str, ...]) -> None:
    path = tmp_path / f"bomb-{width}x{height}.png"
    path.write_bytes(png_declaring(width, height))
    assert path.stat().st_size < 1024, "the bomb is small on disk; only its header is huge"
    assert refused(path, ImageTooLargeError, *words).code == "too_large"


def test_pixel_budget_is_configurable(xray_224: Path) -> None:
    refused(xray_224, ImageTooLargeError, "224 x 224", "budget", max_pixels=10_000)


@pytest.mark.parametrize(("size", "words"), [
    ((1, 1), ("1 x 1", "too small")),
    ((2000, 20), ("2000 x 20", "aspect ratio")),
])
def test_absurd_sizes(tmp_path: Path, size: tuple[int, int], words: tuple[str, ...]) -> None:
    path = tmp_path / "odd.png"
    Image.new("L", size, 128).save(path)
    assert refused(path, ImageSizeError, *words).code == "bad_size"


def test_decoded_image_type(xray_224: Path) -> None:
    assert isinstance(decode_image(xray_224), DecodedImage)
