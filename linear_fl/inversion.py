"""Trigger inversion against a linear softmax model (paper section 3 step 1, Neural Cleanse;
THEORY.md section 10).

For a candidate target ``T``, a mask ``m`` in [0,1]^(H x W) (shared by the
channels) and a pattern ``p`` in [0,1]^(C x H x W) minimise

    J(m, p) = (1/n) sum_i CE(W, A_{m,p}(x_i), T) + lambda * |m|_1,
    A_{m,p}(x) = (1 - m) * x + m * p       (stamp, bias coordinate untouched)

over samples whose label is not ``T`` (universal) or of one source class
(label-specific). The box constraint is handled by L-BFGS-B with bounds [0, 1].

Analytic gradient (chain rule). With ``r_i = s(W x^_i) - e_T`` and
``g_i = dCE/dx^_i = W_pix^T r_i`` (pixel columns only):
``dJ/dp = m * sum_i g_i / n`` and ``dJ/dm = sum_channels sum_i (p - x_i) * g_i / n + lambda``.
Because the model is linear, the sums over samples are taken first:
``sum_i g_i = W_pix^T sum_i r_i`` and ``sum_i x_i * g_i = colsum(W_pix * (R^T X))``, so no
``(n, d)`` stamped array is formed; the logits of stamped inputs are
``X (W_pix * (1 - m))^T + W_pix (m * p) + b``. Both identities are checked
against :func:`fldata.triggers.stamp` and finite differences in the tests.

Selection rule (Neural Cleanse anomaly rule): the defender does not know the
target; it inverts every candidate class and picks the one with the smallest
mask L1 among those whose stamped samples reach the success threshold
(fraction classified as the candidate); if none does, the most successful.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from fldata.inversion import InversionResult
from fldata.metrics import softmax
from fldata.outliers import median_and_scaled_mad
from fldata.triggers import Trigger

from .lbfgsb import minimize_unit_box
from .model import log_sum_exp, row_products
from .parallel import run_shared
from .stamped import augmented_mask_pattern, stamped_logits, stamped_weights

DEFAULT_INIT_MASK = 0.1
DEFAULT_INIT_PATTERN = 0.5


@dataclass(frozen=True)
class NeuralCleanseChoice:
    """Every candidate target's inversion (:class:`fldata.inversion.InversionResult`) and the
    Neural-Cleanse choice among them (module docstring)."""

    per_class: dict[int, InversionResult]
    selected_target: int
    anomaly_index: float  # (median L1 - selected L1) / (1.4826 * MAD) over candidates
    source: int | None = None
    extras: dict = field(default_factory=dict)

    @property
    def trigger(self) -> Trigger:
        """The recovered trigger of the selected class, as an ``fldata.triggers.Trigger``."""
        best = self.per_class[self.selected_target].trigger
        return Trigger(
            mask=best.mask, pattern=best.pattern, name=f"inverted->{self.selected_target}"
        )

    def warm_starts(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{class: (mask, pattern)}`` to warm-start the next round's inversion."""
        return {t: (r.trigger.mask, r.trigger.pattern) for t, r in self.per_class.items()}


def _split(v: np.ndarray, image_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    C, H, W_ = image_shape
    return v[: H * W_].reshape(H, W_), v[H * W_ :].reshape(C, H, W_)


def inversion_objective(
    v: np.ndarray,
    W: np.ndarray,
    Xa: np.ndarray,
    target: int,
    image_shape: tuple[int, int, int],
    lambda_l1: float,
) -> tuple[float, np.ndarray]:
    """``J(m, p)`` and its analytic gradient w.r.t. ``v = [m.ravel(), p.ravel()]`` (module
    docstring).

    ``Xa`` must be C-contiguous (matmuls on column-sliced views are ~100x slower).
    """
    C, H, W_ = image_shape
    d = C * H * W_
    mask, pattern = _split(v, image_shape)
    m_aug, mp_aug = augmented_mask_pattern(mask, pattern)
    A, offset = stamped_weights(W, m_aug, mp_aug)
    Z = row_products(Xa, A) + offset
    n = Xa.shape[0]
    ce = float((log_sum_exp(Z) - Z[:, target]).mean())
    R = softmax(Z)
    R[:, target] -= 1.0
    R /= n
    W_pix = W[:, :d]
    g_sum = W_pix.T @ R.sum(axis=0)  # sum_i dCE_i/dx^_i / n
    xg_sum = np.einsum("cd,cd->d", W_pix, (R.T @ Xa)[:, :d])  # sum_i x_i * dCE_i/dx^_i / n
    grad_m = (pattern.reshape(d) * g_sum - xg_sum).reshape(C, H, W_).sum(axis=0) + lambda_l1
    grad_p = m_aug[:d] * g_sum
    value = ce + lambda_l1 * float(mask.sum())
    return value, np.concatenate([grad_m.ravel(), grad_p])


def stamped_success_rate(
    W: np.ndarray, Xa: np.ndarray, mask: np.ndarray, pattern: np.ndarray, target: int
) -> float:
    """Fraction of rows whose stamped version is classified as ``target``."""
    Z = stamped_logits(W, Xa, Trigger(mask=mask, pattern=pattern))
    return float(np.mean(Z.argmax(axis=1) == target))


def invert_class(
    W: np.ndarray,
    Xa: np.ndarray,
    target: int,
    image_shape: tuple[int, int, int],
    lambda_l1: float,
    maxiter: int,
    init: tuple[np.ndarray, np.ndarray] | None = None,
    source_classes: tuple[int, ...] = (),
    success_threshold: float = 0.5,
) -> InversionResult:
    """Box-constrained L-BFGS-B on ``J(m, p)`` for one target over the rows of ``Xa``
    (:mod:`linear_fl.lbfgsb`); ``source_classes`` names the rows' classes in the result, and
    ``success`` is ``attack_acc >= success_threshold``.
    """
    if Xa.shape[0] == 0:
        raise ValueError(
            f"trigger inversion for target {target} has no samples (need rows with label != target)"
        )
    C, H, W_ = image_shape
    if init is None:
        init = (np.full((H, W_), DEFAULT_INIT_MASK), np.full((C, H, W_), DEFAULT_INIT_PATTERN))
    v0 = np.concatenate(
        [
            np.asarray(init[0], dtype=np.float64).ravel(),
            np.asarray(init[1], dtype=np.float64).ravel(),
        ]
    )
    res = minimize_unit_box(
        inversion_objective, v0, args=(W, Xa, target, image_shape, lambda_l1), maxiter=maxiter
    )
    mask, pattern = _split(np.clip(res.x, 0.0, 1.0), image_shape)
    l1 = float(mask.sum())
    success_rate = stamped_success_rate(W, Xa, mask, pattern, target)
    return InversionResult(
        trigger=Trigger(mask=mask, pattern=pattern, name=f"inverted->{target}"),
        target=target,
        source_classes=source_classes,
        success=success_rate >= success_threshold,
        attack_acc=success_rate,
        final_loss=float(res.fun) - lambda_l1 * l1,
        mask_l1=l1,
        steps=int(res.nit),
        objective=float(res.fun),
        evaluations=int(res.nfev),
    )


def select_target(
    per_class: Mapping[int, InversionResult], success_threshold: float
) -> tuple[int, float]:
    """Neural-Cleanse rule: smallest mask L1 among successful candidates; returns (class, anomaly
    index).
    """
    classes = sorted(per_class)
    l1 = np.array([per_class[t].mask_l1 for t in classes])
    ok = np.array([per_class[t].attack_acc >= success_threshold for t in classes])
    if ok.any():
        chosen = classes[int(np.argmin(np.where(ok, l1, np.inf)))]
    else:
        chosen = classes[int(np.argmax([per_class[t].attack_acc for t in classes]))]
    med, mad = median_and_scaled_mad(l1)
    anomaly = (med - per_class[chosen].mask_l1) / mad if mad > 0 else 0.0
    return chosen, anomaly


def invert_trigger(
    W: np.ndarray,
    Xa: np.ndarray,
    y: np.ndarray,
    image_shape: tuple[int, int, int],
    candidates: Sequence[int],
    lambda_l1: float,
    maxiter: int,
    success_threshold: float = 0.5,
    source: int | None = None,
    warm: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
    helper: Executor | None = None,
) -> NeuralCleanseChoice:
    """Invert a trigger for every candidate target and pick one (module docstring).

    Universal (``source=None``): for target ``t`` use the rows with ``y != t``.
    Label-specific (``source=s``): use only rows with ``y == s`` (candidates ``t != s``).
    ``warm`` maps a class to a previous ``(mask, pattern)`` used as the start point.
    ``helper``: an executor whose thread may take candidate classes too
    (:func:`linear_fl.parallel.run_shared`; the classes are independent, so the result is the same).
    """
    if len(candidates) == 0:
        raise ValueError("invert_trigger needs at least one candidate target class")
    warm = warm or {}
    classes = [int(t) for t in candidates if source is None or t != source]
    all_classes = [int(c) for c in np.unique(y)]
    tasks = [
        partial(
            invert_class,
            W,
            np.ascontiguousarray(Xa[(y == source) if source is not None else (y != t)]),
            t,
            image_shape,
            lambda_l1,
            maxiter,
            warm.get(t),
            (source,) if source is not None else tuple(c for c in all_classes if c != t),
            success_threshold,
        )
        for t in classes
    ]
    per_class: dict[int, InversionResult] = dict(
        zip(classes, run_shared(tasks, helper), strict=True)
    )
    if not per_class:
        raise ValueError(f"no candidate target differs from the source class {source}")
    chosen, anomaly = select_target(per_class, success_threshold)
    return NeuralCleanseChoice(
        per_class=per_class, selected_target=chosen, anomaly_index=anomaly, source=source
    )
