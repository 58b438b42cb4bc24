"""The LightningModule: loss, class balancing, augmentation, metrics and the optimiser.

The network itself is a plain ``nn.Module`` (``nets.py``); this file only says how to train it.
"""

from __future__ import annotations

import copy

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from pneumoscope.config import Config
from pneumoscope.models.augment import augment_batch
from pneumoscope.models.nets import build_net


class PneumoniaModule(L.LightningModule):
    def __init__(self, config: Config, class_counts: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.config = config
        self.net = build_net(config.model, config.data.image_size)
        counts = torch.tensor(class_counts or (1, 1), dtype=torch.float32)
        # Weight each class by N / (2 * count): both classes then carry equal total weight.
        self.register_buffer("class_weights", counts.sum() / (2 * counts), persistent=False)
        self.train_auc, self.val_auc, self.val_stress_auc = BinaryAUROC(), BinaryAUROC(), BinaryAUROC()
        self.val_subtype_auc = BinaryAUROC()
        self.train_acc, self.val_acc = BinaryAccuracy(), BinaryAccuracy()
        self.best_auc = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch = -1
        self.val_loss_mean = MeanMetric()
        self._last_val: dict[str, float] = {}

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        smoothing = self.config.train.label_smoothing
        targets = labels.float() * (1 - smoothing) + 0.5 * smoothing
        losses = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
        if self.config.train.balance == "class_weights":
            weights = self.class_weights[labels]
            return (losses * weights).sum() / weights.sum()
        return losses.mean()

    def _subtype_loss(self, features: torch.Tensor, subtypes: torch.Tensor) -> torch.Tensor:
        """Bacterial-vs-viral BCE on the films that have a subtype; NORMAL films are masked out, so
        the head never learns anything from them and its output means nothing on them."""
        known = subtypes >= 0
        if not known.any():
            return features.sum() * 0.0  # keeps the head in the graph (DDP needs every parameter used)
        smoothing = self.config.train.label_smoothing
        logits = self.net.subtype(features[known]).float()
        targets = subtypes[known].float() * (1 - smoothing) + 0.5 * smoothing
        return F.binary_cross_entropy_with_logits(logits, targets)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        images, labels, *rest = batch
        pixels = augment_batch(images.float(), self.config.augment)
        pixels = pixels.contiguous(memory_format=torch.channels_last)
        features = self.net.embed(pixels)
        logits = self.net.classify(features)
        loss = self._loss(logits, labels)
        if self.net.has_subtype:
            loss = loss + self.config.train.subtype_weight * self._subtype_loss(features, rest[0])
        probs = torch.sigmoid(logits.detach().float())
        self.train_auc.update(probs, labels)
        self.train_acc.update(probs, labels)
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(labels))
        return loss

    def on_train_epoch_end(self) -> None:
        # Epoch figures go to the trainer's logger (a CSVLogger in training.train: metrics.csv).
        self.log("train_auc", float(self.train_auc.compute()), sync_dist=True)
        self.log("train_acc", float(self.train_acc.compute()), sync_dist=True)
        for metric in (self.train_auc, self.train_acc):
            metric.reset()

    def on_validation_epoch_start(self) -> None:
        self.val_loss_mean.reset()

    @property
    def monitor(self) -> str:
        """The validation metric that picks the checkpoint: clean AUC, or AUC pooled over perturbed copies."""
        return "val_stress_auc" if self.config.train.select_on == "stressed" else "val_auc"

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        images, labels, clean, *rest = batch  # validation batches say which images are unperturbed (datamodule)
        features = self.net.embed(images.float().contiguous(memory_format=torch.channels_last))
        logits = self.net.classify(features)
        probs = torch.sigmoid(logits.float())
        if self.net.has_subtype:
            known = clean & (rest[0] >= 0)
            if known.any():
                self.val_subtype_auc.update(torch.sigmoid(self.net.subtype(features[known]).float()), rest[0][known])
        self.val_stress_auc.update(probs, labels)
        if clean.any():
            loss = self._loss(logits[clean], labels[clean])
            self.val_loss_mean.update(loss, int(clean.sum()))
            self.val_auc.update(probs[clean], labels[clean])
            self.val_acc.update(probs[clean], labels[clean])
            self.log("val_loss", loss, prog_bar=False, on_epoch=True, batch_size=int(clean.sum()), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._last_val = {
            "val_loss": float(self.val_loss_mean.compute()),
            "val_auc": float(self.val_auc.compute()),
            "val_acc": float(self.val_acc.compute()),
        }
        if self.net.has_subtype:
            self._last_val["val_subtype_auc"] = float(self.val_subtype_auc.compute())
            self.log("val_subtype_auc", self._last_val["val_subtype_auc"], prog_bar=True, sync_dist=True)
            self.val_subtype_auc.reset()
        if self.config.train.select_on == "stressed":
            self._last_val["val_stress_auc"] = float(self.val_stress_auc.compute())
            self.log("val_stress_auc", self._last_val["val_stress_auc"], prog_bar=True, sync_dist=True)
        self.log("val_auc", self._last_val["val_auc"], prog_bar=True, sync_dist=True)
        self.log("val_acc", self._last_val["val_acc"], prog_bar=True, sync_dist=True)
        for metric in (self.val_auc, self.val_acc, self.val_stress_auc):
            metric.reset()
        auc = self._last_val[self.monitor]
        if not self.trainer.sanity_checking and auc > self.best_auc:
            self.best_auc, self.best_epoch = auc, self.current_epoch
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.net.state_dict().items()})

    def configure_optimizers(self):
        cfg = self.config.train
        params = [p for p in self.net.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps = self.trainer.estimated_stepping_batches
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=max(1, int(steps)), pct_start=0.15, anneal_strategy="cos"
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
