"""The paper's deep tables as rows of the reproduction grid (see deepfl.reproduce.grid for the
conventions).
"""

from __future__ import annotations

from deepfl.reproduce.grid import (
    APPENDIX_FLIP_MODES,
    BASELINES,
    FLIP_MODES,
    Row,
    TableSpec,
    baseline_row,
    flip_row,
)
from deepfl.reproduce.scales import Scale

ATTACKS: tuple[str, ...] = ("single-shot", "continuous")
TRIGGER_SCALES: tuple[int, ...] = (1, 2, 4, 6, 8)
ALPHAS: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 2.0)
ORACLES: dict[str, str] = {
    "oracle-white": "oracle-random-white",
    "oracle-colourful": "oracle-random-colourful",
    "oracle-ground-truth": "oracle-ground-truth",
}


def _keep(scale: Scale, rows: list[Row]) -> list[Row]:
    """Rows on the scale's data sets whose defense the scale keeps (all when the scale names
    none).
    """
    return [
        row
        for row in rows
        if row.dataset in scale.datasets and (not scale.defenses or row.defense in scale.defenses)
    ]


def _main_table(attack: str, scale: Scale) -> list[Row]:
    rows: list[Row] = []
    for dataset in scale.datasets:
        rows += [baseline_row(dataset, attack, name) for name in BASELINES]
        rows += [flip_row(dataset, attack, mode) for mode in FLIP_MODES]
    return _keep(scale, rows)


def table1(scale: Scale) -> list[Row]:
    return _main_table("single-shot", scale)


def table2(scale: Scale) -> list[Row]:
    return _main_table("continuous", scale)


def adaptive(scale: Scale) -> list[Row]:
    """A.3 (Table 5): the adaptive attacker against FLIP, continuous."""
    return _keep(
        scale,
        [
            flip_row(d, "continuous", mode, "adaptive", sets=('attack.behaviour="adaptive"',))
            for d in scale.datasets
            for mode in APPENDIX_FLIP_MODES
        ],
    )


def roc(scale: Scale) -> list[Row]:
    """A.4 (Figure 3): ROC / AUC of confidence rejection, MNIST continuous (Table 2's FLIP
    cells).
    """
    return _keep(scale, [flip_row("mnist", "continuous", mode) for mode in FLIP_MODES])


NO_HARDENING_MODES: tuple[str, ...] = ("paper", "release")


def no_hardening(scale: Scale) -> list[Row]:
    """A.5 (Table 6): the benign clients train with FLIP's local settings on nothing stamped.

    Without stamped data a mode only matters through those settings: ``paper`` and ``fliplab``
    both train with the benign SGD (one row, ``paper``); ``release`` with its Adam hardening
    optimiser (lr, betas, epochs, at most 110 steps), the training the paper's A.5 removed the
    stamped samples from."""
    return _keep(
        scale,
        [
            flip_row(d, "continuous", mode, "no-hardening", hardening=False)
            for d in scale.datasets
            for mode in NO_HARDENING_MODES
        ],
    )


def thresholds(scale: Scale) -> list[Row]:
    """A.6 (Table 7, tau = 0 on every data set) and A.9 (MNIST, tau 0 / 0.3 / 0.7): Table 2's FLIP
    cells.
    """
    rows = [flip_row(d, "continuous", mode) for d in scale.datasets for mode in FLIP_MODES]
    return _keep(
        scale,
        [
            Row(
                r.dataset,
                r.attack,
                r.defense,
                r.mode,
                r.setting,
                r.sets,
                (0.0, 0.3, 0.7) if r.dataset == "mnist" else (0.0,),
            )
            for r in rows
        ],
    )


def abs_inverter(scale: Scale) -> list[Row]:
    """A.7 (Table 8): ABS replaces Neural Cleanse in every inversion; CIFAR-10, both attacks."""
    return _keep(
        scale,
        [
            flip_row("cifar10", attack, mode, "abs", inverter="abs")
            for attack in ATTACKS
            for mode in APPENDIX_FLIP_MODES
        ],
    )


def trigger_size(scale: Scale) -> list[Row]:
    """A.8 (Table 9): trigger size 1X-8X, MNIST single-shot, no defense vs FLIP."""
    rows: list[Row] = []
    for size in TRIGGER_SCALES:
        sets = (f"attack.trigger_scale={size}",)
        rows.append(baseline_row("mnist", "single-shot", "fedavg", sets, setting=f"ts{size}"))
        rows += [
            flip_row("mnist", "single-shot", mode, f"ts{size}", sets)
            for mode in APPENDIX_FLIP_MODES
        ]
    return _keep(scale, rows)


def multikrum(scale: Scale) -> list[Row]:
    """A.10: Multi-Krum against FLIP, CIFAR-10, both attacks (Table 1-2 cells)."""
    rows: list[Row] = []
    for attack in ATTACKS:
        rows += [baseline_row("cifar10", attack, name) for name in ("fedavg", "multikrum")]
        rows += [flip_row("cifar10", attack, mode) for mode in FLIP_MODES]
    return _keep(scale, rows)


def trigger_quality(scale: Scale) -> list[Row]:
    """A.12 (Table 10): random white / colourful and ground-truth ORACLE triggers, CIFAR-10
    single-shot.
    """
    rows = [baseline_row("cifar10", "single-shot", "fedavg")]
    rows += [flip_row("cifar10", "single-shot", mode) for mode in APPENDIX_FLIP_MODES]
    rows += [
        flip_row("cifar10", "single-shot", "paper", setting, inverter=inverter)
        for setting, inverter in ORACLES.items()
    ]
    return _keep(scale, rows)


def dirichlet(scale: Scale) -> list[Row]:
    """A.13 (Table 11): Dirichlet alpha 0.2-2.0, MNIST single-shot, no defense vs FLIP."""
    rows: list[Row] = []
    for alpha in ALPHAS:
        sets = (f"data.alpha={alpha}",)
        rows.append(baseline_row("mnist", "single-shot", "fedavg", sets, setting=f"alpha{alpha}"))
        rows += [
            flip_row("mnist", "single-shot", mode, f"alpha{alpha}", sets)
            for mode in APPENDIX_FLIP_MODES
        ]
    return _keep(scale, rows)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("table1", "Single-shot attack", "Table 1", table1),
        TableSpec("table2", "Continuous attack", "Table 2", table2),
        TableSpec("a3", "Adaptive attack", "Table 5 (App. A.3)", adaptive),
        TableSpec(
            "a4", "ROC / AUC of confidence rejection", "Figure 3 (App. A.4)", roc, metric="auc"
        ),
        TableSpec("a5", "No hardening", "Table 6 (App. A.5)", no_hardening),
        TableSpec(
            "a6", "Confidence threshold 0 (and the A.9 sweep)", "Tables 7 and A.9", thresholds
        ),
        TableSpec("a7", "ABS as the trigger inverter", "Table 8 (App. A.7)", abs_inverter),
        TableSpec("a8", "Trigger size 1X-8X", "Table 9 (App. A.8)", trigger_size),
        TableSpec("a10", "Multi-Krum", "App. A.10 (text)", multikrum),
        TableSpec("a12", "Trigger quality (oracles)", "Table 10 (App. A.12)", trigger_quality),
        TableSpec("a13", "Dirichlet alpha", "Table 11 (App. A.13)", dirichlet),
    )
}
TABLE_ALIASES: dict[str, str] = {"a9": "a6"}


def get_table(name: str) -> TableSpec:
    """The table called ``name`` (``a9`` is ``a6``); a ValueError lists the known ones."""
    name = TABLE_ALIASES.get(name, name)
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; known: {', '.join([*TABLES, *TABLE_ALIASES])}")
    return TABLES[name]
