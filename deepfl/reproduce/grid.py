"""The reproduction grid: which rows each of the paper's deep tables has, and how a row becomes
runs.

A *row* is one line of a table: a data set, an attack, a defense and a variant (a FLIP mode, an
ablation or a sweep value). A *cell* is a row at one scale and one seed: one ordinary ``python -m
deepfl.run`` run. Two tables that need the same run share the cell (Table 2's FLIP rows are also
A.4's ROC, A.6's tau = 0 and A.9's tau sweep), so a cell runs once.

Measurement convention (paper section 5.2 and App. A.1, stated in every table header): the value at
the run's LAST round, at least 60 attack rounds after the attack starts at ``paper`` scale, exactly
60 at ``cpu-small``. Thresholds: tau = 0 everywhere except FLIP under the continuous attack, shown
at the data set's FLIP tau (``deepfl.flip_modes.dataset_fields``, the ``rejection_tau`` every mode
carries: 0.3 on MNIST / F-MNIST, App. A.9, whose 0.3 numbers are Table 2's MNIST FLIP row; 0.4 on
CIFAR-10, the release) and at tau = 0 (no rejection, App. A.6).

Table rows (paper Tables 1-2 and appendix A.3-A.13; FLIP's three modes are issue 17's ``paper`` /
``release`` / ``fliplab``):

- ``table1`` single-shot, ``table2`` continuous: FedAvg (no defense), the nine baselines,
  Multi-Krum, FLAME, and FLIP in each mode, on every data set of the scale.
- ``a3`` adaptive attacker, ``a5`` no hardening, ``a7`` ABS inverter, ``a8`` trigger size 1X-8X,
  ``a12`` oracle triggers, ``a13`` Dirichlet alpha: their own runs. ``a4`` (ROC/AUC), ``a6`` /
  ``a9`` (tau 0 / 0.3 / 0.7) and ``a10`` (Multi-Krum) reuse Table 1-2 cells.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deepfl.flip_modes import MODES, dataset_fields
from deepfl.reproduce.scales import Scale

BASELINES: tuple[str, ...] = (
    "fedavg",
    "krum",
    "bulyan_krum",
    "rfa",
    "trimmed_mean",
    "bulyan_trimmed_mean",
    "foolsgold",
    "median",
    "fltrust",
    "dnc",
    "multikrum",
    "flame",
)
FLIP_MODES: tuple[str, ...] = MODES  # deepfl.flip_modes: paper, release, fliplab
APPENDIX_FLIP_MODES: tuple[str, ...] = ("paper", "fliplab")
BULYAN = ("bulyan_krum", "bulyan_trimmed_mean")
_SAFE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Row:
    """One table row: (dataset, attack, defense, variant) and the ``--set`` overrides that make it.

    ``defense`` is a server defense name of ``deepfl.defenses.REGISTRY`` or ``"flip"`` (FLIP on the
    benign clients, FedAvg on the server). ``mode`` is the FLIP mode; ``setting`` names an ablation
    or sweep value (``"ts2"``, ``"alpha0.2"``, ``"no-hardening"``); ``variant`` joins the two.
    ``taus`` are the thresholds the table reports the row at.
    """

    dataset: str
    attack: str
    defense: str
    mode: str = ""
    setting: str = ""
    sets: tuple[str, ...] = ()
    taus: tuple[float, ...] = (0.0,)

    def __post_init__(self) -> None:
        for name in ("dataset", "attack", "defense"):
            if not _SAFE.match(getattr(self, name)):
                raise ValueError(f"row {name} {getattr(self, name)!r} must match {_SAFE.pattern}")
        for name in ("mode", "setting"):
            if getattr(self, name) and not _SAFE.match(getattr(self, name)):
                raise ValueError(f"row {name} {getattr(self, name)!r} must match {_SAFE.pattern}")

    @property
    def variant(self) -> str:
        return "-".join(part for part in (self.mode, self.setting) if part)

    @property
    def key(self) -> str:
        """``defense`` or ``defense+variant``: the row's folder name under its data set and
        attack.
        """
        return f"{self.defense}+{self.variant}" if self.variant else self.defense

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return self.dataset, self.attack, self.defense, self.variant

    def run_args(self, scale: Scale) -> list[str]:
        """The ``python -m deepfl.run`` flags of this row at ``scale`` (no seed, no --out)."""
        args = ["--preset", scale.preset, "--dataset", self.dataset, "--attack", self.attack]
        if self.defense == "flip":
            args += ["--defense", "fedavg", "--client-defense", "flip"]
        else:
            args += ["--defense", self.defense]
        for dotted, value in scale.overrides(self.dataset):
            args += ["--set", f"{dotted}={json.dumps(value)}"]
        for text in self.sets:
            args += ["--set", text]
        return args


@dataclass(frozen=True)
class Cell:
    """A row at one scale and one seed: one run directory, one compact result file."""

    row: Row
    scale: Scale
    seed: int

    @property
    def path(self) -> str:
        """``<dataset>/<attack>/<row key>/s<seed>``, relative to a scale's cell or run folder."""
        return f"{self.row.dataset}/{self.row.attack}/{self.row.key}/s{self.seed}"

    def run_args(self, run_dir: str) -> list[str]:
        return [
            *self.row.run_args(self.scale),
            "--seed",
            str(self.seed),
            "--set",
            "run.progress=false",
            "--out",
            run_dir,
        ]


@dataclass(frozen=True)
class TableSpec:
    """A table of the paper: its rows at a scale, where its numbers come from, what it reports."""

    name: str
    title: str
    source: str  # the paper's table / section
    build: Callable[[Scale], list[Row]]
    metric: str = "acc_asr"  # "acc_asr" or "auc"
    notes: tuple[str, ...] = field(default_factory=tuple)


def flip_params(mode: str, **extra: Any) -> str:
    """The ``--set`` of FLIP's client params for ``mode`` plus ``extra`` fields."""
    return "defense.client_params=" + json.dumps({"mode": mode, **extra}, sort_keys=True)


def flip_taus(dataset: str, attack: str) -> tuple[float, ...]:
    """FLIP's reported thresholds: rejection only under the continuous attack (paper section 5.2),
    at the data set's ``rejection_tau`` (the value the run's FlipConfig carries in every mode), and
    tau = 0."""
    if attack != "continuous":
        return (0.0,)
    return (float(dataset_fields(dataset)["rejection_tau"]), 0.0)


def baseline_row(
    dataset: str, attack: str, defense: str, sets: tuple[str, ...] = (), setting: str = ""
) -> Row:
    """A server-defense row. Bulyan needs n >= 4f + 3: with 10 clients per round f is set to 1
    (continuous).
    """
    if defense in BULYAN and attack == "continuous":
        sets = ("defense.assumed_attackers=1", *sets)
    return Row(dataset, attack, defense, setting=setting, sets=sets)


def flip_row(
    dataset: str,
    attack: str,
    mode: str,
    setting: str = "",
    sets: tuple[str, ...] = (),
    **params: Any,
) -> Row:
    """A FLIP row in ``mode`` with extra FLIP ``params`` (ablations)."""
    return Row(
        dataset,
        attack,
        "flip",
        mode=mode,
        setting=setting,
        sets=(flip_params(mode, **params), *sets),
        taus=flip_taus(dataset, attack),
    )
