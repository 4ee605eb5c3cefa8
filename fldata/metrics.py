"""ACC / ASR with a confidence threshold, and rejection as a backdoor detector.

Semantics of the authors' released code (THEORY.md sections 7.2 and 10; paper Corollary 1):
with ``conf(x) = max_k s_k(x)`` (max softmax probability) and a threshold ``tau`` in [0, 1],

* a clean sample counts as correct iff ``argmax == label`` and ``conf >= tau``:
  ``ACC = N^acc / #clean``;
* a backdoor sample counts as a success iff ``argmax == T`` and ``conf >= tau``:
  ``ASR = N^asr / #backdoor``;
* a sample is rejected iff ``conf < tau``; a rejected sample is a wrong clean answer and a
  failed attack. ``tau = 0`` means no rejection.

The rejection rule doubles as a detector of backdoor inputs (paper App. A.4): :func:`roc_curve`
and :func:`auc` score each input by ``-conf`` (low confidence -> flagged), with backdoor inputs
as positives.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ThresholdCounts",
    "threshold_counts",
    "threshold_counts_many",
    "accuracy",
    "attack_success_rate",
    "confidence",
    "roc_curve",
    "auc",
    "softmax",
]

_ROW_SUM_ATOL = 1e-3  # float32 softmax outputs over 10-100 classes sum to 1 within ~1e-6


@dataclass(frozen=True)
class ThresholdCounts:
    """Counts behind ACC or ASR at one threshold ``tau`` (THEORY.md section 7.2).

    ``accepted_correct + accepted_wrong + rejected == total``. For ACC, ``accepted_correct``
    is N^acc; for ASR (labels = target), it is N^asr.
    """

    tau: float
    total: int
    accepted_correct: int  # argmax == label and conf >= tau   (N^acc, or N^asr with label = target)
    accepted_wrong: int  # argmax != label and conf >= tau
    rejected: int  # conf < tau

    @property
    def rate(self) -> float:
        """``accepted_correct / total`` (ACC or ASR); NaN when ``total == 0``."""
        return self.accepted_correct / self.total if self.total else float("nan")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax ``s(z)_k = exp(z_k - max z) / sum_j exp(z_j - max z)`` (THEORY.md section
    1).

    Stable for large logits (the row maximum is subtracted). Works along the last axis.
    """
    z = np.asarray(logits)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    if z.ndim < 1 or z.shape[-1] < 1:
        raise ValueError(
            f"logits must have at least one class on the last axis; got shape {z.shape}."
        )
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or inf; softmax needs finite logits.")
    shifted = np.exp(z - z.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def confidence(probs: np.ndarray) -> np.ndarray:
    """``Conf(x) = max_k s_k(x)`` per row (THEORY.md section 7.1)."""
    return _validated_probs(probs).max(axis=1)


def threshold_counts(probs: np.ndarray, labels: np.ndarray, tau: float) -> ThresholdCounts:
    """Accepted-correct / accepted-wrong / rejected counts at threshold ``tau``.

    Args:
        probs: (N, C) softmax probabilities, rows summing to 1.
        labels: (N,) int class indices in 0..C-1 (for ASR pass ``np.full(N, target)``).
        tau: threshold in [0, 1]; a sample is rejected iff ``max prob < tau``.
    """
    return threshold_counts_many(probs, labels, [tau])[0]


def threshold_counts_many(
    probs: np.ndarray, labels: np.ndarray, taus: Iterable[float]
) -> list[ThresholdCounts]:
    """:func:`threshold_counts` for several thresholds from one pass over ``probs``.

    Confidences are sorted once; each tau costs two binary searches (O((N + K) log N) in all).
    Results are in the order of ``taus``.
    """
    p = _validated_probs(probs)
    y = _validated_labels(labels, p.shape)
    tau_array = _validated_taus(taus)
    conf = p.max(axis=1).astype(np.float64)  # compare with tau in float64, whatever the probs dtype
    is_correct = p.argmax(axis=1) == y
    sorted_conf = np.sort(conf)
    sorted_conf_correct = np.sort(conf[is_correct])
    rejected = np.searchsorted(sorted_conf, tau_array, side="left")  # conf < tau
    correct_rejected = np.searchsorted(sorted_conf_correct, tau_array, side="left")
    accepted_correct = sorted_conf_correct.size - correct_rejected
    total = p.shape[0]
    return [
        ThresholdCounts(
            tau=float(tau),
            total=int(total),
            accepted_correct=int(acc),
            accepted_wrong=int(total - rej - acc),
            rejected=int(rej),
        )
        for tau, acc, rej in zip(tau_array, accepted_correct, rejected, strict=True)
    ]


def accuracy(probs: np.ndarray, labels: np.ndarray, tau: float = 0.0) -> float:
    """``ACC = #(argmax == label and conf >= tau) / #clean`` (THEORY.md section 10)."""
    return threshold_counts(probs, labels, tau).rate


def attack_success_rate(probs: np.ndarray, target: int, tau: float = 0.0) -> float:
    """``ASR = #(argmax == target and conf >= tau) / #backdoor`` (THEORY.md section 10).

    ``probs`` are the model's outputs on the backdoor set only: the non-target test images
    stamped with the full trigger.
    """
    p = _validated_probs(probs)
    if (
        isinstance(target, bool)
        or not isinstance(target, (int, np.integer))
        or not 0 <= target < p.shape[1]
    ):
        raise ValueError(
            f"target must be an int class index in 0..{p.shape[1] - 1}; got {target!r}."
        )
    return threshold_counts(p, np.full(p.shape[0], int(target)), tau).rate


def roc_curve(
    conf_clean: np.ndarray, conf_backdoor: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of confidence-threshold rejection as a backdoor detector (paper App. A.4).

    Positive = backdoor input. An input is flagged iff ``conf < threshold`` (score ``-conf``).
    ``thresholds`` are the distinct confidences in increasing order followed by ``+inf``; at
    ``thresholds[i]`` the detector flags every input with ``conf < thresholds[i]``, so
    ``(fpr[0], tpr[0]) = (0, 0)`` and ``(fpr[-1], tpr[-1]) = (1, 1)``. Each finite threshold
    can be used directly as ``tau`` in :func:`threshold_counts`.

    Returns:
        ``(fpr, tpr, thresholds)``, each of length ``#distinct confidences + 1``:
        ``fpr = #(clean conf < t) / #clean`` and ``tpr = #(backdoor conf < t) / #backdoor``.
    """
    clean = np.sort(_validated_confidences(conf_clean, "conf_clean"))
    backdoor = np.sort(_validated_confidences(conf_backdoor, "conf_backdoor"))
    thresholds = np.append(np.unique(np.concatenate([clean, backdoor])), np.inf)
    fpr = np.searchsorted(clean, thresholds, side="left") / clean.size
    tpr = np.searchsorted(backdoor, thresholds, side="left") / backdoor.size
    return fpr, tpr, thresholds


def auc(conf_clean: np.ndarray, conf_backdoor: np.ndarray) -> float:
    """Area under :func:`roc_curve`, via the Mann-Whitney statistic.

    ``AUC = P(conf_b < conf_c) + 1/2 P(conf_b == conf_c)`` over independent draws of a backdoor
    and a clean confidence: 1 when every backdoor input is less confident than every clean one,
    0.5 for identical sets. Equals the trapezoid area under :func:`roc_curve`.
    """
    clean = np.sort(_validated_confidences(conf_clean, "conf_clean"))
    backdoor = _validated_confidences(conf_backdoor, "conf_backdoor")
    below_or_equal = np.searchsorted(clean, backdoor, side="right")
    strictly_below = np.searchsorted(clean, backdoor, side="left")
    clean_above = clean.size - below_or_equal
    ties = below_or_equal - strictly_below
    return float((clean_above.sum() + 0.5 * ties.sum()) / (clean.size * backdoor.size))


# --- validation ----------------------------------------------------------------------------------


def _validated_probs(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"probs must be a 2-D (N, C) array with N, C >= 1; got shape {p.shape}.")
    if p.dtype.kind not in "fiu":
        raise ValueError(f"probs must be numeric; got dtype {p.dtype}.")
    if not np.all(np.isfinite(p)):
        raise ValueError(
            "probs contain NaN or inf; pass softmax probabilities (see fldata.metrics.softmax)."
        )
    if p.min() < 0:
        raise ValueError(
            f"probs contain negative values (min {p.min():g}); pass softmax probabilities."
        )
    row_sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(row_sums - 1.0)))
    if abs(row_sums[worst] - 1.0) > _ROW_SUM_ATOL:
        raise ValueError(
            f"probs rows must sum to 1 (within {_ROW_SUM_ATOL:g}); row {worst} sums to "
            f"{row_sums[worst]:.6g}. Did you pass logits? Apply fldata.metrics.softmax first."
        )
    return p


def _validated_labels(labels: np.ndarray, probs_shape: tuple[int, int]) -> np.ndarray:
    y = np.asarray(labels)
    num_samples, num_classes = probs_shape
    if y.shape != (num_samples,):
        raise ValueError(
            f"labels must have shape (N,) = ({num_samples},) to match probs; got {y.shape}."
        )
    if y.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers; got dtype {y.dtype}.")
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(
            f"labels must be in 0..{num_classes - 1} (probs has {num_classes} classes); got values "
            f"in [{y.min()}, {y.max()}]."
        )
    return y


def _validated_taus(taus: Iterable[float]) -> np.ndarray:
    tau_array = np.atleast_1d(
        np.asarray(list(taus) if not np.isscalar(taus) else [taus], dtype=np.float64)
    )
    if tau_array.ndim != 1 or tau_array.size == 0:
        raise ValueError("taus must be a non-empty sequence of thresholds in [0, 1].")
    bad = ~np.isfinite(tau_array) | (tau_array < 0) | (tau_array > 1)
    if bad.any():
        raise ValueError(f"tau must be in [0, 1]; got {tau_array[bad][0]!r}.")
    return tau_array


def _validated_confidences(conf: np.ndarray, what: str) -> np.ndarray:
    c = np.asarray(conf, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(
            f"{what} must be a non-empty 1-D array of confidences; got shape {c.shape}."
        )
    if not np.all(np.isfinite(c)):
        raise ValueError(f"{what} contains NaN or inf.")
    return c
