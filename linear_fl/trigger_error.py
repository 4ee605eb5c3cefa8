"""How far a recovered trigger is from the ground truth (THEORY.md sections 2 and 6.5).

Per benign sample, ``delta_j = x^_j - x^t_j = A_rec(x_j) - A_true(x_j)``
(zero on the bias coordinate). For stamps,
``delta_j = (m - m^) * x_j + m^ * p^ - m * p`` is affine in ``x_j`` per
coordinate, so ``max_j ||delta_j||_inf`` is attained at a per-coordinate
minimum or maximum of the data and is computed exactly from the column
ranges (:func:`linf_error`), without stamping every sample.
Mask overlap: IoU of the true support with ``{m^ >= threshold}``, and the
fraction of true-trigger pixels among the ``k`` largest recovered mask
entries, ``k`` = number of true-trigger pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fldata.triggers import Trigger

from .data import stamp_flat


@dataclass(frozen=True)
class TriggerError:
    linf: float  # max_j ||delta_j||_inf over the benign samples
    iou: float  # |true support ∩ {m^ >= threshold}| / |union|
    topk_overlap: float  # fraction of true pixels among the top-k recovered mask pixels
    mask_l1: float  # |m^|_1
    selected_target: int  # class the defender's inversion chose


def _flat_mask(trigger: Trigger) -> np.ndarray:
    return np.broadcast_to(trigger.mask, trigger.pattern.shape).reshape(-1)


def per_sample_delta(
    Xa: np.ndarray, recovered: Trigger, true: Trigger, image_shape: tuple[int, int, int]
) -> np.ndarray:
    """``delta_j = A_rec(x_j) - A_true(x_j)`` for every row, shape ``(n, d+1)``, bias column 0."""
    return stamp_flat(Xa, recovered, image_shape) - stamp_flat(Xa, true, image_shape)


def linf_error(
    pixel_min: np.ndarray, pixel_max: np.ndarray, recovered: Trigger, true: Trigger
) -> float:
    """Exact ``max_j ||delta_j||_inf`` from the per-coordinate data range ``[pixel_min, pixel_max]``
    (d,).
    """
    m_hat, m = _flat_mask(recovered), _flat_mask(true)
    slope = m - m_hat
    offset = m_hat * recovered.pattern.reshape(-1) - m * true.pattern.reshape(-1)
    return float(
        np.max(np.maximum(np.abs(slope * pixel_min + offset), np.abs(slope * pixel_max + offset)))
    )


def mask_overlap(
    recovered_mask: np.ndarray, true_mask: np.ndarray, threshold: float = 0.5
) -> tuple[float, float]:
    """``(IoU at threshold, top-k overlap)`` between a recovered (H, W) mask and the true one."""
    truth = np.asarray(true_mask) > 0
    k = int(truth.sum())
    if k == 0:
        raise ValueError("the true trigger mask is empty; overlap is undefined")
    found = np.asarray(recovered_mask) >= threshold
    union = int((truth | found).sum())
    iou = float((truth & found).sum() / union)
    top = np.argsort(np.asarray(recovered_mask).ravel(), kind="stable")[::-1][:k]
    return iou, float(truth.ravel()[top].mean())


def trigger_error(
    recovered: Trigger,
    true: Trigger,
    pixel_min: np.ndarray,
    pixel_max: np.ndarray,
    selected_target: int,
    threshold: float = 0.5,
) -> TriggerError:
    """All error measures of one recovered trigger."""
    iou, topk = mask_overlap(recovered.mask, true.mask, threshold)
    return TriggerError(
        linf=linf_error(pixel_min, pixel_max, recovered, true),
        iou=iou,
        topk_overlap=topk,
        mask_l1=float(np.sum(recovered.mask)),
        selected_target=selected_target,
    )
