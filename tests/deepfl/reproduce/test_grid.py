"""The reproduction grid: every table's rows at every scale resolve to valid deepfl.run configs."""

from __future__ import annotations

import pytest

from deepfl.client import build_client_defense
from deepfl.flip import FlipConfig
from deepfl.reproduce.grid import FLIP_MODES, Cell, Row, baseline_row, flip_row
from deepfl.reproduce.scales import SCALES, get_scale
from deepfl.reproduce.tables import TABLES, get_table
from deepfl.run import build_parser, config_from_args


def _resolve(cell: Cell):
    return config_from_args(build_parser().parse_args(cell.run_args("runs/x")))


@pytest.mark.parametrize("scale_name", sorted(SCALES))
def test_every_baseline_cell_resolves(scale_name: str) -> None:
    scale = get_scale(scale_name)
    for spec in TABLES.values():
        for row in spec.build(scale):
            if row.defense == "flip":
                # FLIP rows need the FLIP modes (issue 17); checked in test_flip_rows_resolve
                continue
            cfg = _resolve(Cell(row, scale, 1))
            assert (cfg.data.dataset, cfg.attack.kind, cfg.seed) == (row.dataset, row.attack, 1)
            assert cfg.defense.server == row.defense and cfg.run.progress is False


@pytest.mark.parametrize("scale_name", sorted(SCALES))
def test_flip_rows_resolve(scale_name: str) -> None:
    """Every FLIP row runs its mode on its data set: the engine's FlipDefense has exactly the config
    of ``FlipConfig.<mode>(dataset, **ablation fields)``, and the reported taus are the mode's tau
    and 0."""
    scale = get_scale(scale_name)
    seen: set[str] = set()
    for spec in TABLES.values():
        for row in spec.build(scale):
            if row.defense != "flip":
                continue
            cfg = _resolve(Cell(row, scale, 0))
            params = dict(cfg.defense.client_params)
            assert (
                cfg.defense.client == "flip"
                and cfg.defense.server == "fedavg"
                and params.pop("mode") == row.mode
            )
            defense = build_client_defense(
                "flip", cfg.defense.client_params, dataset=cfg.data.dataset
            )
            expected = FlipConfig.for_mode(row.mode, row.dataset, **params)
            assert defense.config == expected, row.identity
            if row.attack == "continuous" and spec.name != "a6":
                assert row.taus == (expected.rejection_tau, 0.0), row.identity
            assert set(row.taus) <= set(cfg.run.taus), row.identity
            seen.add(row.mode)
    assert seen == (set(FLIP_MODES) if not scale.defenses or "flip" in scale.defenses else set())


def test_bulyan_rows_fit_n_at_least_4f_plus_3() -> None:
    scale = get_scale("cpu-small")
    cfg = _resolve(Cell(baseline_row("mnist", "continuous", "bulyan_krum"), scale, 0))
    f = cfg.defense.assumed_attackers
    assert cfg.server.clients_per_round >= 4 * f + 3


def test_cells_that_differ_only_in_defense_share_everything_else() -> None:
    scale = get_scale("cpu-small")
    configs = [
        _resolve(Cell(baseline_row("mnist", "continuous", name), scale, 2)).to_dict()
        for name in ("fedavg", "krum", "fltrust")
    ]
    for cfg in configs:
        del cfg["defense"]
    assert configs[0] == configs[1] == configs[2]


def test_row_keys_paths_and_shared_cells() -> None:
    row = flip_row("mnist", "continuous", "paper", "ts2", ("attack.trigger_scale=2",))
    assert row.variant == "paper-ts2" and row.key == "flip+paper-ts2"
    assert Cell(row, get_scale("cpu-small"), 3).path == "mnist/continuous/flip+paper-ts2/s3"
    assert row.taus == (0.3, 0.0)
    assert flip_row("cifar10", "continuous", "paper").taus == (0.4, 0.0)  # the release's CIFAR tau
    # Table 2's FLIP cells are A.4's and A.6's: the same paths, so the driver runs them once.
    scale = get_scale("cpu-small")
    table2 = {
        Cell(r, scale, 0).path for r in get_table("table2").build(scale) if r.defense == "flip"
    }
    a6 = {Cell(r, scale, 0).path for r in get_table("a9").build(scale)}
    assert a6 == table2


def test_bad_rows_and_names_are_refused() -> None:
    with pytest.raises(ValueError, match="must match"):
        Row("mnist", "continuous", "Krum Defense")
    with pytest.raises(ValueError, match="unknown table"):
        get_table("table9")
    with pytest.raises(ValueError, match="defines data sets"):
        get_scale("ci").layer("cifar10")


def test_every_table_header_states_the_scale_overrides() -> None:
    """CIFAR-10 at cpu-small swaps the model and the pre-training length; its tables must say so,
    and every stated override must be one the cells really get."""
    from deepfl.reproduce.aggregate import table_markdown
    from deepfl.reproduce.tables import get_table

    scale = get_scale("cpu-small")
    line = scale.describe()
    assert "preset `cpu-small`" in line
    assert "cifar10: model.name=cnn, benign.lr=0.03, attack.lr=0.015, run.rounds=120" in line
    cfg = _resolve(
        Cell(next(r for r in get_table("table1").build(scale) if r.dataset == "cifar10"), scale, 0)
    )
    assert (cfg.model.name, cfg.run.rounds, cfg.run.pretrain_rounds) == ("cnn", 120, 60)
    assert (cfg.benign.lr, cfg.attack.lr) == (0.03, 0.015)
    assert f"Scale `cpu-small`: {line}." in table_markdown(get_table("table1"), scale, [])
    assert get_scale("paper").describe() == "preset `paper` (deepfl.presets)"
