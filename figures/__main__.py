"""Command line: rebuild figures and tables from saved results (never re-runs an experiment).

    python -m figures theory RESULTS.json [RESULTS.json ...] --out DIR
    python -m figures deep RUN_DIR [RUN_DIR ...] --out DIR [--tau TAU]
    python -m figures deep-theory RESULTS_DIR [...] --out DIR

``theory`` reads ``python -m theory.verify --json`` files and writes, per file,
``<stem>_loss_bounds.png`` (Theorem 1), ``<stem>_corollary1_counts.png``, ``<stem>_radii.png``
(Theorem 2) and ``<stem>_acc_asr.png`` (Table 3 over rounds), plus one ``table3_table4.md`` for all
files. ``deep`` reads deepfl run directories and writes ``acc_asr_over_rounds.png``,
``table_final_acc_asr.md`` and ``<run>_roc.png`` for each run that saved ``confidences.npz``.

    python -m figures reproduce results/<scale> --out DIR
    python -m figures readme [--check]

``reproduce`` reads the committed cells of a reproduction scale (``python -m deepfl.reproduce``) and
writes ``over_rounds_<dataset>.png`` (ASR / ACC over rounds per defense, band over seeds),
``roc.png`` (App. A.4), ``tau_tradeoff.png`` (App. A.9) and ``ablation_<table>.png`` for every
appendix table written there. ``readme`` regenerates the README's generated sections from
``results/`` (``--check``: exit 1 if stale). ``deep-theory`` reads ``python -m theory.verify --deep
--json`` files (and their ``.samples.npz``) and writes ``deep_loss_bounds.png``,
``deep_scatter.png`` and ``deep_theory_tables.md`` (:mod:`figures.deep_theory`); the README's
"Theory on deep models" section is the ``deep-theory`` section of ``readme``. A missing or malformed
input, an unwritable ``--out`` (checked before any input is read), or a run whose ``metrics.jsonl``
misses rounds (unless ``--allow-gaps``) prints ``error: <file>: <problem>`` and exits with status 3;
a ``--tau`` the inputs did not record exits with status 2 (fldata.cli).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from figures.deep_plots import plot_acc_asr_over_rounds, plot_roc, summarise_run
from figures.deep_theory import load_deep_theory_results, plot_deep_loss_bounds, plot_deep_scatter
from figures.deep_theory_text import deep_theory_tables
from figures.io import (
    ResultFileError,
    ResultRequestError,
    load_deep_run,
    load_theory_result,
    save_figure,
    write_text,
)
from figures.tables import deep_table_markdown, theory_tables_markdown
from figures.theory_plots import draw_all
from fldata.cli import check_writable_dir, main_guard

THEORY_TABLE_NAME = "table3_table4.md"
DEEP_FIGURE_NAME = "acc_asr_over_rounds.png"
DEEP_TABLE_NAME = "table_final_acc_asr.md"


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, suffixed ``-2``, ``-3``... where two inputs share one, so outputs never
    collide.
    """
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        stems.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return stems


def render_theory(
    result_paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write the theory figures of every result file and the combined Table 3 / Table 4 markdown.

    All inputs are loaded and validated before anything is written. Returns the written paths.
    """
    paths = [Path(path) for path in result_paths]
    results = [load_theory_result(path) for path in paths]
    out = Path(out_dir)
    written = []
    for stem, result in zip(_unique_stems(paths), results, strict=True):
        for suffix, figure in draw_all(result).items():
            written.append(save_figure(figure, out / f"{stem}_{suffix}.png"))
    table = theory_tables_markdown(
        [(path.name, result) for path, result in zip(paths, results, strict=True)]
    )
    written.append(write_text(out / THEORY_TABLE_NAME, table))
    return written


def render_deep(
    run_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    tau: float | None = None,
    allow_gaps: bool = False,
) -> list[Path]:
    """Write ACC/ASR over rounds (runs overlaid), the final ACC/ASR table, and ROC plots where
    saved.

    ``tau`` selects the confidence threshold of every curve and table cell; ``None`` uses each run's
    default (:func:`figures.deep_plots.default_tau`). A run with missing rounds is refused unless
    ``allow_gaps``. Returns the written paths.
    """
    runs = [load_deep_run(run_dir, allow_gaps) for run_dir in run_dirs]
    summaries = [summarise_run(run, tau) for run in runs]
    figures = {DEEP_FIGURE_NAME: plot_acc_asr_over_rounds(summaries)}
    for stem, run, summary in zip(
        _unique_stems([run.path for run in runs]), runs, summaries, strict=True
    ):
        if run.conf_clean is None or run.conf_backdoor is None:
            continue
        try:
            figures[f"{stem}_roc.png"] = plot_roc(
                run.conf_clean, run.conf_backdoor, title=f"Rejection ROC - {summary.label}"
            )
        except ValueError as error:
            raise ResultFileError(run.path / "confidences.npz", str(error)) from None
    out = Path(out_dir)
    written = [save_figure(figure, out / name) for name, figure in figures.items()]
    written.append(write_text(out / DEEP_TABLE_NAME, deep_table_markdown(summaries)))
    return written


def render_reproduce(
    scale_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Figures of one reproduction scale from its committed cells and tables
    (figures.reproduce_plots).
    """
    from deepfl.reproduce.compact import read_cell
    from figures.io import load_json
    from figures.reproduce_plots import (
        plot_ablation_bars,
        plot_over_rounds,
        plot_roc,
        plot_tau_tradeoff,
        trigger_figures,
    )

    scale_dir = Path(scale_dir)
    records = [read_cell(path) for path in sorted((scale_dir / "cells").glob("*/*/*/s*.json"))]
    if not records:
        raise ResultFileError(scale_dir / "cells", "no cell results found")
    main_rows = [r for r in records if not r["cell"]["setting"]]
    flip_continuous = [
        r
        for r in main_rows
        if r["cell"]["defense"] == "flip" and r["cell"]["attack"] == "continuous"
    ]
    figures = {
        f"over_rounds_{dataset}.png": plot_over_rounds(
            [r for r in main_rows if r["cell"]["dataset"] == dataset]
        )
        for dataset in sorted({r["cell"]["dataset"] for r in main_rows})
    }
    if flip_continuous:
        figures["roc.png"] = plot_roc(flip_continuous)
        figures["tau_tradeoff.png"] = plot_tau_tradeoff(flip_continuous)
    for table in ("a3", "a5", "a7", "a8", "a10", "a12", "a13"):
        path = scale_dir / f"{table}.json"
        rows = [row for row in load_json(path)["rows"] if row["seeds"]] if path.exists() else []
        if rows:
            figures[f"ablation_{table}.png"] = plot_ablation_bars(
                rows, f"{table} at {scale_dir.name}"
            )
    figures.update(trigger_figures(scale_dir / "cells"))
    out = Path(out_dir)
    return [save_figure(figure, out / name) for name, figure in figures.items()]


def render_deep_theory(
    sources: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]
) -> list[Path]:
    """Write the deep-probe figures and the bound-vs-actual tables (figures.deep_theory)."""
    results = load_deep_theory_results(sources)
    out = Path(out_dir)
    return [
        save_figure(plot_deep_loss_bounds(results), out / "deep_loss_bounds.png"),
        save_figure(plot_deep_scatter(results), out / "deep_scatter.png"),
        write_text(out / "deep_theory_tables.md", deep_theory_tables(results)),
    ]


def update_readme(
    readme: str | os.PathLike[str], results: str | os.PathLike[str], check: bool
) -> int:
    """Regenerate the README's generated sections; with ``check`` only report stale ones (exit
    1). Both report flagged rows whose reason states another seed count than the row has
    (:func:`figures.readme.reasons_out_of_date`; ``check`` exits 1 on them too).
    """
    from figures.readme import reasons_out_of_date, render, stale_sections

    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    stale = stale_sections(text, Path(results))
    old_reasons = reasons_out_of_date(Path(results))
    for problem in old_reasons:
        print(f"restate the reason in results/reasons.json: {problem}")
    if check:
        for name in stale:
            print(f"stale README section: {name} (run python -m figures readme)")
        return 1 if stale or old_reasons else 0
    write_text(path, render(text, Path(results)))
    print(f"{path}: regenerated {len(stale)} stale section(s)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m figures", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    theory = commands.add_parser(
        "theory", help="figures and Table 3/4 from theory.verify --json files"
    )
    theory.add_argument(
        "results", nargs="+", help="JSON files written by `python -m theory.verify --json`"
    )
    theory.add_argument("--out", required=True, help="output folder (created if missing)")
    deep = commands.add_parser(
        "deep", help="ACC/ASR figures and Tables 1-2 analogue from deepfl run folders"
    )
    deep.add_argument(
        "runs", nargs="+", help="deepfl run folders (config.json, metrics.jsonl, summary.json)"
    )
    deep.add_argument("--out", required=True, help="output folder (created if missing)")
    deep.add_argument(
        "--tau",
        type=float,
        default=None,
        help="confidence threshold to report (default: each run's own, else 0)",
    )
    deep.add_argument(
        "--allow-gaps",
        action="store_true",
        help="plot runs whose metrics.jsonl misses rounds (refused by default)",
    )
    reproduce = commands.add_parser(
        "reproduce", help="figures of a reproduction scale from results/<scale>"
    )
    reproduce.add_argument(
        "scale_dir", help="results/<scale> written by python -m deepfl.reproduce"
    )
    reproduce.add_argument("--out", required=True, help="output folder (created if missing)")
    deep_theory = commands.add_parser(
        "deep-theory", help="figures and tables from theory.verify --deep --json files"
    )
    deep_theory.add_argument(
        "results", nargs="+", help="folders of (or) JSON files written by theory.verify --deep"
    )
    deep_theory.add_argument("--out", required=True, help="output folder (created if missing)")
    readme = commands.add_parser(
        "readme", help="regenerate the README's generated sections from results/"
    )
    readme.add_argument("--readme", default="README.md")
    readme.add_argument("--results", default="results")
    readme.add_argument(
        "--check", action="store_true", help="only report stale sections (exit 1 if any)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 stale README sections or reasons with
    ``readme --check``, 2 usage, 3 bad input or unwritable --out)."""
    args = _parser().parse_args(argv)

    def body() -> int:
        if args.command == "readme":
            return update_readme(args.readme, args.results, args.check)
        check_writable_dir(args.out, "--out")
        if args.command == "theory":
            written = render_theory(args.results, args.out)
        elif args.command == "reproduce":
            written = render_reproduce(args.scale_dir, args.out)
        elif args.command == "deep-theory":
            written = render_deep_theory(args.results, args.out)
        else:
            written = render_deep(args.runs, args.out, args.tau, args.allow_gaps)
        for path in written:
            print(path)
        return 0

    return main_guard(body, usage=(ResultRequestError,), data=(ResultFileError,))


if __name__ == "__main__":
    sys.exit(main())
