"""Figures from ``theory.verify`` results: Theorem 1 bounds, Corollary 1 counts, Theorem 2 radii,
Table 3.

Pure functions: each takes a validated result dict (see :func:`figures.io.load_theory_result`) and
returns a :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state, nothing is shown or
written). Rounds come from ``series`` (``--all-rounds``); a result without a series is drawn as one
round of points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from figures.io import as_float
from figures.paper_numbers import TABLE3_LOGREG

# Line style of each Theorem-1 quantity, paper eq. 3 / eqs. 16-28 (THEORY.md sections 3-4); the deep
# figures (figures.deep_theory) draw the same quantities in the same styles.
THEOREM1_STYLES: dict[str, dict[str, Any]] = {
    "lb": {"color": "tab:blue", "linestyle": "--", "marker": "v"},
    "lb_jensen": {"color": "tab:blue", "linestyle": "-", "marker": "^"},
    "actual": {"color": "black", "linestyle": "-", "marker": "o", "linewidth": 2},
    "ub": {"color": "tab:red", "linestyle": "--", "marker": "v"},
    "ub_r2": {"color": "tab:red", "linestyle": ":", "marker": "s"},
}
# (key, legend label, line style) for Theorem 1.
_THEOREM1_LINES: tuple[tuple[str, str, dict[str, Any]], ...] = tuple(
    (key, label, THEOREM1_STYLES[key])
    for key, label in (
        ("lb", "LB (Theorem 1)"),
        ("lb_jensen", "LB$^J$ (R1, Jensen)"),
        ("actual", r"actual $\Delta L$"),
        ("ub", "UB (Theorem 1)"),
        ("ub_r2", "UB R2 (Hoeffding)"),
    )
)
# (key, legend label, colour) for Theorem 2 (THEORY.md section 6).
_RADII: tuple[tuple[str, str, str], ...] = (
    ("eps_A", r"$\varepsilon^*_A$ (certificate A)", "tab:green"),
    ("eps_B", r"$\varepsilon^*_B$ (certificate B, Jensen)", "tab:purple"),
    ("eps_paper", r"$\varepsilon_P$ (paper-literal)", "tab:orange"),
)


def round_entries(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-round entries to plot: ``result["series"]`` sorted by round, or the top-level round
    alone.
    """
    series = result.get("series") or []
    if series:
        return sorted(series, key=lambda entry: entry["round"])
    return [
        {"round": result["round"], "theorem1": result["theorem1"], "theorem2": result["theorem2"]}
    ]


def _title(result: Mapping[str, Any]) -> str:
    return (
        f"{result.get('dataset', 'mnist')}, {result['attack']} attack, seed "
        f"{result.get('seed', '?')}"
    )


def _values(entries: Sequence[Mapping[str, Any]], *path: str) -> np.ndarray:
    out = np.empty(len(entries))
    for index, entry in enumerate(entries):
        value: Any = entry
        for key in path:
            value = value[key]
        out[index] = as_float(value)
    return out


def plot_loss_bounds(result: Mapping[str, Any]) -> Figure:
    """Theorem 1 bounds vs the actual loss change over rounds, clean and backdoor panels.

    Plots the dataset averages LB <= LB^J <= actual Delta L <= min(UB, R2) (THEORY.md sections 3-4)
    of the twin pair (W_nodef_r, W_def_r) at each round r; the band between LB^J and min(UB, R2) is
    shaded.
    """
    entries = round_entries(result)
    rounds = _values(entries, "round")
    figure = Figure(figsize=(12.5, 4.5), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, part in zip(axes, ("clean", "backdoor"), strict=True):
        lines = {key: _values(entries, "theorem1", part, key) for key, _, _ in _THEOREM1_LINES}
        upper = np.fmin(lines["ub"], lines["ub_r2"])
        axis.fill_between(rounds, lines["lb_jensen"], upper, color="0.85", label="certified band")
        for key, label, style in _THEOREM1_LINES:
            axis.plot(rounds, lines[key], label=label, markersize=5, **style)
        axis.axhline(0.0, color="0.5", linewidth=0.8)
        violations = sum(
            int(entry["theorem1"][part].get("violations", 0) or 0) for entry in entries
        )
        verdict = (
            "no per-sample violations" if violations == 0 else f"{violations} per-sample VIOLATIONS"
        )
        axis.set_title(f"{part} data ({verdict})")
        axis.set_xlabel("round after pre-training")
        axis.set_ylabel(r"loss change $\Delta L$ (defense $-$ no defense)")
        axis.grid(alpha=0.3)
        _round_axis(axis, rounds)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=8)
    figure.suptitle(f"Theorem 1 bounds vs actual loss change - {_title(result)}")
    return figure


def _round_axis(axis: Any, rounds: np.ndarray, max_ticks: int = 12) -> None:
    """Integer round ticks (at most ``max_ticks``); a single round is centred in a window of width
    2.
    """
    step = max(1, math.ceil(len(rounds) / max_ticks))
    axis.set_xticks(rounds[::step])
    if len(rounds) == 1:
        axis.set_xlim(rounds[0] - 1, rounds[0] + 1)


def _certified_lines(
    axis: Any, taus: np.ndarray, entries: Sequence[Mapping[str, Any]], key: str
) -> None:
    """Certified counts ``certified_jensen[key]`` and ``certified_t1[key]`` against tau."""
    what = key.replace("_", " ")
    for bracket, name, style, colour in (
        ("certified_jensen", "Jensen bracket", "s--", "tab:purple"),
        ("certified_t1", "Theorem-1 bracket", "v:", "tab:blue"),
    ):
        if all(key in entry[bracket] for entry in entries):
            axis.plot(
                taus,
                _values(entries, bracket, key),
                style,
                color=colour,
                label=f"certified {what} ({name})",
            )


def plot_corollary_counts(result: Mapping[str, Any]) -> Figure:
    """Corollary 1 counts against the confidence threshold tau (THEORY.md section 7).

    The counts are those of ``corollary1``: the probe pair (W, W'), one round without and with
    hardening from the common model W^nd_R (THEORY.md section 10, "Twin runs"). Each certified count
    is drawn beside the actual count of the same set, so soundness reads as certified <= actual
    (section 7.3):

    * top left: backdoor samples newly neutralised (target under W, not under W'), and the net
      change N^asr(W) - N^asr(W') for reference (it can be negative, section 7.1);
    * top right: backdoor samples not accepted as the target under W' (#backdoor - N^asr(W')) vs the
      certified-neutralised counts;
    * bottom: N^asr and N^acc without and with defense; certified-kept clean samples beside
      N^acc(W').
    """
    entries = sorted(result["corollary1"], key=lambda entry: entry["tau"])
    figure = Figure(figsize=(12, 8.5), layout="constrained")
    (newly, failing), (asr_counts, acc_counts) = figure.subplots(2, 2)
    title = (
        "Corollary 1 counts, probe pair (one round from the no-defense model at round "
        f"{result['round']}) - {_title(result)}"
    )
    figure.suptitle(title)
    if not entries:
        _mark_empty(figure)
        return figure
    taus = _values(entries, "tau")
    _plot_newly_neutralised(newly, taus, entries)
    _plot_not_accepted(failing, taus, entries, float(result["metrics"]["backdoor_total"]))
    _plot_accepted(asr_counts, acc_counts, taus, entries, result["metrics"])
    for axis in figure.axes:
        axis.set_xlabel(r"confidence threshold $\tau$")
        axis.set_ylabel("samples")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    return figure


def _mark_empty(figure: Figure) -> None:
    """Write "no corollary1 entries" in every axis of ``figure``."""
    for axis in figure.axes:
        axis.text(
            0.5,
            0.5,
            "no corollary1 entries",
            ha="center",
            va="center",
            transform=axis.transAxes,
        )


def _plot_newly_neutralised(axis: Axes, taus: np.ndarray, entries: list[Mapping[str, Any]]) -> None:
    """Top left: newly neutralised backdoor samples, actual and certified, and the net change."""
    if all("newly_neutralised_actual" in entry for entry in entries):
        axis.plot(
            taus, _values(entries, "newly_neutralised_actual"), "ko-", linewidth=2, label="actual"
        )
        _certified_lines(axis, taus, entries, "newly_neutralised")
        axis.set_title("backdoor samples newly neutralised")
    else:
        axis.set_title("backdoor samples newly neutralised: not in this file")
    axis.plot(
        taus,
        _values(entries, "neutralised_actual"),
        "x-",
        color="0.5",
        linewidth=1,
        label=r"net: $N^{asr}(W) - N^{asr}(W')$",
    )
    unsound = [f"{entry['tau']:g}" for entry in entries if entry.get("sound") is False]
    if unsound:
        axis.set_title(
            axis.get_title() + f" - UNSOUND at tau={', '.join(unsound)}", color="tab:red"
        )


def _plot_not_accepted(
    axis: Axes, taus: np.ndarray, entries: list[Mapping[str, Any]], backdoor_total: float
) -> None:
    """Top right: backdoor samples not accepted as the target under W', actual and certified."""
    axis.plot(
        taus,
        backdoor_total - _values(entries, "defense", "n_asr"),
        "ko-",
        linewidth=2,
        label=r"actual: $\#$backdoor $-$ $N^{asr}(W')$",
    )
    _certified_lines(axis, taus, entries, "neutralised")
    axis.set_title("backdoor samples not accepted as the target under W'")


def _plot_accepted(
    asr_counts: Axes,
    acc_counts: Axes,
    taus: np.ndarray,
    entries: list[Mapping[str, Any]],
    metrics: Mapping[str, Any],
) -> None:
    """Bottom: N^asr and N^acc without and with defense, and certified-kept clean samples."""
    for axis, key, total_key, name in (
        (asr_counts, "n_asr", "backdoor_total", "$N^{asr}$ (backdoor -> target)"),
        (acc_counts, "n_acc", "clean_total", "$N^{acc}$ (clean correct)"),
    ):
        axis.plot(
            taus, _values(entries, "no_defense", key), "o-", color="tab:red", label="no defense (W)"
        )
        axis.plot(
            taus, _values(entries, "defense", key), "o-", color="tab:green", label="FLIP (W')"
        )
        axis.axhline(
            float(metrics[total_key]),
            color="0.5",
            linewidth=0.8,
            linestyle="--",
            label=f"total = {metrics[total_key]}",
        )
        axis.set_title(f"{name}, accepted (conf >= tau)")
    _certified_lines(acc_counts, taus, entries, "kept")


def plot_radii(result: Mapping[str, Any]) -> Figure:
    """Theorem 2 radii vs the realised trigger error ||delta||_inf over rounds (log scale).

    A round is certified by A (or B) when delta_inf <= eps_A (eps_B) (THEORY.md section 6.3). Values
    that cannot be drawn on a log axis go to a strip below it: ``None`` as 'x' (undefined, e.g. the
    paper-literal 0/0, or a premise that fails, e.g. T not in argmin u for eps_A) and values <= 0 as
    'v' (vacuous, e.g. the paper-literal eps_P < 0, section 6.2).
    """
    entries = round_entries(result)
    rounds = _values(entries, "round")
    figure = Figure(figsize=(9, 6), layout="constrained")
    axis, strip = figure.subplots(2, 1, sharex=True, height_ratios=[5, 1.2])
    drawable_any = _plot_radii_rows(axis, strip, rounds, entries)
    delta = _values(entries, "theorem2", "delta_inf")
    positive_delta = np.isfinite(delta) & (delta > 0)
    drawable_any |= bool(positive_delta.any())
    axis.plot(
        rounds,
        np.where(positive_delta, delta, np.nan),
        "k*-",
        linewidth=2,
        markersize=8,
        label=r"realised trigger error $\|\delta\|_\infty$",
    )
    if drawable_any:
        axis.set_yscale("log")
    else:
        axis.text(
            0.5,
            0.5,
            "no positive value to draw on a log axis",
            ha="center",
            transform=axis.transAxes,
        )
    theorem2 = result["theorem2"]
    verdict = (
        f"round {result['round']}: inside A = {theorem2.get('inside_A')}, inside B = "
        f"{theorem2.get('inside_B')}, paper-literal eps is {theorem2['eps_paper_status']}"
    )
    axis.set_title(verdict, fontsize=10)
    axis.set_ylabel(r"radius / trigger error ($\ell_\infty$)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8, loc="best")
    _label_strip(strip, rounds)
    figure.suptitle(f"Theorem 2 radii vs realised trigger error - {_title(result)}")
    return figure


def _plot_radii_rows(
    axis: Axes, strip: Axes, rounds: np.ndarray, entries: list[Mapping[str, Any]]
) -> bool:
    """Draw each radius over rounds (undrawable values on the strip); True if any is positive."""
    drawable_any = False
    for row, (key, label, colour) in enumerate(_RADII):
        raw = [entry["theorem2"].get(key) for entry in entries]
        values = np.array([as_float(value) for value in raw])
        drawable = np.isfinite(values) & (values > 0)
        drawable_any |= bool(drawable.any())
        suffix = "" if drawable.any() else " - never positive"
        axis.plot(
            rounds,
            np.where(drawable, values, np.nan),
            "o-",
            color=colour,
            label=label + suffix,
            markersize=5,
        )
        undefined = np.isnan(values)
        vacuous = ~drawable & ~undefined
        strip.scatter(
            rounds[undefined], np.full(undefined.sum(), row), marker="x", color=colour, s=40
        )
        strip.scatter(rounds[vacuous], np.full(vacuous.sum(), row), marker="v", color=colour, s=40)
    return drawable_any


def _label_strip(strip: Axes, rounds: np.ndarray) -> None:
    """Ticks, limits, title and round axis of the strip of values a log axis cannot show."""
    strip.set_yticks(range(len(_RADII)), [key for key, _, _ in _RADII])
    strip.set_ylim(-0.6, len(_RADII) - 0.4)
    strip.set_title(
        "not on the log axis:  x = None (undefined, or the premise fails),  v = vacuous (<= 0)",
        fontsize=9,
    )
    strip.grid(alpha=0.3, axis="x")
    strip.set_xlabel("round after pre-training")
    _round_axis(strip, rounds)


def plot_acc_asr_rounds(result: Mapping[str, Any]) -> Figure:
    """Table 3 analogue over rounds: ACC and ASR (%) of the twin pair without and with FLIP.

    Uses ``series[i].metrics`` (at the metrics threshold tau) where present, else the top-level
    ``metrics`` at round R; the paper's Table 3 values for the same attack are dashed horizontal
    lines.
    """
    entries = [
        entry for entry in round_entries(result) if isinstance(entry.get("metrics"), Mapping)
    ]
    if not entries:
        entries = [{"round": result["round"], "metrics": result["metrics"]}]
    rounds = _values(entries, "round")
    paper = TABLE3_LOGREG.get(str(result["attack"]))
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("acc", "asr"), strict=True):
        for side, label, colour in (
            ("no_defense", "no defense", "tab:red"),
            ("defense", "FLIP", "tab:green"),
        ):
            axis.plot(
                rounds,
                100 * _values(entries, "metrics", side, metric),
                "o-",
                color=colour,
                label=f"ours: {label}",
            )
            if paper is not None:
                axis.axhline(
                    getattr(paper[side], metric),
                    color=colour,
                    linestyle="--",
                    linewidth=1,
                    label=f"paper Table 3: {label} ({getattr(paper[side], metric):.2f})",
                )
        axis.set_title(f"{metric.upper()} (%)")
        axis.set_xlabel("round after pre-training")
        axis.set_ylim(-2, 102)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        _round_axis(axis, rounds)
    figure.suptitle(
        f"ACC / ASR of the twin pair at tau = {float(result['metrics']['tau']):g} - "
        f"{_title(result)}"
    )
    return figure


def draw_all(result: Mapping[str, Any]) -> dict[str, Figure]:
    """All theory figures of one result, keyed by the file-name suffix they are saved under."""
    return {
        "loss_bounds": plot_loss_bounds(result),
        "corollary1_counts": plot_corollary_counts(result),
        "radii": plot_radii(result),
        "acc_asr": plot_acc_asr_rounds(result),
    }


__all__ = [
    "draw_all",
    "plot_acc_asr_rounds",
    "plot_corollary_counts",
    "plot_loss_bounds",
    "plot_radii",
    "round_entries",
]
