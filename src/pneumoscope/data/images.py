"""The one image loader: every path (training cache, evaluation, prediction, the web app) reads
pixels through :func:`decode_image`, so a fix here fixes them all.

The pixel contract: a file becomes one grey ``uint8`` channel (0 = black), with DICOM rescale,
VOI LUT and MONOCHROME1 inversion applied and deeper bit depths stretched linearly to 8 bits;
then it is resized to a square with a plain (aspect-ignoring) resize, exactly as the shared
224 x 224 training copies were made. Anything that cannot honour the contract is refused with
an :class:`ImageLoadError` whose message names the problem; nothing else escapes.
"""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from pneumoscope.errors import ImageLoadError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated upload is an error, never half an X-ray

DEFAULT_MAX_PIXELS = 80_000_000
"""About 9,000 x 9,000: larger than any radiograph detector, far below what exhausts memory."""
MIN_SIDE = 16
MAX_ASPECT = 8.0
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP")
"""Pillow parsers an upload may reach; rarely used readers (PSD, DDS, QOI, ...) are where fuzzing
found crashes, and no radiograph comes in them."""
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"} | DICOM_SUFFIXES)
"""File names taken as images when a folder is scanned (the dataset, ``pneumoscope predict FOLDER``,
the app's examples): the endings of ``ACCEPTED_FORMATS`` and DICOM. A file named explicitly is
judged by its content whatever its name."""
DRAFT_MARGIN = 3
"""A reduced JPEG decode keeps at least three times the network's size a side. At 1x (a 1/4 or 1/8
DCT scale for most radiographs) libjpeg's scaled inverse DCT shifted a model's probability by up to
0.030 on the 48 originals and flipped a label next to the threshold. Since the resized film is
re-encoded as the training copies were (``as_training_copy``), the JPEG quantiser magnifies small
pixel differences: at 2x the bundled ensemble moved by up to 0.027, at 3x by 0.003 (decoding 8 ms a film against 7),
at 4x by 0.001 (11 ms). Measured 2026-12-03 on the 48 originals; tests/test_fast_paths.py holds
issue 13's 0.02 bar."""

# Pillow's own bomb threshold (~89 Mpx, a process-wide warning) must not decide: ``max_pixels``
# is the budget, checked by ``_check_size`` from the header before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None


class _OneLine(logging.Filter):
    """pydicom logs each decoder plugin that fails with its full traceback (``LOGGER.exception``);
    that failure becomes a one-line :class:`DicomError` here, so a hostile upload must not put
    a stack trace in the server's log either: the record keeps its message, loses the trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_OneLine())


class EmptyImageError(ImageLoadError):
    code = "empty"


class NotAnImageError(ImageLoadError):
    code = "not_an_image"


class CorruptImageError(ImageLoadError):
    code = "corrupt"


class ImageTooLargeError(ImageLoadError):
    code = "too_large"


class ImageSizeError(ImageLoadError):
    code = "bad_size"


class DicomError(ImageLoadError):
    code = "dicom"


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image before resizing, with what the out-of-distribution check needs."""

    grey: np.ndarray
    """uint8 (H, W); may be a reduced-resolution decode when ``reduce_to`` was given."""
    original_size: tuple[int, int]
    """(width, height) as stored in the file."""
    colourfulness: float
    """Hasler-Suesstrunk colourfulness of the RGB content (0 for grey images; photos score > 15)."""
    format: str


ImageSource = str | Path | bytes | bytearray | Image.Image | np.ndarray


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce_to: int | None = None,
) -> DecodedImage:
    """Decode any supported source into grey uint8.

    ``reduce_to``: the size the caller will resize to. A JPEG then decodes at the smallest DCT
    scale that keeps ``DRAFT_MARGIN`` times that many pixels a side, which skips most of the
    inverse DCT and leaves a small resize (see ``DRAFT_MARGIN`` for why not less).
    """
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, Image.Image):
        return _from_pil(source, max_pixels, reduce_to, fmt="PIL")
    data, name = _read_bytes(source)
    if _looks_like_dicom(data, name):
        return _from_dicom(data, max_pixels)
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image is too large to decode safely ({_describe(exc)})") from None
    except UnidentifiedImageError:
        raise NotAnImageError(
            "file is not a readable image (expected PNG, JPEG, BMP, TIFF, GIF, WEBP or DICOM)"
        ) from None
    except MemoryError:
        raise ImageTooLargeError("image header asks for more memory than is available") from None
    except Exception as exc:  # noqa: BLE001
        # Pillow's format plugins raise TypeError, IndexError, struct.error,
        # NotImplementedError, ... on damaged headers (found by tests/test_fuzz_loader.py).
        raise CorruptImageError(f"image header is damaged: {_describe(exc)}") from None
    return _from_pil(image, max_pixels, reduce_to, fmt=image.format or "unknown")


def resize_square(grey: np.ndarray, size: int) -> np.ndarray:
    """Plain resize to ``size`` x ``size`` (no crop, aspect not kept), as the training copies were made.

    Bilinear with antialiasing: of the filters Pillow offers, it reproduces the shared 224 px copies
    from their 48 originals most closely (mean |difference| 2.2 grey levels, against 2.5 for bicubic,
    2.8 for Lanczos; the rest is their JPEG noise), so a full-resolution upload reaches the network
    as the training images did."""
    if grey.shape == (size, size):
        return grey
    return np.asarray(Image.fromarray(grey).resize((size, size), Image.Resampling.BILINEAR))


TRAINING_JPEG_QUALITY = 75
"""The shared training copies are quality-75 JPEGs: the network has only ever seen films with
their block artefacts."""


def as_training_copy(pixels: np.ndarray, quality: int = TRAINING_JPEG_QUALITY) -> np.ndarray:
    """Network-sized uint8 pixels, (S, S) or (N, S, S), re-encoded as the training copies were: a
    quality-75 JPEG round trip.

    A full-resolution upload, resized here, lacked the copies' compression, and the network read
    the difference: on the 48 originals against their own 224 px copies, the median OOD distance
    gap fell from 4.5 to 1.8 and the largest probability gap from 0.28 to 0.11 with the round trip
    (bench/originals.py). On a training copy itself it is a no-op (same quantisation tables, same
    8 x 8 grid: 0 grey levels changed), so validation figures stand. Costs about 0.3 ms a film.
    """
    if pixels.ndim == 3:
        return np.stack([as_training_copy(p, quality) for p in pixels]) if len(pixels) else pixels
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as reread:
        return np.asarray(reread.convert("L"))


def to_network(grey: np.ndarray, size: int) -> np.ndarray:
    """A decoded film as the network takes it: square-resized, in the training copies' format."""
    return as_training_copy(resize_square(grey, size))


def load_image(source: ImageSource, size: int = 224, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode and resize: the network's input as uint8 (size, size)."""
    return resize_square(decode_image(source, max_pixels=max_pixels, reduce_to=size).grey, size)


def read_file(path: Path) -> bytes:
    """A local file's bytes, or the loader's message naming what is wrong (missing, not a file,
    unreadable): one wording for every engine that reads files (the Ray pipeline too)."""
    if not path.exists():
        raise ImageLoadError(f"file not found: {path.name}")
    if not path.is_file():
        raise ImageLoadError(f"not a file: {path.name}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(f"cannot read {path.name}: {exc.strerror}") from None


def _read_bytes(source: str | Path | bytes | bytearray) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        data, name = bytes(source), ""
    else:
        data, name = read_file(Path(source)), Path(source).name
    if not data:
        raise EmptyImageError("file is empty (0 bytes)")
    return data, name


_OBJECT_REPR = re.compile(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>")


def _describe(exc: BaseException) -> str:
    """A parser's exception as one short line for a user: no memory addresses, no newlines."""
    text = " ".join(_OBJECT_REPR.sub("", str(exc)).split())
    text = text or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _looks_like_dicom(data: bytes, name: str) -> bool:
    return data[128:132] == b"DICM" or Path(name).suffix.lower() in DICOM_SUFFIXES


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is too large: it declares {width} x {height} pixels, over the budget of {max_pixels:,} "
            "(refused as a possible decompression bomb)"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageSizeError(f"image is {width} x {height} pixels: too small to be a radiograph")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise ImageSizeError(f"image is {width} x {height} pixels: aspect ratio is absurd for a radiograph")


def _from_pil(image: Image.Image, max_pixels: int, reduce_to: int | None, fmt: str) -> DecodedImage:
    width, height = image.size
    _check_size(width, height, max_pixels)
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)
        if reduce_to and image.format == "JPEG":
            image.draft(None, (reduce_to * DRAFT_MARGIN, reduce_to * DRAFT_MARGIN))
        image.load()
        image = ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"image is too large to decode safely ({_describe(exc)})") from None
    except MemoryError:
        raise ImageTooLargeError(f"image of {width} x {height} pixels needs more memory than is available") from None
    except Exception as exc:  # noqa: BLE001
        # Decoders raise OSError for most damage but also IndexError (QOI), struct.error
        # (GIF frame count), TypeError (TIFF offsets): all mean the same to the user.
        raise CorruptImageError(f"image data is truncated or corrupt: {_describe(exc)}") from None
    return _grey_from_decoded(image, (width, height), fmt)


def _grey_from_decoded(image: Image.Image, size: tuple[int, int], fmt: str) -> DecodedImage:
    mode = image.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        grey = _stretch_to_uint8(np.asarray(image, dtype=np.float64))
        return DecodedImage(grey, size, 0.0, fmt)
    if mode == "L":
        return DecodedImage(np.asarray(image, dtype=np.uint8).copy(), size, 0.0, fmt)
    if mode == "1":
        return DecodedImage(np.asarray(image.convert("L"), dtype=np.uint8), size, 0.0, fmt)
    if mode in ("LA", "La"):
        image = image.convert("L")
        return DecodedImage(np.asarray(image, dtype=np.uint8).copy(), size, 0.0, fmt)
    if mode == "RGBA" or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        rgb = Image.alpha_composite(background, rgba).convert("RGB")
    else:
        rgb = image.convert("RGB")
    grey = np.asarray(rgb.convert("L"), dtype=np.uint8)
    return DecodedImage(grey, size, colourfulness(np.asarray(rgb)), fmt)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colourfulness; a radiograph saved as RGB scores about 0."""
    step = max(1, max(rgb.shape[:2]) // 256)
    small = rgb[::step, ::step].astype(np.float32)
    rg = small[..., 0] - small[..., 1]
    yb = 0.5 * (small[..., 0] + small[..., 1]) - small[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise CorruptImageError("image holds no finite pixel values")
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(values, nan=low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _from_array(array: np.ndarray) -> DecodedImage:
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        if array.shape[2] == 1:
            array = array[..., 0]
    elif array.ndim != 2:
        raise ImageSizeError(f"array of shape {array.shape} is not an image (expected H x W or H x W x 3)")
    height, width = array.shape[:2]
    _check_size(width, height, DEFAULT_MAX_PIXELS)
    if array.ndim == 2:
        grey = array if array.dtype == np.uint8 else _stretch_to_uint8(array.astype(np.float64))
        return DecodedImage(np.ascontiguousarray(grey), (width, height), 0.0, "array")
    rgb = array[..., :3]
    if rgb.dtype != np.uint8:
        rgb = _stretch_to_uint8(rgb.astype(np.float64))
    return _grey_from_decoded(Image.fromarray(np.ascontiguousarray(rgb)), (width, height), "array")


def _from_dicom(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode a DICOM file; every failure of the parser becomes a :class:`DicomError`.

    pydicom parses elements lazily, so a damaged element (an unknown VR, a value whose length
    does not fit its type) raises only when it is first read, from anywhere below, and with
    whatever exception type the converter used (NotImplementedError, BytesLengthException,
    struct.error, ...: found by tests/test_fuzz_loader.py).
    """
    try:
        return _decode_dicom(data, max_pixels)
    except ImageLoadError:
        raise
    except MemoryError:
        raise ImageTooLargeError("DICOM pixel data needs more memory than is available") from None
    except Exception as exc:  # noqa: BLE001
        raise DicomError(f"DICOM file is damaged or unsupported: {_describe(exc)}") from None


def _transfer_syntax_name(ds: Any) -> str:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return str(getattr(syntax, "name", syntax) or "unknown transfer syntax")


def _decode_dicom(data: bytes, max_pixels: int) -> DecodedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise DicomError(f"DICOM file cannot be parsed: {_describe(exc)}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise DicomError("DICOM file has no pixel data (not an image object)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    _check_size(cols, rows, max_pixels)
    if rows * cols * frames > max_pixels:
        raise ImageTooLargeError(f"DICOM holds {frames} frames of {cols} x {rows}: over the pixel budget")
    try:
        pixels = ds.pixel_array
    except NotImplementedError:
        raise DicomError(
            f"DICOM transfer syntax '{_transfer_syntax_name(ds)}' cannot be decoded here "
            "(install a pydicom pixel-data plugin such as pylibjpeg, or send an uncompressed DICOM)"
        ) from None
    except (RuntimeError, ValueError, AttributeError, TypeError, KeyError, OSError, EOFError) as exc:
        if "missing dependencies" in str(exc):  # JPEG-LS, HTJ2K, ...: no decoder installed at all
            raise DicomError(
                f"DICOM transfer syntax '{_transfer_syntax_name(ds)}' cannot be decoded here: it needs a pydicom "
                "pixel-data plugin (pylibjpeg or gdcm) that is not installed; send an uncompressed DICOM"
            ) from None
        # Compressed pixel data that the available plugins fail on lands here too
        # (RuntimeError listing every plugin's failure): name the transfer syntax.
        raise DicomError(
            f"DICOM pixel data ({_transfer_syntax_name(ds)}) cannot be decoded: {_describe(exc)}"
        ) from None
    if frames > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        rgb = _stretch_to_uint8(pixels.astype(np.float64)) if pixels.dtype != np.uint8 else pixels
        return _grey_from_decoded(Image.fromarray(np.ascontiguousarray(rgb[..., :3])), (cols, rows), "DICOM")
    values = _dicom_values(ds, pixels)
    grey = _stretch_to_uint8(values)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return DecodedImage(grey, (cols, rows), 0.0, "DICOM")


def _dicom_values(ds: Any, pixels: np.ndarray) -> np.ndarray:
    """Modality LUT (rescale slope/intercept) then the VOI LUT or window the file asks for."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        values = apply_modality_lut(pixels, ds)
        if "VOILUTSequence" in ds or "WindowCenter" in ds:
            values = apply_voi_lut(values, ds, index=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise DicomError(f"DICOM LUT or window cannot be applied: {_describe(exc)}") from None
    return np.asarray(values, dtype=np.float64)
