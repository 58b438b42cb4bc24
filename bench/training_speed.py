"""Training throughput of the two configs' networks: fp32 vs bf16 autocast, NCHW vs channels_last,
frozen vs trainable early blocks; then the improved config's projected wall time.

Run: .venv/bin/python bench/training_speed.py   (prints a table; the machine is named)
Synthetic batches of 32 grey images, AdamW, forward + backward + step; the first steps are
discarded as warm-up. Numbers are images per second on this machine, in this run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from pneumoscope.config import load_config  # noqa: E402
from pneumoscope.models.augment import augment_batch  # noqa: E402
from pneumoscope.models.nets import build_net  # noqa: E402
from pneumoscope.training import machine_description  # noqa: E402


def images_per_second(config_name: str, bf16: bool, channels_last: bool, freeze: int | None = None, steps: int = 6) -> float:
    config = load_config(REPO / "configs" / f"{config_name}.yaml")
    model_cfg = config.model if freeze is None else config.model.model_copy(update={"freeze_blocks": freeze})
    net = build_net(model_cfg.model_copy(update={"pretrained": False}), config.data.image_size)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt).train()
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], 1e-3)
    size = config.data.image_size
    images = torch.randint(0, 256, (32, 1, size, size), dtype=torch.uint8)
    labels = torch.randint(0, 2, (32,)).float()
    timings = []
    for step in range(steps):
        start = time.perf_counter()
        pixels = augment_batch(images.float(), config.augment).contiguous(memory_format=fmt)
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(pixels).float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - start)
    measured = timings[2:]
    return 32 * len(measured) / sum(measured)


def main() -> None:
    print(f"machine: {machine_description()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    from pneumoscope.machine import has_native_bf16

    print(f"native bf16 on this CPU: {'yes' if has_native_bf16() else 'no (AVX2 only)'}")
    rows = []
    for name, freeze_options in (("baseline", [None]), ("improved", [0, None])):
        for freeze in freeze_options:
            for bf16, channels_last in ((False, False), (False, True), (True, True)):
                speed = images_per_second(name, bf16, channels_last, freeze)
                label = name if freeze is None else f"{name} (freeze_blocks={freeze})"
                rows.append((label, "bf16" if bf16 else "fp32", "channels_last" if channels_last else "NCHW", speed))
                print(f"{label:34s} {rows[-1][1]:5s} {rows[-1][2]:14s} {speed:7.1f} img/s", flush=True)
    config = load_config(REPO / "configs" / "improved.yaml")
    best = max(r[3] for r in rows if r[0] == "improved")
    n_train = 4431
    per_epoch = n_train / best
    print(
        f"\nimproved: {config.train.epochs} epochs x {n_train} images at {best:.1f} img/s "
        f"= {config.train.epochs * per_epoch / 60:.1f} min of training steps (+ validation, calibration, OOD fit)"
    )


if __name__ == "__main__":
    main()
