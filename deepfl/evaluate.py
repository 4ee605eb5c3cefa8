"""Evaluation of the global model: clean ACC and backdoor ASR under confidence thresholds.

ACC(tau) = #(argmax = label and max prob >= tau) / #test and
ASR(tau) = #(argmax = target and max prob >= tau) / #(non-target test images stamped with the full
trigger) (ALGORITHMS.md "Metrics", THEORY.md section 10) are computed by fldata.metrics, for all
taus from ONE batched forward pass per set. Per-class accuracy is at tau = 0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fldata.cli import CheckFailed
from fldata.evaluation import EvaluationResult
from fldata.metrics import confidence, threshold_counts_many
from fldata.triggers import Trigger, stamp


class DivergedModelError(CheckFailed):
    """The model's outputs are not finite: its weights are finite but so large that the logits
    overflow."""


@dataclass(frozen=True)
class EvalSets:
    """Clean test set and its backdoored counterpart (non-target images, full trigger), on the
    device."""

    clean_images: torch.Tensor
    clean_labels: np.ndarray
    backdoor_images: torch.Tensor
    trigger: Trigger  # the full test trigger, tensors on the device
    target: int
    num_classes: int

    @classmethod
    def build(
        cls,
        images: torch.Tensor,
        labels: torch.Tensor,
        trigger: Trigger,
        target: int,
        num_classes: int,
    ) -> EvalSets:
        keep = labels != target
        backdoor = stamp(images[keep], trigger.mask, trigger.pattern)
        return cls(images, labels.cpu().numpy(), backdoor, trigger, target, num_classes)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of the global model: the rates (:class:`EvaluationResult`, what a metrics
    row and the summary record) and the softmax outputs behind them."""

    result: EvaluationResult  # ACC / ASR at every tau, per-class ACC at tau = 0
    clean_probs: np.ndarray  # (N, C) softmax of the clean test set
    backdoor_probs: np.ndarray  # (M, C) softmax of the stamped non-target test set

    @property
    def acc(self) -> dict[str, float]:
        """Deprecated: ``{str(tau): ACC}``; use ``result.acc_at(tau)`` (removed next release)."""
        warnings.warn(
            "Evaluation.acc is deprecated: use Evaluation.result.acc_at(tau)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.result.to_dict()["acc"]

    @property
    def asr(self) -> dict[str, float]:
        """Deprecated: ``{str(tau): ASR}``; use ``result.asr_at(tau)`` (removed next release)."""
        warnings.warn(
            "Evaluation.asr is deprecated: use Evaluation.result.asr_at(tau)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.result.to_dict()["asr"]

    def confidences(self) -> dict[str, np.ndarray]:
        """Arrays for ROC/AUC of confidence-based rejection (saved as .npz)."""
        return {
            "clean_confidence": confidence(self.clean_probs),
            "backdoor_confidence": confidence(self.backdoor_probs),
            "clean_probs": self.clean_probs.astype(np.float32),
            "backdoor_probs": self.backdoor_probs.astype(np.float32),
        }


@torch.inference_mode()
def predict_probs(model: nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
    """Softmax outputs (N, C) as float64 numpy, in batches of ``batch_size`` on the images'
    device."""
    model.eval()
    chunks = [
        torch.softmax(model(images[i : i + batch_size]).double(), dim=1)
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks).cpu().numpy()


def evaluate(model: nn.Module, sets: EvalSets, taus: list[float], batch_size: int) -> Evaluation:
    """ACC/ASR at every tau of ``taus``, per-class accuracy, and the raw probabilities."""
    clean = predict_probs(model, sets.clean_images, batch_size)
    backdoor = predict_probs(model, sets.backdoor_images, batch_size)
    if not (np.isfinite(clean).all() and np.isfinite(backdoor).all()):
        largest = max(float(p.detach().abs().max()) for p in model.parameters())
        raise DivergedModelError(
            "the global model diverged: its outputs are not finite (largest |weight| "
            f"{largest:.3g}): an aggregate let a huge update through"
        )
    taus = list(dict.fromkeys(taus))  # a tau listed twice is evaluated once
    acc = [c.rate for c in threshold_counts_many(clean, sets.clean_labels, taus)]
    target_labels = np.full(len(backdoor), sets.target)
    asr = [c.rate for c in threshold_counts_many(backdoor, target_labels, taus)]
    correct = clean.argmax(axis=1) == sets.clean_labels
    per_class_total = np.bincount(sets.clean_labels, minlength=sets.num_classes)
    per_class_correct = np.bincount(sets.clean_labels[correct], minlength=sets.num_classes)
    per_class = np.divide(
        per_class_correct,
        per_class_total,
        out=np.full(sets.num_classes, np.nan),
        where=per_class_total > 0,
    )
    per_class_acc = [None if np.isnan(v) else float(v) for v in per_class]
    return Evaluation(EvaluationResult.build(taus, acc, asr, per_class_acc), clean, backdoor)
