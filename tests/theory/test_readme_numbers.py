"""The README's linear-engine numbers come from the committed results in ``results/theory/``.

The "Linear Table 3" section is generated (``theory.readme_table3``, checked by
``tests/figures/test_readme.py``); the table of claims above it quotes ``verify-round50*.json``, and
:func:`claims_values` formats those numbers so the test can check each one appears in README.md as
formatted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from theory.readme_table3 import FILES, linear_table3_section

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results" / "theory"


def _load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _pair(metrics: dict, side: str) -> str:
    return f"{100 * metrics[side]['acc']:.2f} / {100 * metrics[side]['asr']:.2f}"


def claims_values() -> dict[str, str]:
    """Name -> the text the README's table of claims shows for it (continuous and single-shot, round
    50).
    """
    cont, single = _load("verify-round50.json"), _load("verify-round50-single-shot.json")
    jensen = [str(row["certified_jensen"]["newly_neutralised"]) for row in cont["corollary1"]]
    actual = [str(row["newly_neutralised_actual"]) for row in cont["corollary1"]]
    probe_b, twin_b, probe = (
        cont["probe"]["theorem1"]["backdoor"],
        cont["theorem1"]["backdoor"],
        single["probe"],
    )
    return {
        "table3 continuous": f"{_pair(cont['metrics'], 'no_defense')} -> FLIP "
        f"{_pair(cont['metrics'], 'defense')}",
        "table3 single-shot probe": f"{_pair(probe['metrics'], 'no_defense')} -> "
        f"{_pair(probe['metrics'], 'defense')}",
        "corollary": f"{' / '.join(jensen)} of the {' / '.join(actual)}",
        "delta": f"||delta||_inf = {cont['theorem2']['delta_inf']:.3f}",
        "relative error": f"to {cont['theorem2']['deltaW_rel_error']:.0e} relative",
        "jensen": (
            f"LB^J_b = {probe_b['lb_jensen']:.2f} on the probe (actual dL_b = "
            f"{probe_b['actual']:.2f}), {twin_b['lb_jensen']:.2f} on the twin pair (actual "
            f"{twin_b['actual']:.2f})"
        ),
    }


@pytest.mark.parametrize("name, text", sorted(claims_values().items()))
def test_readme_claims_show_the_committed_number(name, text):
    assert text in (ROOT / "README.md").read_text(), (
        f"README should show {name} as {text!r} (results/theory)"
    )


def test_linear_table3_section_names_missing_results(tmp_path):
    assert linear_table3_section(tmp_path).startswith(
        "Not generated yet: missing results/theory/" + FILES[0]
    )
