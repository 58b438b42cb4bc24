"""The LightningDataModule: patient-level split, decoded uint8 images in memory, balancing.

Images stay uint8 in memory (5,216 x 224 x 224 = 260 MB) and become float only in the batch;
augmentation happens on the batch in the LightningModule, never per image in Python.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from pneumoscope.config import Config
from pneumoscope.data.cache import cached_images
from pneumoscope.data.perturb import SELECTION_SET, stressed_copies
from pneumoscope.data.collection import Record, image_split, patient_split, read_manifest, records_for, require_both_classes, write_manifest


class ImageArrayDataset(Dataset):
    """(1, S, S) uint8 tensors and labels from an in-memory array; with ``clean`` (a bool per
    image) also whether the image is an unperturbed original, so validation can score both views."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, clean: np.ndarray | None = None) -> None:
        with warnings.catch_warnings():
            # The decoded-image cache is a read-only memory map, shared rather than copied (260 MB);
            # nothing ever writes to these tensors (augmentation makes new float batches).
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.clean = None if clean is None else torch.from_numpy(clean.astype(bool))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        if self.clean is None:
            return self.images[index].unsqueeze(0), self.labels[index]
        return self.images[index].unsqueeze(0), self.labels[index], self.clean[index]


def make_split(config: Config, root: str | Path | None = None) -> list[Record]:
    """Train/val split of the training folder of ``root`` (or the config's root).

    Patient-level unless ``data.split_level`` is ``image`` (the leakage study's leaky variant).
    """
    records = records_for(root or config.data.root, "train")
    require_both_classes(records, f"{root or config.data.root} (train)")
    split = image_split if config.data.split_level == "image" else patient_split
    return split(records, config.data.val_fraction, config.data.split_seed)


class XRayDataModule(L.LightningDataModule):
    def __init__(self, config: Config, root: str | Path | None = None, manifest: str | Path | None = None) -> None:
        super().__init__()
        self.config = config
        self.records = read_manifest(manifest) if manifest else make_split(config, root)
        self.train_records = [r for r in self.records if r.split == "train"]
        self.val_records = [r for r in self.records if r.split == "val"]
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def write_manifest(self, path: str | Path) -> None:
        write_manifest(self.records, path)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images uint8 (N, S, S), labels) of ``train`` or ``val``, decoded once and cached."""
        if split not in self._arrays:
            records = self.train_records if split == "train" else self.val_records
            images = np.asarray(cached_images([r.path for r in records], self.config.data.image_size))
            self._arrays[split] = (images, np.array([r.label for r in records]))
        return self._arrays[split]

    def setup(self, stage: str | None = None) -> None:
        self.arrays("train")
        self.arrays("val")

    def class_counts(self) -> np.ndarray:
        return np.bincount([r.label for r in self.train_records], minlength=2)

    def train_dataloader(self) -> DataLoader:
        images, labels = self.arrays("train")
        dataset = ImageArrayDataset(images, labels)
        cfg = self.config.train
        generator = torch.Generator().manual_seed(cfg.seed)
        if cfg.balance == "sampler":
            weights = 1.0 / self.class_counts()[labels]
            sampler = WeightedRandomSampler(torch.as_tensor(weights), len(labels), replacement=True, generator=generator)
            return DataLoader(dataset, cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers, drop_last=True)
        return DataLoader(dataset, cfg.batch_size, shuffle=True, generator=generator, num_workers=cfg.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        images, labels = self.arrays("val")
        clean = np.ones(len(labels), dtype=bool)
        if self.config.train.select_on == "stressed":
            n = len(labels)
            images, labels = stressed_copies(images, labels, SELECTION_SET, seed=self.config.data.split_seed)
            clean = np.arange(len(labels)) < n
        dataset = ImageArrayDataset(images, labels, clean)
        return DataLoader(dataset, 64, shuffle=False, num_workers=self.config.train.num_workers)
