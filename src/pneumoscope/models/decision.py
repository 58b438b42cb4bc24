"""From a logit to a decision: temperature, probability, and the threshold rules.

Training chooses the temperature and the threshold, evaluation and inference apply them; all of
them call this module, so "probability >= threshold" means the same thing everywhere.
"""

from __future__ import annotations

import numpy as np

from pneumoscope.config import CLASS_NAMES, SUBTYPE_NAMES, ThresholdConfig


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in numpy, clipped so it never overflows. Not ``scipy.special.expit``:
    importing scipy.special costs 0.35 s on the 2-core machine (``python -X importtime``), and the
    web app's scoring path imports neither scipy nor PyTorch before it answers."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T minimising the log-loss of sigmoid(logit / T) (Guo et al., 2017)."""
    import torch

    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.float64)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def predictions(probs: np.ndarray, threshold: float) -> np.ndarray:
    """PNEUMONIA (1) where the probability reaches the threshold, NORMAL (0) below it: the one
    decision rule of training, evaluation, the stress report, the CLI and the app."""
    return (np.asarray(probs) >= threshold).astype(int)


def label_of(probability: float, threshold: float) -> str:
    """The class name :func:`predictions` gives one probability."""
    return CLASS_NAMES[int(predictions(np.float64(probability), threshold))]


def decision_logit(threshold: float, temperature: float) -> float:
    """The raw logit at which ``sigmoid(logit / temperature)`` reaches ``threshold``: the network
    says PNEUMONIA above it and NORMAL below (Grad-CAM explains the side each image falls on)."""
    return float(temperature * np.log(_odds(threshold)))


def subtype_of(p_bacterial: float, threshold: float) -> str:
    """``bacterial`` where the subtype probability reaches its own threshold, ``viral`` below it."""
    return SUBTYPE_NAMES[int(predictions(np.float64(p_bacterial), threshold))]


def _odds(p: float) -> float:
    return p / (1.0 - p)


def prior_threshold(prevalence: float, target_prior: float) -> float:
    """Where a probability calibrated at ``prevalence`` crosses 0.5 once its prior is moved to
    ``target_prior`` (Bayes' rule on the odds): with a 50 % target, the threshold is the prevalence."""
    odds = _odds(prevalence) / _odds(target_prior)
    return float(odds / (1.0 + odds))


def choose_threshold(labels: np.ndarray, probs: np.ndarray, rule: ThresholdConfig) -> float:
    """The decision threshold on validation probabilities.

    - ``min_sensitivity``: the highest threshold that still finds ``min_sensitivity`` of the pneumonia cases.
    - ``youden``: maximises sensitivity + specificity - 1.
    - ``cost``: maximises ``cost_ratio`` x sensitivity + specificity, i.e. a missed pneumonia costs
      ``cost_ratio`` false alarms, whatever the prevalence (Youden is ``cost_ratio`` 1).
    - ``prior``: 0.5 on the probability with its class prior moved from the validation prevalence
      to ``prior``; it depends on no single validation image.
    - ``fixed``: ``value``.

    A rule that picks a validation score returns the point halfway between it and the next lower
    score: a threshold *on* a score lets float noise (ONNX vs PyTorch, another machine) move that
    image across it, and the card and a later evaluation would disagree by one image.
    """
    from sklearn.metrics import roc_curve

    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    if rule.rule == "fixed":
        return float(rule.value)
    if rule.rule == "prior":
        return prior_threshold(float(labels.mean()), rule.prior)
    fpr, tpr, thresholds = roc_curve(labels, probs)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if rule.rule == "youden":
        chosen = thresholds[int(np.argmax(tpr - fpr))]
    elif rule.rule == "cost":
        chosen = thresholds[int(np.argmax(rule.cost_ratio * tpr + (1.0 - fpr)))]
    else:
        ok = np.flatnonzero(tpr >= rule.min_sensitivity)
        chosen = thresholds[ok[0]] if len(ok) else thresholds[-1]
    below = probs[probs < chosen]
    return float((chosen + below.max()) / 2) if below.size else float(chosen)


def describe_rule(rule: ThresholdConfig, on: str) -> str:
    """The rule in words, for the model card and ``model.json``."""
    text = {
        "min_sensitivity": f"highest threshold with sensitivity >= {rule.min_sensitivity}",
        "youden": "Youden's J (max sensitivity + specificity - 1)",
        "cost": f"max {rule.cost_ratio:g} x sensitivity + specificity (a missed pneumonia costs {rule.cost_ratio:g} false alarms)",
        "prior": f"0.5 on the probability with its class prior moved to {rule.prior:g}",
        "fixed": f"fixed at {rule.value} (not tuned)",
    }[rule.rule]
    return text if rule.rule == "fixed" else f"{text}, on {on} validation"
