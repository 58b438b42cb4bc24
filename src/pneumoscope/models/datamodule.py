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
from pneumoscope.data.collection import (
    Record, image_split, patient_split, read_manifest, records_for, require_both_classes, subtype_targets, write_manifest,
)


class ImageArrayDataset(Dataset):
    """(1, S, S) uint8 tensors and labels from an in-memory array; with ``clean`` (a bool per
    image) also whether the image is an unperturbed original, so validation can score both views;
    with ``subtypes`` (0 viral, 1 bacterial, -1 none) last, the subtype head's masked target."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, clean: np.ndarray | None = None,
        subtypes: np.ndarray | None = None,
    ) -> None:
        with warnings.catch_warnings():
            # The decoded-image cache is a read-only memory map, shared rather than copied (260 MB);
            # nothing ever writes to these tensors (augmentation makes new float batches).
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.clean = None if clean is None else torch.from_numpy(clean.astype(bool))
        self.subtypes = None if subtypes is None else torch.from_numpy(subtypes.astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        item = [self.images[index].unsqueeze(0), self.labels[index]]
        if self.clean is not None:
            item.append(self.clean[index])
        if self.subtypes is not None:
            item.append(self.subtypes[index])
        return tuple(item)


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

    def subtypes(self, split: str) -> np.ndarray | None:
        """The subtype head's targets of ``train`` or ``val`` (None when the model has no such head)."""
        if not self.config.model.subtype_head:
            return None
        return subtype_targets(self.train_records if split == "train" else self.val_records)

    def setup(self, stage: str | None = None) -> None:
        self.arrays("train")
        self.arrays("val")

    def class_counts(self) -> np.ndarray:
        return np.bincount([r.label for r in self.train_records], minlength=2)

    def sampling_groups(self) -> np.ndarray:
        """What the balanced sampler draws equally often: the class, or NORMAL / viral / bacterial
        (PNEUMONIA films of unknown subtype form a fourth group) with ``sampler_subtype``."""
        _, labels = self.arrays("train")
        if self.config.train.balance != "sampler_subtype":
            return labels
        return np.where(labels == 1, 1 + self.subtypes("train") % 3, 0)

    def train_dataloader(self) -> DataLoader:
        images, labels = self.arrays("train")
        dataset = ImageArrayDataset(images, labels, subtypes=self.subtypes("train"))
        cfg = self.config.train
        generator = torch.Generator().manual_seed(cfg.seed)
        if cfg.balance in ("sampler", "sampler_subtype"):
            groups = self.sampling_groups()
            weights = 1.0 / np.bincount(groups)[groups]
            sampler = WeightedRandomSampler(torch.as_tensor(weights), len(labels), replacement=True, generator=generator)
            return DataLoader(dataset, cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers, drop_last=True)
        return DataLoader(dataset, cfg.batch_size, shuffle=True, generator=generator, num_workers=cfg.num_workers, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        images, labels = self.arrays("val")
        subtypes = self.subtypes("val")
        clean = np.ones(len(labels), dtype=bool)
        if self.config.train.select_on == "stressed":
            n = len(labels)
            images, labels = stressed_copies(images, labels, SELECTION_SET, seed=self.config.data.split_seed)
            clean = np.arange(len(labels)) < n
            subtypes = None if subtypes is None else np.tile(subtypes, len(labels) // n)
        dataset = ImageArrayDataset(images, labels, clean, subtypes)
        return DataLoader(dataset, 64, shuffle=False, num_workers=self.config.train.num_workers)
