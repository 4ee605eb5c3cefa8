"""Command line:
``python -m deepfl.reproduce TABLE [TABLE ...] --scale SCALE --seeds 0 1 2 --workers N``.

Examples
    python -m deepfl.reproduce table2 --scale cpu-small --list      # the grid, one line per cell
    python -m deepfl.reproduce table2 --scale cpu-small --dry-run   # the deepfl.run commands
    python -m deepfl.reproduce table1 table2 --scale cpu-small --seeds 0 1 2 --workers 2 \\
        --out results/
    python -m deepfl.reproduce table2 --scale paper --device cuda --workers 6 \\
        --defenses fedavg flip
    # the seeds of each row as one population (deepfl.population), e.g. on a GPU
    python -m deepfl.reproduce table2 --scale paper --device cuda --batch-seeds --workers 4
    # rebuild the tables from results/
    python -m deepfl.reproduce table2 --scale cpu-small --aggregate-only

Cells already in ``results/<scale>/cells/`` are skipped (``--force`` reruns them); killed runs
resume from their run directories under ``--runs``. A run directory made with another config than
the cell's today is not reused (the cell fails); a committed cell made with another config is
reported (``--list`` shows ``stale``; ``--force`` reruns it). After running,
``results/<scale>/<table>.{json,csv,md}`` are (re)written from every committed cell of the table, so
results accumulate across machines and days.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepfl.reproduce.aggregate import aggregate_table, seeds_present, write_table
from deepfl.reproduce.grid import Cell
from deepfl.reproduce.scales import SCALES, get_scale
from deepfl.reproduce.tables import TABLE_ALIASES, TABLES, get_table
from fldata.cli import UsageError, check_writable_dir, main_guard


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deepfl.reproduce",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "tables",
        nargs="+",
        metavar="TABLE",
        choices=[*TABLES, *TABLE_ALIASES],
        help=f"one or more of {', '.join([*TABLES, *TABLE_ALIASES])}",
    )
    parser.add_argument("--scale", required=True, choices=sorted(SCALES))
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the scale's, 0 1 2)")
    parser.add_argument("--workers", type=int, default=1, help="cells run at once (processes)")
    parser.add_argument(
        "--device", default="cpu", help="cpu | cuda | cuda:N (passed to every cell)"
    )
    parser.add_argument("--out", default="results", help="results root (compact cells and tables)")
    parser.add_argument(
        "--runs", default="runs/reproduce", help="root of the cells' run directories"
    )
    parser.add_argument("--datasets", nargs="+", help="keep only these data sets")
    parser.add_argument("--attacks", nargs="+", choices=["single-shot", "continuous"])
    parser.add_argument(
        "--defenses", nargs="+", help="keep only these row defenses (e.g. fedavg krum flip)"
    )
    parser.add_argument("--variants", nargs="+", help="keep only these variants ('' = none)")
    parser.add_argument("--list", action="store_true", help="print the grid and exit")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the deepfl.run commands and exit"
    )
    parser.add_argument("--force", action="store_true", help="rerun cells whose results exist")
    parser.add_argument(
        "--aggregate-only", action="store_true", help="only rebuild the tables from results"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads per cell (0: cores / workers)"
    )
    parser.add_argument(
        "--batch-seeds",
        action="store_true",
        help="run the seeds of a row as one population, their vectorisable clients batched "
        "(deepfl.population; sets run.vectorise=true in those cells)",
    )
    return parser


def _keep(value: str, allowed: list[str] | None) -> bool:
    return allowed is None or value in allowed


def select_rows(args: argparse.Namespace) -> dict[str, list]:
    """Table name -> its rows at the scale, after the --datasets/--attacks/--defenses/--variants
    filters.
    """
    scale = get_scale(args.scale)
    chosen = {}
    for name in args.tables:
        spec = get_table(name)
        rows = [
            row
            for row in spec.build(scale)
            if _keep(row.dataset, args.datasets)
            and _keep(row.attack, args.attacks)
            and _keep(row.defense, args.defenses)
            and _keep(row.variant, args.variants)
        ]
        chosen[spec.name] = rows
    return chosen


def _cells(rows_by_table: dict[str, list], args: argparse.Namespace) -> list[Cell]:
    scale = get_scale(args.scale)
    seeds = args.seeds or list(scale.default_seeds)
    unique: dict[str, Cell] = {}
    for rows in rows_by_table.values():
        for row in rows:
            for seed in seeds:
                cell = Cell(row, scale, seed)
                unique.setdefault(cell.path, cell)
    return list(unique.values())


def main(argv: list[str] | None = None) -> int:
    """``python -m deepfl.reproduce``; exit 0 done, 1 a cell failed, 2 usage, 3 I/O (fldata.cli)."""
    args = build_parser().parse_args(argv)
    return main_guard(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    """:func:`main`'s body: select the cells, run them, write the tables."""
    try:
        rows_by_table = select_rows(args)
    except ValueError as error:
        raise UsageError(str(error)) from None
    from deepfl.reproduce import driver  # torch is needed from here on

    cells = _cells(rows_by_table, args)
    results_root = Path(args.out)
    if args.list or args.dry_run:
        return driver.show(cells, args, results_root)
    check_writable_dir(results_root, "--out")  # before any cell runs
    if not args.aggregate_only:
        check_writable_dir(args.runs, "--runs")
    code = 0
    if not args.aggregate_only:
        code = driver.run_grid(cells, args, results_root)
    write_tables(list(rows_by_table), args, results_root)
    return code


def write_tables(names: list[str], args: argparse.Namespace, results_root: Path) -> None:
    """Each table whole: every row at the scale over every seed in ``results_root`` (and those
    asked for). The filters choose the cells that run, not what a table shows, so adding one seed
    or one data set never shrinks a table to it."""
    scale = get_scale(args.scale)
    seeds = sorted(set(args.seeds or scale.default_seeds) | set(seeds_present(results_root, scale)))
    for name in names:
        spec = get_table(name)
        rows = aggregate_table(spec, scale, spec.build(scale), seeds, results_root)
        paths = write_table(spec, scale, rows, results_root)
        print(f"wrote {', '.join(str(p) for p in paths)}")


if __name__ == "__main__":
    sys.exit(main())
