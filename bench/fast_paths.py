"""Candidate fast paths, each measured for speed and for parity with the reference before adoption.

Run: .venv/bin/python bench/fast_paths.py [--model MODEL]   (prints a table; the machine is named)

The reference is the shipped path: a full JPEG decode, the fp32 ONNX graph at the model's size.
Issue 13's bar for adopting a fast path: labels agree on >= 99.5 % of images, |delta p| <= 0.02
(decoding), AUC within 0.002 on the validation split (network), and faster on this machine.

1. Reduced JPEG decoding (libjpeg DCT scaling) at 1x to 4x the network's size, on the 48
   full-resolution originals: ms per file (decode + resize) and parity with a full decode.
2. int8 static quantization (QDQ and QOperator, per-channel weights, calibrated on 96 training
   images) of the bundled model's ONNX export: network images/s at batch 32 against fp32 in the
   same run, and parity on the validation split.
3. The same network fed a smaller input (192, 160 px): images/s and parity on the validation split.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))

from inference import DATA, load, machine  # noqa: E402
from pneumoscope.data.collection import read_manifest, records_for  # noqa: E402
from pneumoscope.data.images import decode_image, resize_square, to_network  # noqa: E402
from pneumoscope.inference.onnx import open_session  # noqa: E402
from pneumoscope.inference.predictor import Predictor  # noqa: E402
from pneumoscope.inference.prepare import PreparedImage  # noqa: E402
from pneumoscope.models.bundle import DEFAULT_MODEL_DIR  # noqa: E402


def _row(name: str, speed: str, ratio: float | None, agree: float, shift: float | None, auc_delta: float | None,
         passes: bool) -> None:
    print(f"{name:<44}{speed:>14}{'' if ratio is None else f'{ratio:.2f}x':>8}{agree * 100:>9.1f}%"
          f"{'' if shift is None else f'{shift:.4f}':>10}{'' if auc_delta is None else f'{auc_delta:+.4f}':>10}"
          f"{'yes' if passes else 'no':>7}")


def decoding(predictor: Predictor, files: list[Path]) -> None:
    size = predictor.image_size

    def prepared(reduce: int | None) -> tuple[list[PreparedImage], float]:
        start, items = time.perf_counter(), []
        for _ in range(2):
            items = []
            for path in files:
                decoded = decode_image(path, reduce_to=reduce)
                items.append(PreparedImage(to_network(decoded.grey, size), decoded.original_size,
                                           decoded.colourfulness, decoded.format, None))
        return items, (time.perf_counter() - start) / (2 * len(files)) * 1000

    reference, full_ms = prepared(None)
    ref = predictor.predict_prepared(reference)
    _row("full decode + resize (reference)", f"{full_ms:.2f} ms", 1.0, 1.0, 0.0, None, True)
    from pneumoscope.data import images

    shipped = images.DRAFT_MARGIN
    for margin in (1, 2, 3, 4):
        images.DRAFT_MARGIN = margin
        try:
            items, ms = prepared(size)
        finally:
            images.DRAFT_MARGIN = shipped
        out = predictor.predict_prepared(items)
        agree = float(np.mean([a.label == b.label for a, b in zip(out, ref)]))
        shift = max(abs(a.probability - b.probability) for a, b in zip(out, ref))
        _row(f"reduced decode, {margin}x network size{' (shipped)' if margin == shipped else ''}", f"{ms:.2f} ms",
             full_ms / ms, agree, shift, None, agree >= 0.995 and shift <= 0.02)


def _rate(session, pixels: np.ndarray, seconds: float = 4.0) -> float:
    feed = {"pixels": pixels[:, None].astype(np.float32)}
    session.run(["logit"], feed)
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        session.run(["logit"], feed)
        done += len(pixels)
    return done / (time.perf_counter() - start)


def _probabilities(session, pixels: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.concatenate([session.run(["logit"], {"pixels": pixels[i : i + 32, None].astype(np.float32)})[0]
                             for i in range(0, len(pixels), 32)])
    return 1.0 / (1.0 + np.exp(-logits.astype(np.float64) / temperature))


def network(predictor: Predictor, net, onnx_path: Path, val_pixels: np.ndarray, labels: np.ndarray, calib: np.ndarray) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    batch = val_pixels[:32]
    reference = open_session(onnx_path)
    ref_rate = _rate(reference, batch)
    ref_p = _probabilities(reference, val_pixels, predictor.temperature)
    ref_auc = roc_auc_score(labels, ref_p)
    _row(f"fp32 ONNX Runtime, {predictor.image_size} px (reference)", f"{ref_rate:.0f} img/s", 1.0, 1.0, None, 0.0, True)

    def judged(name: str, session, pixels: np.ndarray, rate_batch: np.ndarray) -> None:
        rate = _rate(session, rate_batch)
        probs = _probabilities(session, pixels, predictor.temperature)
        agree = float(np.mean((probs >= predictor.threshold) == (ref_p >= predictor.threshold)))
        delta = roc_auc_score(labels, probs) - ref_auc
        _row(name, f"{rate:.0f} img/s", rate / ref_rate, agree, float(np.abs(probs - ref_p).max()), delta,
             agree >= 0.995 and abs(delta) <= 0.002 and rate > ref_rate)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"pixels": calib[i : i + 8, None].astype(np.float32)} for i in range(0, len(calib), 8)])

        def get_next(self):  # noqa: ANN201 - ONNX Runtime's interface
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        for fmt in ("QDQ", "QOperator"):
            out = Path(tmp) / f"int8_{fmt}.onnx"
            quantize_static(str(pre), str(out), Reader(), quant_format=getattr(QuantFormat, fmt), per_channel=True,
                            op_types_to_quantize=["Conv", "MatMul", "Gemm"], activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
            judged(f"int8 static, {fmt}, per-channel", open_session(out), val_pixels, batch)

    for size in (192, 160):
        # The graph's input size is fixed at export; ask the exporter for one at this size.
        smaller = _resized_export(net, size)
        pixels = np.stack([np.asarray(Image.fromarray(p).resize((size, size), Image.Resampling.BILINEAR))
                           for p in val_pixels])
        judged(f"same network fed {size} px", open_session(smaller), pixels, pixels[:32])


def _resized_export(net, size: int) -> Path:
    """An fp32 export of the bundled network whose input is ``size`` px (the network is fully
    convolutional up to a global pool, so only the input shape changes)."""
    import torch

    net = net.eval()
    path = Path(tempfile.mkdtemp()) / f"net_{size}.onnx"

    class Logit(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.net(pixels).reshape(-1)

    with warnings.catch_warnings():  # the legacy exporter's deprecation and folding notes
        warnings.simplefilter("ignore")
        torch.onnx.export(Logit(), torch.zeros(1, 1, size, size), str(path), input_names=["pixels"], output_names=["logit"],
                          dynamic_axes={"pixels": {0: "batch"}}, dynamo=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the bundled model)")
    args = parser.parse_args()
    import onnxruntime

    from pneumoscope.inference.export import cached_export
    from pneumoscope.models.bundle import load_bundle

    predictor = Predictor.load(args.model)
    print(f"machine: {machine()}; onnxruntime {onnxruntime.__version__}; load average {load()}; model {predictor.name}")
    folder = args.model or DEFAULT_MODEL_DIR
    val = [r for r in read_manifest(folder / "split_manifest.csv") if r.split == "val"]
    val_pixels = np.stack([resize_square(decode_image(r.path).grey, predictor.image_size) for r in val])
    labels = np.array([r.label for r in val])
    rng = np.random.default_rng(0)
    train = records_for(DATA / "chest_xray", "train")
    calib = np.stack([resize_square(decode_image(train[i].path).grey, predictor.image_size)
                      for i in rng.choice(len(train), 96, replace=False)])
    originals = sorted((DATA / "originals").glob("*/*.jp*g"))

    print(f"\n{'fast path':<44}{'speed':>14}{'ratio':>8}{'agree':>10}{'max|dp|':>10}{'AUC diff':>10}{'meets':>7}")
    print(f"-- decoding: {len(originals)} full-resolution originals, file -> network input, one process")
    decoding(predictor, originals)
    print(f"-- network: validation split ({len(val)} films), ONNX Runtime, batch 32, all cores")
    bundle = load_bundle(args.model)
    network(predictor, bundle.net, cached_export(bundle), val_pixels, labels, calib)
    print(f"load average at end {load()}")


if __name__ == "__main__":
    main()
