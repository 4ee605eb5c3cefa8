"""Figures from deepfl run directories: ACC/ASR over rounds, and the rejection ROC.

:func:`summarise_run` turns a loaded :class:`figures.io.DeepRun` into a :class:`RunSummary` (the
curves at one confidence threshold tau); the plotting functions take summaries or arrays and return
a :class:`matplotlib.figure.Figure` without writing anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from figures.io import DeepRun, ResultFileError, ResultRequestError, as_float
from figures.paper_numbers import DEFENSE_LABELS
from fldata.evaluation import EvaluationResult
from fldata.metrics import auc, roc_curve

ROC_MARKED_TAUS: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9)  # thresholds annotated on the ROC curve


@dataclass(frozen=True)
class RunSummary:
    """One run's identity and its ACC/ASR (fractions) at threshold ``tau``.

    ``defense`` is ``"none"`` (FedAvg, no client defense), ``"flip"`` (FLIP on FedAvg), a server
    defense name, or ``"<server>+flip"``; ``attack`` is the attack kind, with ``" (adaptive)"``
    appended for the adaptive attacker.
    """

    name: str
    dataset: str
    defense: str
    attack: str
    tau: float
    rounds: np.ndarray
    acc: np.ndarray
    asr: np.ndarray
    final_acc: float
    final_asr: float
    attack_start: int | None = None
    attack_rounds: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def label(self) -> str:
        return f"{DEFENSE_LABELS.get(self.defense, self.defense)} / {self.attack} ({self.name})"


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name, {})
    return value if isinstance(value, Mapping) else {}


def run_identity(config: Mapping[str, Any]) -> tuple[str, str, str]:
    """(dataset, defense key, attack key) from a resolved deepfl ``config.json``
    (deepfl/config.py).
    """
    defense = _section(config, "defense")
    attack = _section(config, "attack")
    server = str(defense.get("server", "fedavg"))
    client = str(defense.get("client", "none"))
    if client == "none":
        defense_key = "none" if server == "fedavg" else server
    else:
        defense_key = client if server == "fedavg" else f"{server}+{client}"
    attack_key = str(attack.get("kind", "unknown"))
    if attack.get("behaviour", "standard") != "standard":
        attack_key += f" ({attack['behaviour']})"
    dataset = str(_section(config, "data").get("dataset", "unknown"))
    return dataset, defense_key, attack_key


def _evaluation(raw: Mapping[str, Any], source: Any, where: str) -> EvaluationResult:
    """The evaluation in a metrics row or in ``summary["final"]``; ResultFileError if malformed."""
    try:
        return EvaluationResult.from_dict(raw)
    except ValueError as error:
        raise ResultFileError(source, f"{where}: {error}") from None


def _rates_at(result: EvaluationResult, tau: float, source: Any, where: str) -> tuple[float, float]:
    """``(ACC, ASR)`` of ``result`` at exactly ``tau``; ResultRequestError if not evaluated."""
    try:
        return result.rates_at(tau)
    except KeyError as error:
        raise ResultRequestError(source, f"'{where}': {error}") from None


def default_tau(run: DeepRun) -> float:
    """The threshold a table row uses when none is requested: the FLIP client's ``rejection_tau``
    when the run's config sets it in ``defense.client_params``, else 0 (no rejection; paper section
    5.2 uses a threshold only for FLIP under continuous attacks)."""
    client_params = _section(_section(run.config, "defense"), "client_params")
    if "rejection_tau" in client_params:
        return float(client_params["rejection_tau"])
    return 0.0


def summarise_run(run: DeepRun, tau: float | None = None) -> RunSummary:
    """ACC/ASR curves and final values of ``run`` at ``tau`` (``None`` -> :func:`default_tau`)."""
    tau = default_tau(run) if tau is None else float(tau)
    dataset, defense, attack = run_identity(run.config)
    metrics_path = run.path / "metrics.jsonl"
    evaluated = sorted(
        (record for record in run.records if record["acc"] is not None),
        key=lambda record: record["round"],
    )
    curves = np.array(
        [
            _rates_at(
                _evaluation(record, metrics_path, f"round {record['round']}"),
                tau,
                metrics_path,
                f"round {record['round']}",
            )
            for record in evaluated
        ],
        dtype=float,
    ).reshape(-1, 2)
    summary_path = run.path / "summary.json"
    final_acc, final_asr = _rates_at(
        _evaluation(run.summary["final"], summary_path, "final"), tau, summary_path, "final"
    )
    attack_rounds = np.array(
        sorted(float(record["round"]) for record in run.records if record.get("attackers"))
    )
    rounds = np.array([float(record["round"]) for record in evaluated])
    return RunSummary(
        run.path.name,
        dataset,
        defense,
        attack,
        tau,
        rounds,
        curves[:, 0],
        curves[:, 1],
        as_float(final_acc),
        as_float(final_asr),
        _attack_start(run, attack),
        attack_rounds,
    )


def _attack_start(run: DeepRun, attack: str) -> int | None:
    """First round of the attack phase: from the rows' ``phase``, else the config (after
    pre-training).
    """
    phases = [record["round"] for record in run.records if record.get("phase") == "attack"]
    if phases:
        return int(min(phases))
    if attack.split(" ")[0] == "none":
        return None
    start = _section(run.config, "attack").get("start_round")
    pretrain = _section(run.config, "run").get("pretrain_rounds")
    if start:
        return int(start)
    return None if pretrain is None else int(pretrain) + 1


def plot_acc_asr_over_rounds(runs: Sequence[RunSummary]) -> Figure:
    """ACC (top) and ASR (bottom) in % over rounds, one colour per run, runs overlaid.

    A dotted vertical line marks each run's first attack round (after the clean pre-training); small
    triangles above the ASR panel mark the rounds in which attackers took part.
    """
    figure = Figure(figsize=(10, 7.5), layout="constrained")
    acc_axis, asr_axis = figure.subplots(2, 1, sharex=True)
    for index, run in enumerate(runs):
        colour = f"C{index % 10}"
        marker = "o" if len(run.rounds) <= 40 else None
        acc_axis.plot(
            run.rounds, 100 * run.acc, color=colour, marker=marker, markersize=3, label=run.label
        )
        asr_axis.plot(
            run.rounds, 100 * run.asr, color=colour, marker=marker, markersize=3, label=run.label
        )
        if run.attack_start is not None:
            for axis in (acc_axis, asr_axis):
                axis.axvline(run.attack_start, color=colour, linestyle=":", linewidth=1)
        if len(run.attack_rounds):
            asr_axis.scatter(
                run.attack_rounds,
                np.full(len(run.attack_rounds), 104 + 3 * (index % 4)),
                marker="v",
                s=12,
                color=colour,
                clip_on=False,
            )
    taus = sorted({run.tau for run in runs})
    acc_axis.set_ylabel("ACC (%)")
    asr_axis.set_ylabel("ASR (%)")
    asr_axis.set_xlabel("round (dotted line: first attack round; triangles: rounds with attackers)")
    asr_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_axis.set_ylim(-2, 102)
    asr_axis.set_ylim(-2, 115)
    asr_axis.set_yticks(range(0, 101, 20))
    for axis in (acc_axis, asr_axis):
        axis.grid(alpha=0.3)
    acc_axis.legend(fontsize=8, loc="lower right")
    figure.suptitle(
        f"ACC and ASR over rounds (confidence threshold tau = {', '.join(f'{t:g}' for t in taus)})"
    )
    return figure


def plot_roc(conf_clean: np.ndarray, conf_backdoor: np.ndarray, title: str = "") -> Figure:
    """ROC of confidence-threshold rejection as a backdoor detector (paper App. A.4).

    Uses :func:`fldata.metrics.roc_curve` (positive = backdoor input, flagged iff conf < tau) and
    :func:`fldata.metrics.auc`; a few thresholds tau are annotated on the curve.
    """
    fpr, tpr, thresholds = roc_curve(conf_clean, conf_backdoor)
    area = auc(conf_clean, conf_backdoor)
    figure = Figure(figsize=(5.5, 5.5), layout="constrained")
    axis = figure.subplots()
    axis.plot(
        fpr, tpr, color="tab:blue", linewidth=2, label=f"rejection at conf < tau (AUC = {area:.3f})"
    )
    axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="chance")
    taus_at_point: dict[tuple[float, float], list[float]] = {}
    for tau in ROC_MARKED_TAUS:
        index = min(int(np.searchsorted(thresholds, tau, side="left")), len(thresholds) - 1)
        taus_at_point.setdefault((float(fpr[index]), float(tpr[index])), []).append(tau)
    for (x, y), taus in taus_at_point.items():
        axis.plot(x, y, "ko", markersize=4)
        right_edge = x > 0.75
        axis.annotate(
            "tau=" + ",".join(f"{tau:g}" for tau in taus),
            (x, y),
            textcoords="offset points",
            xytext=(-6 if right_edge else 6, -12),
            ha="right" if right_edge else "left",
            fontsize=8,
        )
    axis.set_xlabel("false positive rate (clean inputs rejected)")
    axis.set_ylabel("true positive rate (backdoor inputs rejected)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    axis.set_title(title or "Confidence rejection as a backdoor detector")
    return figure
