"""Build DICOM files in memory for the tests: one builder for every DICOM a test needs."""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def make_dicom(
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    transfer_syntax: str | None = None,
    pixel_data: bytes | None = None,
    with_pixels: bool = True,
    frames: int = 1,
    **attributes: Any,
) -> bytes:
    """A DICOM file with file meta, built with pydicom from an integer array (rows, cols)
    or (frames, rows, cols); uncompressed Explicit VR Little Endian unless told otherwise."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    signed = stored.dtype.kind == "i"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for name, value in attributes.items():
        setattr(ds, name, value)
    if with_pixels:
        if pixel_data is not None:
            from pydicom.encaps import encapsulate

            ds.PixelData = encapsulate([pixel_data])
            ds["PixelData"].VR = "OB"
        else:
            ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
