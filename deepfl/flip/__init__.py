"""FLIP: trigger inversion + model hardening on benign clients (paper section 3, Algorithms 1-2).

Modules: :mod:`.config` (FlipConfig), :mod:`.inversion` (Neural-Cleanse-style, batched over K
problems), :mod:`.abs_inversion` (ABS-style, App. A.7), :mod:`.distance` (class-distance matrix),
:mod:`.selection` (pair selection, (a)symmetric), :mod:`.hardening` (augment functions),
:mod:`.defense` (FlipDefense, the engine's ClientDefense), :mod:`.adaptive` (App. A.3 attacker),
:mod:`.oracle` (App. A.12 random / ground-truth ORACLE baselines).
"""
from fldata.triggers import Trigger

from .abs_inversion import invert_abs_many
from .adaptive import AdaptiveAttacker
from .config import FlipConfig
from .defense import FlipDefense
from .hardening import StampDirection
from .inversion import InversionRequest, InversionResult, invert, invert_many
from .selection import HardeningPair, select_pairs

__all__ = [
    "FlipDefense",
    "FlipConfig",
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
