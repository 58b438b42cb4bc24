"""The hostile and odd input corpus, generated at run time from a real radiograph.

One list of cases feeds every entry point (the loader in a fresh process, ``pneumoscope
predict``, the app's handlers and the running server), so each of them is held to the same
expectations: a clear error with the loader's error code and the words that name the problem,
or an answer that agrees with the prediction on the clean pixels.

``expect`` is ``"ok"`` (a chest X-ray encoded oddly: same answer as the clean image),
``"not_xray"`` (readable, but flagged as not a chest X-ray), or the ``code`` of the
:class:`~pneumoscope.data.images.ImageLoadError` the loader must raise.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from _dicom import make_dicom

OK, NOT_XRAY = "ok", "not_xray"


@dataclass(frozen=True)
class Case:
    name: str
    """The file name: some have spaces, non-ASCII letters or a misleading extension."""
    data: bytes
    expect: str
    words: tuple[str, ...] = ()
    """Words an error message must contain (case-insensitive)."""


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_declaring(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A valid-looking PNG whose IHDR declares ``width`` x ``height`` but that holds almost no
    data: a decompression bomb's header, a few hundred bytes on disk."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + chunk(b"IEND", b"")


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame declare ``width`` x ``height`` (max 65535)."""
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b"\x3b"


def _zip_of(name: str, payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, payload)
    return buffer.getvalue()


def _exif_rotated(grey: np.ndarray) -> bytes:
    """Stored turned a quarter anticlockwise, with EXIF orientation 6 ("rotate 90° clockwise to
    display"): upright once the loader applies it, sideways if it does not."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(np.ascontiguousarray(np.rot90(grey, k=1))), "JPEG", quality=95, exif=exif)


def _voi_lut_dicom(grey: np.ndarray) -> bytes:
    from pydicom.dataset import Dataset

    lut = (np.arange(256) * 257).astype(np.uint16)  # 8 bits in -> 16 bits out, linear
    item = Dataset()
    item.add_new(0x00283002, "US", [256, 0, 16])  # LUTDescriptor: entries, first value, bits
    item.add_new(0x00283006, "US", lut.tolist())  # LUTData
    return make_dicom(grey.astype(np.uint16), VOILUTSequence=[item])


def _rle_dicom(grey: np.ndarray) -> bytes:
    """RLE Lossless: compressed, and decodable by pydicom itself without plugins."""
    import pydicom
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(io.BytesIO(make_dicom(grey.astype(np.uint16) * 16, BitsStored=12, HighBit=11)))
    ds.compress(RLELossless, encoding_plugin="pydicom")
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _jpeg2000_dicom(grey: np.ndarray) -> bytes:
    """JPEG 2000 Lossless: compressed, decoded through Pillow's OpenJPEG (no pydicom plugin)."""
    from pydicom.uid import JPEG2000Lossless

    codestream = encode(Image.fromarray(grey), "JPEG2000", irreversible=False)
    return make_dicom(grey, transfer_syntax=JPEG2000Lossless, pixel_data=codestream,
                      BitsAllocated=8, BitsStored=8, HighBit=7)


def _deflated_dicom(grey: np.ndarray) -> bytes:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    return make_dicom(grey.astype(np.uint16) * 16, transfer_syntax=DeflatedExplicitVRLittleEndian)


def _implicit_vr_dicom(grey: np.ndarray) -> bytes:
    from pydicom.uid import ImplicitVRLittleEndian

    return make_dicom(grey.astype(np.uint16) * 16, transfer_syntax=ImplicitVRLittleEndian)


def colour_picture(shape: tuple[int, int]) -> np.ndarray:
    """A colourful non-X-ray picture (hue gradients): readable, but not a radiograph."""
    height, width = shape
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    rgb[..., 1] = np.linspace(255, 0, height, dtype=np.uint8)[:, None]
    rgb[..., 2] = 90
    return rgb


def hostile_corpus(grey: np.ndarray, jpeg: bytes) -> list[Case]:
    """Every case, from ``grey`` (a real radiograph, full 0..255 range) and ``jpeg`` (the bytes
    of a real full-resolution original)."""
    picture = Image.fromarray(grey)
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    png = encode(picture, "PNG")
    compressed_junk = make_dicom(grey.astype(np.uint16), transfer_syntax="1.2.840.10008.1.2.4.90",
                                 pixel_data=b"\x00junk" * 64)
    dicom_bomb = make_dicom(np.zeros((2, 2), np.uint16), Rows=30_000, Columns=30_000)
    return [
        # unusable: the loader's own errors, each naming the problem
        Case("empty.png", b"", "empty", ("empty",)),
        Case("truncated.jpeg", jpeg[: len(jpeg) // 2], "corrupt", ("truncated",)),
        Case("truncated.png", png[: len(png) // 2], "corrupt", ("truncated",)),
        Case("random bytes.jpeg", np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
             "not_an_image", ("not a readable image",)),
        Case("notes.txt", "Patient notes: cough for three days.\n".encode() * 40, "not_an_image", ("not a readable image",)),
        Case("login.html", b"<!DOCTYPE html><html><body><form>Session expired</form></body></html>",
             "not_an_image", ("not a readable image",)),
        Case("scans.zip", _zip_of("scan.jpeg", jpeg), "not_an_image", ("not a readable image",)),
        Case("bomb 30000x30000.png", png_declaring(30_000, 30_000), "too_large", ("too large",)),
        Case("bomb rgb16.png", png_declaring(12_000, 12_000, bit_depth=16, colour_type=2), "too_large", ("too large",)),
        Case("bomb.gif", gif_declaring(65_000, 65_000), "too_large", ("too large",)),
        Case("bomb.dcm", dicom_bomb, "too_large", ("too large",)),
        Case("one pixel.png", encode(Image.new("L", (1, 1), 128), "PNG"), "bad_size", ("too small",)),
        Case("sliver.png", encode(Image.new("L", (3000, 20), 128), "PNG"), "bad_size", ("aspect ratio",)),
        Case("no pixels.dcm", make_dicom(grey.astype(np.uint16), with_pixels=False), "dicom", ("no pixel data",)),
        Case("jpeg2000 junk.dcm", compressed_junk, "dicom", ("JPEG 2000", "cannot be decoded")),
        Case("jpeg-ls.dcm", make_dicom(grey.astype(np.uint16), transfer_syntax="1.2.840.10008.1.2.4.80",
                                       pixel_data=b"\xff\xd8" + bytes(64)),
             "dicom", ("JPEG-LS", "cannot be decoded here", "plugin")),
        # odd but valid: the same radiograph, so the same answer
        Case("16-bit.png", encode(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"), OK),
        Case("16-bit.tiff", encode(Image.fromarray(grey.astype(np.uint16) * 257), "TIFF"), OK),
        Case("rgba.png", encode(Image.fromarray(rgba, "RGBA"), "PNG"), OK),
        Case("palette.png", encode(picture.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), OK),
        Case("cmyk.jpeg", encode(picture.convert("RGB").convert("CMYK"), "JPEG", quality=95), OK),
        Case("animated.gif", encode(picture, "GIF", save_all=True, append_images=[Image.fromarray(255 - grey)]), OK),
        Case("exif rotated.jpeg", _exif_rotated(grey), OK),
        Case("webp lossless.webp", encode(picture, "WEBP", lossless=True), OK),
        Case("jpeg named.png", encode(picture, "JPEG", quality=95), OK),
        Case("monochrome1.dcm", make_dicom(4095 - grey.astype(np.uint16) * 16, photometric="MONOCHROME1"), OK),
        Case("voi lut.dcm", _voi_lut_dicom(grey), OK),
        Case("rescale.dcm", make_dicom((grey.astype(np.int16) * 16 - 2048), RescaleSlope=2, RescaleIntercept=-1024), OK),
        Case("implicit vr.dcm", _implicit_vr_dicom(grey), OK),
        Case("rle lossless.dcm", _rle_dicom(grey), OK),
        Case("jpeg2000 lossless.dcm", _jpeg2000_dicom(grey), OK),
        Case("deflated.dcm", _deflated_dicom(grey), OK),
        Case("Röntgen thorax 胸部 #1 (copy).png", png, OK),
        # readable, but no radiograph: an answer flagged as such, never a confident diagnosis
        Case("holiday photo.jpeg", encode(Image.fromarray(colour_picture(grey.shape)), "JPEG", quality=90), NOT_XRAY),
    ]


def write_corpus(cases: list[Case], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for case in cases:
        path = folder / case.name
        path.write_bytes(case.data)
        paths[case.name] = path
    return paths


def reference_grey(original: Path) -> np.ndarray:
    """The corpus's radiograph: a real original at 384 px wide (aspect kept), full range."""
    from pneumoscope.data.images import decode_image

    full = decode_image(original).grey
    height = round(384 * full.shape[0] / full.shape[1])
    array = np.asarray(Image.fromarray(full).resize((384, height), Image.Resampling.BILINEAR))
    low, high = int(array.min()), int(array.max())
    return ((array.astype(np.float64) - low) * 255.0 / (high - low)).round().astype(np.uint8)


def check_error_message(case: Case, message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, (case.name, message)
    for word in case.words:
        assert word.lower() in message.lower(), f"{case.name}: {word!r} not in {message!r}"
