"""The committed deep-probe results: the tables and figures beside them are what
``python -m figures deep-theory results/deep_theory --out results/deep_theory`` makes from the JSON
files, and every committed probe holds exactly on the last layer. (The README's ``deep-theory``
section is checked with the other generated sections, tests/figures/test_readme.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from figures.deep_theory import load_deep_theory_results
from figures.deep_theory_text import deep_theory_tables

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results" / "deep_theory"
pytestmark = pytest.mark.skipif(
    not any(RESULTS.glob("*.json")), reason="no deep-theory probes committed"
)


def test_tables_and_figures_match_the_committed_results():
    results = load_deep_theory_results([RESULTS])
    assert (RESULTS / "deep_theory_tables.md").read_text(encoding="utf-8") == deep_theory_tables(
        results
    ), "rerun: python -m figures deep-theory results/deep_theory --out results/deep_theory"
    for name in ("deep_loss_bounds.png", "deep_scatter.png"):
        assert (RESULTS / name).is_file()


def test_committed_probes_hold_exactly_on_the_last_layer():
    for result in load_deep_theory_results([RESULTS]):
        for part in ("last_layer_sgd", "last_layer_protocol"):
            assert (
                result.data[part]["violations_clean"] == 0
                and result.data[part]["violations_backdoor"] == 0
            )
        assert result.data["last_layer_protocol"]["deltaW_rel_error"] < 1e-10
        assert all(check["pass"] for check in result.data["checks"] if check["must_hold"]), (
            result.path
        )
