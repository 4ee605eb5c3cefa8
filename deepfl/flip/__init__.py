"""FLIP: trigger inversion + model hardening on benign clients (paper section 3, Algorithms 1-2).

Modules: :mod:`.config` (FlipConfig and its three modes ``paper`` / ``release`` / ``fliplab``),
:mod:`deepfl.flip_modes` (the modes' values, per data set), :mod:`.inversion` (Neural-Cleanse-style,
batched over K problems), :mod:`.abs_inversion` (ABS-style, App. A.7), :mod:`.distance`
(class-distance matrix), :mod:`.selection` (pair selection, (a)symmetric), :mod:`.plan` (a client's
inversions of one round), :mod:`.hardening` (augment functions), :mod:`.defense` (FlipDefense, the
engine's ClientDefense), :mod:`.adaptive` (App. A.3 attacker), :mod:`.oracle` (App. A.12 random /
ground-truth ORACLE baselines), :mod:`.figure_triggers` (``flip_triggers.npz``).
"""

from deepfl.flip_modes import MODES
from fldata.triggers import Trigger

from .abs_inversion import invert_abs_many
from .adaptive import AdaptiveAttacker
from .config import FlipConfig
from .defense import FlipDefense
from .hardening import StampDirection
from .inversion import InversionRequest, InversionResult, invert, invert_many
from .plan import HardeningPlan, plan_hardening
from .selection import HardeningPair, select_pairs

__all__ = [
    "FlipDefense",
    "FlipConfig",
    "MODES",
    "HardeningPlan",
    "plan_hardening",
    "AdaptiveAttacker",
    "invert",
    "invert_many",
    "invert_abs_many",
    "InversionRequest",
    "InversionResult",
    "Trigger",
    "StampDirection",
    "HardeningPair",
    "select_pairs",
]
