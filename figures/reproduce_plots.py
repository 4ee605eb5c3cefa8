"""Figures of the reproduction grid, from committed compact cell results only
(``results/<scale>/cells``).

- :func:`plot_over_rounds`: ASR (top) and ACC (bottom) over rounds, one column per (data set,
  attack), one curve per defense row: the mean over seeds with a band from the lowest to the highest
  seed;
- :func:`plot_roc`: App. A.4's ROC of confidence rejection, mean over seeds, with its AUC;
- :func:`plot_tau_tradeoff`: App. A.9's ACC and ASR against the threshold tau;
- :func:`plot_ablation_bars`: final ASR and ACC per row of an appendix table;
- :func:`plot_inverted_triggers`: the paper's Figure 2c, the true trigger beside FLIP's inverted
  ones.
Rates are plotted in percent. Each function returns a Figure and writes nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure


def _label(record: dict[str, Any]) -> str:
    cell = record["cell"]
    return cell["defense"] + (f" ({cell['variant']})" if cell["variant"] else "")


def _series(record: dict[str, Any], metric: str, tau: float) -> np.ndarray:
    index = int(np.argmin([abs(t - tau) for t in record["taus"]]))
    return np.array([np.nan if v is None else 100 * v for v in record[metric][index]], dtype=float)


def group_by_row(
    records: Sequence[dict[str, Any]],
) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """Records grouped by (data set, attack, row label), seeds together."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["cell"]["dataset"], record["cell"]["attack"], _label(record))].append(record)
    return dict(groups)


def _row_tau(record: dict[str, Any]) -> float:
    """FLIP under the continuous attack is shown at tau = 0.3 (App. A.9), everything else at 0."""
    cell = record["cell"]
    return 0.3 if cell["defense"] == "flip" and cell["attack"] == "continuous" else 0.0


def _first_attack_round(records: Sequence[dict[str, Any]], dataset: str, attack: str) -> int | None:
    """The first round whose phase is not pre-training, in the first record of this data set and
    attack.
    """
    for record in records:
        if (record["cell"]["dataset"], record["cell"]["attack"]) == (dataset, attack):
            phases = record.get("phase") or []
            return next(
                (int(r) for r, p in zip(record["rounds"], phases, strict=False) if p != "pretrain"),
                None,
            )
    return None


def plot_over_rounds(records: Sequence[dict[str, Any]]) -> Figure:
    """ASR and ACC over rounds per defense, mean and min-max band over seeds, one column per data
    set/attack.
    """
    groups = group_by_row(records)
    panels = sorted({(dataset, attack) for dataset, attack, _ in groups})
    figure = Figure(figsize=(5.5 * max(1, len(panels)), 8), layout="constrained")
    axes = figure.subplots(2, max(1, len(panels)), squeeze=False)
    for column, (dataset, attack) in enumerate(panels):
        for (d, a, label), members in sorted(groups.items()):
            if (d, a) != (dataset, attack):
                continue
            rounds = np.asarray(members[0]["rounds"])
            for row, metric in enumerate(("asr", "acc")):
                values = np.vstack([_series(m, metric, _row_tau(m)) for m in members])
                (line,) = axes[row, column].plot(
                    rounds, np.nanmean(values, axis=0), label=label, lw=1.2
                )
                if len(members) > 1:
                    axes[row, column].fill_between(
                        rounds,
                        np.nanmin(values, axis=0),
                        np.nanmax(values, axis=0),
                        color=line.get_color(),
                        alpha=0.15,
                        lw=0,
                    )
        first_attack = _first_attack_round(records, dataset, attack)
        if (
            first_attack is not None
        ):  # pre-training rounds: ASR there is noise, not backdoor success
            for row in range(2):
                axes[row, column].axvline(first_attack, color="0.5", lw=0.8, ls="--")
        axes[0, column].set_title(f"{dataset}, {attack}")
        axes[0, column].set_ylabel("ASR (%)")
        axes[1, column].set_ylabel("ACC (%)")
        axes[1, column].set_xlabel("round")
    if panels:
        axes[0, -1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return figure


def plot_roc(records: Sequence[dict[str, Any]]) -> Figure:
    """ROC of confidence rejection (positive = backdoor input), mean over seeds, per row; AUC in the
    legend.
    """
    figure = Figure(figsize=(5.5, 5), layout="constrained")
    axis = figure.subplots()
    for (dataset, attack, label), members in sorted(
        group_by_row([r for r in records if "roc" in r]).items()
    ):
        fpr = np.asarray(members[0]["roc"]["fpr"])
        tpr = np.mean([m["roc"]["tpr"] for m in members], axis=0)
        aucs = [m["auc"] for m in members]
        axis.plot(
            fpr, tpr, label=f"{label}, {dataset} {attack}: AUC {np.mean(aucs):.3f} (n={len(aucs)})"
        )
    axis.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
    axis.set_xlabel("false positive rate (clean inputs rejected)")
    axis.set_ylabel("true positive rate (backdoor inputs rejected)")
    axis.legend(fontsize=7)
    return figure


def plot_tau_tradeoff(records: Sequence[dict[str, Any]]) -> Figure:
    """Final ACC and ASR against tau (App. A.9), mean over seeds, per row."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    axes = figure.subplots(1, 2)
    for (dataset, attack, label), members in sorted(group_by_row(records).items()):
        taus = members[0]["taus"]
        for axis, metric in zip(axes, ("acc", "asr"), strict=True):
            finals = [[100 * m["final"][metric][i] for i in range(len(taus))] for m in members]
            axis.plot(
                taus, np.mean(finals, axis=0), marker="o", label=f"{label} ({dataset}, {attack})"
            )
    for axis, name in zip(axes, ("ACC (%)", "ASR (%)"), strict=True):
        axis.set_xlabel("confidence threshold tau")
        axis.set_ylabel(name)
    axes[1].legend(fontsize=7)
    return figure


def plot_ablation_bars(rows: Sequence[dict[str, Any]], title: str) -> Figure:
    """Bars of ACC and ASR (mean, std as error bar) per aggregated table row, with the paper's as
    markers.
    """
    figure = Figure(figsize=(max(6, 0.6 * len(rows)), 6), layout="constrained")
    axes = figure.subplots(2, 1, sharex=True)
    labels = [
        f"{r['dataset']} {r['attack']}\n{r['defense']} {r['variant']} tau {r['tau']:g}"
        for r in rows
    ]
    x = np.arange(len(rows))
    for axis, metric in zip(axes, ("asr", "acc"), strict=True):
        means = [np.nan if r[f"{metric}_mean"] is None else r[f"{metric}_mean"] for r in rows]
        errors = [0 if r[f"{metric}_std"] is None else r[f"{metric}_std"] for r in rows]
        axis.bar(
            x, means, yerr=errors, color="tab:blue" if metric == "asr" else "tab:green", alpha=0.8
        )
        paper = [np.nan if r[f"paper_{metric}"] is None else r[f"paper_{metric}"] for r in rows]
        axis.plot(x, paper, "k_", markersize=14, mew=2, label="paper")
        axis.set_ylabel(f"{metric.upper()} (%)")
        axis.legend(fontsize=7)
    axes[1].set_xticks(x, labels, rotation=90, fontsize=6)
    axes[0].set_title(title)
    return figure


MAX_INVERTED_SHOWN = 9


def _trigger_image(mask: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """What stamping adds, ``mask * pattern`` (eq. 1), as an (H, W) grey or (H, W, 3) colour
    image.
    """
    image = np.asarray(mask, dtype=np.float64)[None] * np.asarray(pattern, dtype=np.float64)
    return image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))


def _shown_triggers(arrays: dict[str, np.ndarray], target: int) -> list[int]:
    """Rows to show: the attack target's universal triggers first (warm-up, then refresh), then the
    smallest masks of the other rows, at most :data:`MAX_INVERTED_SHOWN`."""
    order = np.argsort(arrays["mask_l1"], kind="stable")
    first = [int(i) for i in order if arrays["target"][i] == target and arrays["source"][i] == -1]
    rest = [int(i) for i in order if int(i) not in first]
    return (first + rest)[:MAX_INVERTED_SHOWN]


def plot_inverted_triggers(
    arrays: dict[str, np.ndarray],
    true_mask: np.ndarray,
    true_pattern: np.ndarray,
    target: int,
    title: str,
) -> Figure:
    """The paper's Figure 2c: the true trigger beside inverted ones (``flip_triggers.npz`` of a FLIP
    cell), each shown as ``mask * pattern`` with its kind, client, round, source -> target and mask
    L1."""
    shown = _shown_triggers(arrays, target)
    figure = Figure(figsize=(1.6 * (len(shown) + 1), 2.3), layout="constrained")
    axes = figure.subplots(1, len(shown) + 1, squeeze=False)[0]
    axes[0].imshow(_trigger_image(true_mask, true_pattern), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"true trigger\n-> {target}, L1 {float(np.sum(true_mask)):.0f}", fontsize=7)
    for axis, row in zip(axes[1:], shown, strict=True):
        source = int(arrays["source"][row])
        pair = f"{'all' if source < 0 else source} -> {int(arrays['target'][row])}"
        axis.imshow(
            _trigger_image(arrays["masks"][row], arrays["patterns"][row]),
            cmap="gray",
            vmin=0,
            vmax=1,
        )
        axis.set_title(
            f"{arrays['kind'][row]} c{int(arrays['client'][row])} "
            f"r{int(arrays['round'][row])}\n{pair}, L1 {float(arrays['mask_l1'][row]):.0f}",
            fontsize=7,
        )
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=8)
    return figure


def trigger_figures(cells_dir: Path) -> dict[str, Figure]:
    """Figure 2c for the lowest seed of every FLIP row whose cell has inverted triggers committed
    (``s<seed>.triggers.npz`` beside ``s<seed>.json``): ``flip_triggers_<data
    set>_<attack>_<row>.png``."""
    from fldata.triggers import dba_trigger

    figures: dict[str, Figure] = {}
    for path in sorted(cells_dir.glob("*/*/flip*/s*.triggers.npz")):
        row = path.parent
        defense = row.name.replace("+", "_")
        name = f"flip_triggers_{row.parent.parent.name}_{row.parent.name}_{defense}.png"
        if name in figures:
            continue
        cell = json.loads(
            (path.parent / (path.name[: -len(".triggers.npz")] + ".json")).read_text(
                encoding="utf-8"
            )
        )
        with np.load(path, allow_pickle=False) as loaded:
            arrays = {key: loaded[key] for key in loaded.files}
        if not arrays["target"].size:
            continue
        attack = cell["config"]["attack"]
        truth = dba_trigger(tuple(arrays["patterns"].shape[1:]), scale=int(attack["trigger_scale"]))
        title = (
            f"{row.parent.parent.name} {row.parent.name} {row.name}, seed "
            f"{path.name.split('.')[0][1:]}"
        )
        figures[name] = plot_inverted_triggers(
            arrays, truth.mask, truth.pattern, int(attack["target"]), title
        )
    return figures
