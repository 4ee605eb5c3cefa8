"""The result of one trigger inversion, shared by the deep (deepfl.flip) and linear (linear_fl)
inverters.

One inversion problem (paper section 3, step 1; Neural Cleanse, paper eq. 2) is a set of source
classes S and a target t: find a trigger ``(m, p)`` that makes the stamped samples of S classify as
t with a small ``|m|_1``, i.e. minimise ``J(m, p) = mean CE(f(A_{m,p}(x)), t) + lambda |m|_1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fldata.triggers import Trigger

__all__ = ["InversionResult"]


@dataclass(frozen=True)
class InversionResult:
    """An inverted trigger for one (sources -> target) problem and its optimisation statistics.

    Attributes:
        trigger: the returned trigger (numpy, :class:`fldata.triggers.Trigger`).
        target, source_classes: the problem.
        success: whether the stamped samples reached the inverter's attack-success threshold.
        attack_acc: fraction of the problem's (evaluated) source samples classified as ``target``
            once stamped with the returned trigger.
        final_loss: mean cross-entropy toward ``target`` on those samples (linear: the CE part of
            ``objective``).
        mask_l1: ``|m|_1`` of the returned mask (pixels, in [0, H*W]).
        per_source_loss_variance: {source class: variance over steps of its mean CE loss} (deep
            inverter; empty otherwise).
        steps: optimisation steps (deep: Adam steps; linear: L-BFGS-B iterations).
        per_source_sample_variance: {source class: mean over steps of the variance over its
            samples of their CE loss} (deep inverter; empty otherwise).
        objective: ``J(m, p)`` at the returned trigger, where the solver reports it (linear).
        evaluations: objective evaluations (linear: L-BFGS-B function calls; 0 if not counted).
    """

    trigger: Trigger
    target: int
    source_classes: tuple[int, ...]
    success: bool
    attack_acc: float
    final_loss: float
    mask_l1: float
    per_source_loss_variance: dict[int, float] = field(default_factory=dict)
    steps: int = 0
    per_source_sample_variance: dict[int, float] = field(default_factory=dict)
    objective: float | None = None
    evaluations: int = 0
