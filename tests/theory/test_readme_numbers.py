"""The README's linear-engine numbers are the committed results in ``results/theory/`` (none typed by hand).

:func:`readme_values` formats each number from the JSON files; the test checks that every one appears in
README.md as formatted. Regenerate the results (``python -m theory.verify ... --json``,
``python -m theory.table3_gaps``) and the README text together.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "theory"
WEAK_HARDENING = ("lambda = (1/2, 1/2)", "augmented step x 1/2", "augmented step x 1/4", "stamped fraction 0.5",
                  "stamped fraction 0.1")


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _pair(metrics: dict, side: str) -> str:
    return f"{100 * metrics[side]['acc']:.2f} / {100 * metrics[side]['asr']:.2f}"


def _arrow(metrics: dict) -> str:
    return f"{_pair(metrics, 'no_defense')} -> FLIP {_pair(metrics, 'defense')}"


def _theory_table_values() -> dict[str, str]:
    cont, single = _load("verify-round50.json"), _load("verify-round50-single-shot.json")
    jensen = [str(row["certified_jensen"]["newly_neutralised"]) for row in cont["corollary1"]]
    actual = [str(row["newly_neutralised_actual"]) for row in cont["corollary1"]]
    probe_b, twin_b = cont["probe"]["theorem1"]["backdoor"], cont["theorem1"]["backdoor"]
    return {"table3 continuous": _arrow(cont["metrics"]),
            "table3 single-shot probe": _pair(single["probe"]["metrics"], "no_defense") + " -> "
            + _pair(single["probe"]["metrics"], "defense"),
            "corollary": f"{' / '.join(jensen)} of the {' / '.join(actual)}",
            "delta": f"||delta||_inf = {cont['theorem2']['delta_inf']:.3f}",
            "jensen": (f"LB^J_b = {probe_b['lb_jensen']:.2f} on the probe (actual dL_b = {probe_b['actual']:.2f}), "
                       f"{twin_b['lb_jensen']:.2f} on the twin pair (actual {twin_b['actual']:.2f})")}


def _gap_values() -> dict[str, str]:
    gaps = _load("table3-gaps.json")
    rows = {row["variant"]["name"]: row for row in gaps["accuracy_cost"]}
    protocols = {row["protocol"]["name"]: row for row in gaps["protocols"]}
    mech = gaps["mechanism"]
    weak = [rows[name]["defense"]["asr@0.4"] for name in WEAK_HARDENING]
    oracle, truth = rows["invert the true target only"], rows["ground-truth trigger"]
    at5 = protocols["paper-table3"]["by_round"]["5"]
    return {"SHARE": f"{100 * rows['FLIP (default)']['selected_target_share']:.0f}%",
            "ORACLE": f"{oracle['defense']['acc@0.4']:.2f} / {oracle['defense']['asr@0.4']:.2f}",
            "ORACLECOST": f"{oracle['acc_cost@0.4']:.2f}", "GTCOST": f"{truth['acc_cost@0.4']:.2f}",
            "GTASR": f"{truth['defense']['asr@0.4']:.2f}", "WEAKASR": f"{min(weak):.2f}-{max(weak):.2f}",
            "ITERCOST": f"{rows['L-BFGS-B 30 iterations']['acc_cost@0.4']:.2f}",
            "INKED": f"{mech['train_images_with_ink_under_trigger']} of the {mech['train_images']}",
            "GB": f"{mech['benign_gradient_norm_on_trigger_weights']:.2e}",
            "GM": f"{mech['malicious_gradient_norm_on_trigger_weights']:.2e}",
            "PT3ND": f"{at5['acc@0.4']:.2f} / {at5['asr@0.4']:.2f}"}


def _protocol_values() -> dict[str, str]:
    cont, single = _load("verify-paper-table3.json"), _load("verify-paper-table3-single-shot.json")
    m, probe = cont["metrics"], single["probe"]["metrics"]
    cost = 100 * (m["no_defense"]["acc"] - m["defense"]["acc"])
    return {"PT3D": f"{_pair(m, 'defense')} (a cost of {cost:.2f} points)",
            "PT3SS": (f"{_arrow(single['metrics'])} right after the poisoning, {_pair(probe, 'no_defense')} -> "
                      f"{_pair(probe, 'defense')} in the first hardening round"),
            "2T": _pair(_load("verify-round50-blas-2-threads.json")["metrics"], "defense")}


def readme_values() -> dict[str, str]:
    """Placeholder name -> the text the README shows for it."""
    return {**_theory_table_values(), **_gap_values(), **_protocol_values()}


@pytest.mark.parametrize("name, text", sorted(readme_values().items()))
def test_readme_shows_the_committed_number(name, text):
    assert text in (ROOT / "README.md").read_text(), f"README should show {name} as {text!r} (from results/theory)"
