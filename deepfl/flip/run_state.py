"""What FLIP's benign clients did over a finished run, read from the run's checkpoint (issue 17).

``python -m deepfl.flip.analysis run-state RUN_DIR [RUN_DIR ...]`` reads each FLIP run
directory's last checkpoint: every client's :class:`~.state.FlipClientState`, and the run's own
partition (rebuilt from its config, no training). Per run it reports

* coverage: how many of the benign clients were ever selected (each one's first selection is its
  one-time warm-up) and how often;
* hardening: of the pairs each client hardened in its last selection (``last_pairs``), how many
  touch the attack target, i.e. contain a backdoor direction ``s -> target`` (a pair
  ``(s, target)``, or ``(target, s)`` hardened symmetrically);
* the reason: where the backdoor pairs rank in each client's final distance matrix when the
  LARGEST distance is taken first among eligible sources (more than 5 local samples), the rule of
  the paper and of the release (:func:`deepfl.flip.analysis.pair_ranks`).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfl import checkpoint
from deepfl.runner import Experiment, load_run_config
from linear_fl.trigger_error import mask_overlap

from .state import FlipClientState

__all__ = ["run_state_report", "run_state_markdown"]


@dataclass(frozen=True)
class RunFacts:
    """What a run's config fixes: per-client label counts, attackers, target, true trigger mask."""

    counts: dict[int, np.ndarray]
    attackers: list[int]
    target: int
    num_classes: int
    true_mask: np.ndarray  # (H, W), the union of the attackers' trigger pieces (test trigger)


def _run_facts(run_dir: Path) -> RunFacts:
    """The partition and trigger of a run, rebuilt from its config in a scratch folder."""
    cfg = load_run_config(run_dir)
    with tempfile.TemporaryDirectory() as scratch:
        exp = Experiment(cfg, Path(scratch) / "replay")
        classes = exp.federation.num_classes
        counts = {
            c: np.bincount(data.labels.cpu().numpy(), minlength=classes)[:classes]
            for c, data in enumerate(exp.federation.clients)
        }
        mask = np.asarray(exp.test_trigger.mask, dtype=np.float64)
        attackers = list(exp.schedule.attacker_ids)
        return RunFacts(counts, attackers, int(cfg.attack.target), classes, mask)


def _fit(mask: np.ndarray, true_mask: np.ndarray) -> tuple[float, float]:
    """How much of an inverted ``mask`` lies on the true trigger: the share of its L1 on the true
    trigger's pixels, and the top-k overlap (:func:`linear_fl.trigger_error.mask_overlap`)."""
    share = float(mask[true_mask > 0].sum() / max(float(mask.sum()), 1e-12))
    return share, mask_overlap(mask, true_mask)[1]


def _fit_summary(fits: list[tuple[float, float]]) -> dict[str, Any]:
    """Count and medians of :func:`_fit` over some triggers (None when there are none)."""
    return {
        "triggers": len(fits),
        "median_l1_share_on_true_trigger": float(np.median([f[0] for f in fits])) if fits else None,
        "median_top_k_overlap": float(np.median([f[1] for f in fits])) if fits else None,
    }


def _overlaps(flips: list[FlipClientState], target: int, true_mask: np.ndarray) -> dict[str, Any]:
    """:func:`_fit_summary` of the last label-specific triggers toward ``target`` and of the
    others."""
    fits: dict[str, list[tuple[float, float]]] = {"to_target": [], "to_other": []}
    for flip in flips:
        if flip.pair_masks is None or flip.pair_directions is None:
            continue
        for (_, t), mask in zip(flip.pair_directions.tolist(), flip.pair_masks, strict=True):
            fits["to_target" if t == target else "to_other"].append(_fit(mask, true_mask))
    return {kind: _fit_summary(values) for kind, values in fits.items()}


def _touches_target(pairs: np.ndarray, target: int) -> bool:
    """Whether some hardened pair contains a direction ``s -> target``."""
    return any(t == target or (s == target and bool(sym)) for s, t, sym in pairs.tolist())


def _universal_overlap(
    flips: list[FlipClientState], target: int, true_mask: np.ndarray
) -> dict[str, Any]:
    """The clients' last universal triggers toward ``target`` (warm-up or ``fliplab``'s refresh):
    :func:`_fit_summary`, and how many clients' outlier test flagged ``target`` last."""
    flagged = sum(f.focus_targets is not None and target in f.focus_targets.tolist() for f in flips)
    fits = [
        _fit(f.universal_masks[target], true_mask)
        for f in flips
        if f.universal_masks is not None and np.all(np.isfinite(f.universal_masks[target]))
    ]
    return {"clients_flagging_target": flagged, **_fit_summary(fits)}


def run_state_report(run_dir: str | Path) -> dict[str, Any]:
    """Coverage, hardened pairs and backdoor-pair ranks of one FLIP run (module docstring)."""
    from .analysis import pair_ranks

    run_dir = Path(run_dir)
    state = checkpoint.load(run_dir / checkpoint.CHECKPOINT_NAME, torch.device("cpu"))
    facts = _run_facts(run_dir)
    counts, target = facts.counts, facts.target
    benign = [c for c in counts if c not in facts.attackers]
    flips = {c: FlipClientState.from_dict(state["client_states"].get(c, {})) for c in benign}
    selected = {c: f.times_selected or 0 for c, f in flips.items()}
    warmed = [c for c in benign if flips[c].distance is not None]
    best_ranks = []
    touching = 0
    for c in warmed:
        flip = flips[c]
        assert flip.distance is not None
        ranks = pair_ranks(flip.distance, counts[c], target)
        best_ranks.append(min(ranks["largest"]) if ranks["largest"] else None)
        if flip.last_pairs is not None and _touches_target(flip.last_pairs, target):
            touching += 1
    ranked = np.array([r for r in best_ranks if r is not None], dtype=float)
    return {
        # the cell, e.g. cpu-small/mnist/continuous/flip+paper/s0
        "run": "/".join(run_dir.resolve().parts[-5:]),
        "round": int(state["round"]),
        "target": target,
        "num_classes": facts.num_classes,
        "benign_clients": len(benign),
        "warmed_up_clients": len(warmed),
        "selections": {
            "median": float(np.median(list(selected.values()))),
            "max": int(max(selected.values())),
            "never": int(sum(v == 0 for v in selected.values())),
        },
        "last_pairs_touching_target": touching,
        "backdoor_rank_largest_first": {
            "median": float(np.median(ranked)) if ranked.size else None,
            "first": int(np.sum(ranked == 1)),
            "top_10": int(np.sum(ranked <= 10)),
            "clients": len(ranked),
        },
        "last_pair_triggers": _overlaps([flips[c] for c in warmed], target, facts.true_mask),
        "universal_toward_target": _universal_overlap(
            [flips[c] for c in warmed], target, facts.true_mask
        ),
    }


def _fit_cell(entry: dict[str, Any], count: str = "") -> str:
    """``share / top-k (count)`` of a :func:`_fit_summary`, or ``none``."""
    if not entry["triggers"]:
        return "none"
    share, top = entry["median_l1_share_on_true_trigger"], entry["median_top_k_overlap"]
    return f"{share:.2f} / {top:.2f} ({entry['triggers']}{count})"


def _overlap_cell(overlaps: dict[str, Any]) -> str:
    return f"{_fit_cell(overlaps['to_target'])}; others {_fit_cell(overlaps['to_other'])}"


def _universal_cell(report: dict[str, Any]) -> str:
    entry = report["universal_toward_target"]
    flagged = f" clients; flagged by {entry['clients_flagging_target']}"
    return _fit_cell(entry, flagged)


def run_state_markdown(reports: list[dict[str, Any]]) -> str:
    """One table row per run (module docstring)."""
    lines = [
        "Generated by `python -m deepfl.flip.analysis run-state` (deepfl/flip/run_state.py) from "
        "the runs' last checkpoints.",
        "",
        "| run | round | benign clients warmed up | selections per benign client (median / max) "
        "| last pairs touching the target | backdoor pair's best rank, largest first (median; "
        "first; top 10) | last triggers toward the target: median share of mask L1 on the true "
        "trigger / top-k overlap (others) | last universal triggers toward the target: same "
        "(clients whose outlier test flagged it last) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        rank = r["backdoor_rank_largest_first"]
        median = "-" if rank["median"] is None else f"{rank['median']:.0f}"
        lines.append(
            f"| `{r['run']}` | {r['round']} | {r['warmed_up_clients']} of "
            f"{r['benign_clients']} | {r['selections']['median']:.0f} / {r['selections']['max']} "
            f"| {r['last_pairs_touching_target']} of {r['warmed_up_clients']} | {median}; "
            f"{rank['first']} of {rank['clients']}; {rank['top_10']} of {rank['clients']} | "
            f"{_overlap_cell(r['last_pair_triggers'])} | {_universal_cell(r)} |"
        )
    return "\n".join(lines) + "\n"
