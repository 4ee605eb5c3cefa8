"""Figures of the deep probe (issue 15) from saved ``python -m theory.verify --deep --json`` files.

* :func:`plot_deep_loss_bounds`: the deep version of ``continuous_loss_bounds.png``: Theorem 1's
  dataset averages ``LB <= LB^J <= actual <= min(UB, R2) <= UB`` over the probed rounds, for (a) the
  last-layer-only round (engine SGD) and (b) the full round with its last-layer bracket; lines are
  means over seeds, dots the seeds.
* :func:`plot_deep_scatter`: per sample, the bounds ``lb`` and ``ub`` against the actual loss change
  (every probe of the folder pooled); Theorem 1 holds where ``lb <= actual <= ub``, i.e. ``lb`` on
  or below the diagonal and ``ub`` on or above it.

Pure functions of loaded results (Agg figures, nothing written); :func:`load_deep_theory_results`
validates the files (schema ``fliplab.theory.deep/1``) and reads each one's ``.samples.npz``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from figures.io import ResultFileError, load_json, require
from figures.theory_plots import THEOREM1_STYLES

DEEP_SCHEMA = "fliplab.theory.deep/1"
PARTS = ("clean", "backdoor")
_T1_KEYS = ("lb", "lb_jensen", "actual", "ub", "ub_r2")
_REQUIRED: tuple[str, ...] = (
    "seed",
    "round",
    "probe_round",
    "taus",
    "trigger_error.n_pairs",
    *(
        f"{part}.theorem1.{s}.{k}"
        for part in ("last_layer_sgd", "last_layer_protocol")
        for s in PARTS
        for k in (*_T1_KEYS, "violations")
    ),
    *(
        f"{part}.violations_{s}"
        for part in ("last_layer_sgd", "last_layer_protocol", "all_layers")
        for s in PARTS
    ),
    *(
        f"all_layers.{s}.{k}"
        for s in PARTS
        for k in (*_T1_KEYS, "inside_fraction", "distance_median", "frozen_round")
    ),
    "last_layer_protocol.deltaW_rel_error",
    "last_layer_protocol.corollary1",
    "last_layer_sgd.corollary1",
)
# (key, legend label, style) of the Theorem-1 lines, in figures.theory_plots' styles.
_LINES: tuple[tuple[str, str, dict[str, Any]], ...] = tuple(
    (key, label, THEOREM1_STYLES[key])
    for key, label in (
        ("lb", "LB (Theorem 1)"),
        ("lb_jensen", "LB$^J$ (R1, Jensen)"),
        ("actual", r"actual $\Delta L$"),
        ("ub_r2", "min(UB, R2)"),
        ("ub", "UB (Theorem 1)"),
    )
)
ROWS = (
    ("last_layer_sgd", "(a) last layer only, features frozen"),
    ("all_layers", "(b) all layers train"),
)


@dataclass(frozen=True)
class DeepTheoryResult:
    """One probe's JSON (``data``) and its per-sample arrays (``samples``, None if the file is
    absent).
    """

    path: Path
    data: dict[str, Any]
    samples: dict[str, np.ndarray] | None

    @property
    def key(self) -> tuple[int, int]:
        return int(self.data["seed"]), int(self.data["round"])


def load_deep_theory_result(path: str | os.PathLike[str]) -> DeepTheoryResult:
    """Load and validate one ``theory.verify --deep --json`` file and its ``.samples.npz``."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or data.get("schema") != DEEP_SCHEMA:
        raise ResultFileError(path, f"key 'schema' must be {DEEP_SCHEMA!r}")
    for key in _REQUIRED:
        require(data, key, path)
    samples_path = path.with_suffix(".samples.npz")
    samples = None
    if samples_path.is_file():
        with np.load(samples_path) as arrays:
            samples = {name: np.asarray(arrays[name], dtype=np.float64) for name in arrays.files}
    return DeepTheoryResult(path, data, samples)


def load_deep_theory_results(sources: Sequence[str | os.PathLike[str]]) -> list[DeepTheoryResult]:
    """Every ``*.json`` of the given folders (or the given files), sorted by (seed, round)."""
    paths: list[Path] = []
    for source in map(Path, sources):
        paths += sorted(source.glob("*.json")) if source.is_dir() else [source]
    if not paths:
        raise ResultFileError(
            ", ".join(map(str, sources)), "no theory.verify --deep JSON files found"
        )
    return sorted((load_deep_theory_result(path) for path in paths), key=lambda result: result.key)


def by_round(results: Sequence[DeepTheoryResult]) -> dict[int, list[DeepTheoryResult]]:
    """Results grouped by probed round, rounds ascending."""
    groups: dict[int, list[DeepTheoryResult]] = {}
    for result in results:
        groups.setdefault(result.key[1], []).append(result)
    return dict(sorted(groups.items()))


def _summary(result: DeepTheoryResult, row: str, part: str) -> dict[str, Any]:
    data = result.data[row]
    return data["theorem1"][part] if "theorem1" in data else data[part]


def plot_deep_loss_bounds(results: Sequence[DeepTheoryResult]) -> Figure:
    """Theorem 1 averages vs the actual loss change over the probed rounds (module docstring)."""
    groups = by_round(results)
    rounds = np.array(list(groups), dtype=float)
    figure = Figure(figsize=(12, 8.5), layout="constrained")
    axes = figure.subplots(2, 2)
    for (row, row_title), row_axes in zip(ROWS, axes, strict=True):
        for axis, part in zip(row_axes, PARTS, strict=True):
            for key, label, style in _LINES:
                values = [[_summary(r, row, part)[key] for r in group] for group in groups.values()]
                axis.plot(rounds, [np.mean(v) for v in values], label=label, markersize=5, **style)
                for x, v in zip(rounds, values, strict=True):
                    axis.plot(
                        np.full(len(v), x), v, ".", color=style["color"], alpha=0.4, markersize=4
                    )
            violations = sum(int(r.data[row][f"violations_{part}"]) for r in results)
            total = sum(int(_summary(r, row, part)["n"]) for r in results)
            verdict = (
                f"{violations} of {total} samples outside [LB, UB]"
                if row == "all_layers"
                else f"{violations} per-sample violations of {total}"
            )
            axis.set_title(f"{row_title}: {part}\n{verdict}", fontsize=10)
            axis.axhline(0.0, color="0.5", linewidth=0.8)
            _symlog(axis, "y", [_summary(r, row, part)[k] for r in results for k in _T1_KEYS])
            axis.set_xticks(rounds)
            axis.set_xlim(rounds.min() - 5, rounds.max() + 5)
            axis.set_xlabel("probed round R (the probe is round R+1 from G_R)")
            axis.set_ylabel(r"loss change $\Delta L$ (FLIP $-$ no defense)")
            axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=5, fontsize=8)
    seeds = sorted({r.key[0] for r in results})
    figure.suptitle(
        f"Theorem 1 on the CNN's last layer - {results[0].data['dataset']}, "
        f"{results[0].data['attack']} attack, seed{'s' if len(seeds) > 1 else ''} "
        f"{', '.join(map(str, seeds))} (lines: mean over seeds, dots: seeds)"
    )
    return figure


LINTHRESH = 1e-3  # symlog axes: linear within +-1e-3 nats, decades outside


def _symlog(axis: Any, which: str, values: Any) -> None:
    """Symmetric-log ``which`` axis ("x" or "y") with ticks at 0 and +-10^k from 1e-2 up to the
    data's magnitude, and a 10% margin (loss changes span several decades and both signs)."""
    values = np.asarray(values, dtype=float)
    top = float(np.nanmax(np.abs(values))) if values.size else 1.0
    decades = np.arange(-2, int(np.ceil(np.log10(max(top, 1e-2)))) + 1)
    ticks = np.concatenate([-(10.0 ** decades[::-1]), [0.0], 10.0**decades])
    limit = LINTHRESH * (max(top, LINTHRESH) / LINTHRESH) ** 1.1
    getattr(axis, f"set_{which}scale")("symlog", linthresh=LINTHRESH, linscale=0.5)
    getattr(axis, f"set_{which}ticks")(ticks)
    getattr(axis, f"set_{which}lim")(-limit, limit)


def _scatter_panel(axis: Axes, arrays: Mapping[str, np.ndarray], title: str) -> None:
    """One panel: per-sample ``lb`` and ``ub`` against the actual change, wrong sides marked."""
    actual = arrays["actual"]
    below, above = arrays["lb"] > actual, arrays["ub"] < actual
    outside = below | above
    axis.scatter(actual, arrays["ub"], s=2, color="tab:red", alpha=0.3, label="UB", rasterized=True)
    axis.scatter(
        actual, arrays["lb"], s=2, color="tab:blue", alpha=0.3, label="LB", rasterized=True
    )
    axis.scatter(
        np.concatenate([actual[below], actual[above]]),
        np.concatenate([arrays["lb"][below], arrays["ub"][above]]),
        s=5,
        color="tab:orange",
        label="bound on the wrong side (sample outside [LB, UB])",
        rasterized=True,
    )
    values = np.concatenate(list(arrays.values())) if actual.size else np.ones(1)
    limit = float(np.abs(values).max()) * 2
    axis.plot(
        [-limit, limit],
        [-limit, limit],
        color="black",
        linewidth=0.8,
        label="bound = actual",
    )
    _symlog(axis, "x", values)
    _symlog(axis, "y", values)
    axis.set_title(
        f"{title}\n{int(outside.sum())} of {actual.size} samples outside [LB, UB]",
        fontsize=10,
    )
    axis.set_xlabel(r"actual per-sample $\Delta\ell$")
    axis.set_ylabel("bound")
    axis.grid(alpha=0.3)


def plot_deep_scatter(
    results: Sequence[DeepTheoryResult], row_keys: tuple[str, str] = ("sgd", "full")
) -> Figure:
    """Per-sample ``lb`` and ``ub`` against the actual loss change, pooled over the probes (module
    docstring).
    """
    figure = Figure(figsize=(11, 10.5), layout="constrained")
    axes = figure.subplots(2, 2)
    with_samples = [r.samples for r in results if r.samples is not None]
    for (name, (_row, row_title)), row_axes in zip(
        zip(row_keys, ROWS, strict=True), axes, strict=True
    ):
        for axis, part in zip(row_axes, PARTS, strict=True):
            arrays = {
                k: np.concatenate(
                    [samples[f"{name}_{part}_{k}"] for samples in with_samples] or [np.zeros(0)]
                )
                for k in ("lb", "actual", "ub")
            }
            _scatter_panel(axis, arrays, f"{row_title}: {part}")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=4, fontsize=8, markerscale=3)
    figure.suptitle(
        f"Per-sample Theorem-1 bracket vs actual loss change, {len(with_samples)} "
        f"probe{'s' if len(with_samples) != 1 else ''} pooled (symlog axes, linear within 1e-3)"
    )
    return figure
