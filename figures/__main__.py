"""Command line: rebuild figures and tables from saved results (never re-runs an experiment).

    python -m figures theory RESULTS.json [RESULTS.json ...] --out DIR
    python -m figures deep RUN_DIR [RUN_DIR ...] --out DIR [--tau TAU]

``theory`` reads ``python -m theory.verify --json`` files and writes, per file, ``<stem>_loss_bounds.png``
(Theorem 1), ``<stem>_corollary1_counts.png``, ``<stem>_radii.png`` (Theorem 2) and ``<stem>_acc_asr.png``
(Table 3 over rounds), plus one ``table3_table4.md`` for all files.
``deep`` reads deepfl run directories and writes ``acc_asr_over_rounds.png``, ``table_final_acc_asr.md``
and ``<run>_roc.png`` for each run that saved ``confidences.npz``.
A missing or malformed input prints ``error: <file>: <problem>`` and exits with status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from figures.deep_plots import plot_acc_asr_over_rounds, plot_roc, summarise_run
from figures.io import ResultFileError, load_deep_run, load_theory_result, save_figure, write_text
from figures.tables import deep_table_markdown, theory_tables_markdown
from figures.theory_plots import draw_all

THEORY_TABLE_NAME = "table3_table4.md"
DEEP_FIGURE_NAME = "acc_asr_over_rounds.png"
DEEP_TABLE_NAME = "table_final_acc_asr.md"


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems, suffixed ``-2``, ``-3``... where two inputs share one, so outputs never collide."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        stems.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return stems


def render_theory(result_paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the theory figures of every result file and the combined Table 3 / Table 4 markdown.

    All inputs are loaded and validated before anything is written. Returns the written paths.
    """
    paths = [Path(path) for path in result_paths]
    results = [load_theory_result(path) for path in paths]
    out = Path(out_dir)
    written = []
    for stem, result in zip(_unique_stems(paths), results):
        for suffix, figure in draw_all(result).items():
            written.append(save_figure(figure, out / f"{stem}_{suffix}.png"))
    table = theory_tables_markdown([(path.name, result) for path, result in zip(paths, results)])
    written.append(write_text(out / THEORY_TABLE_NAME, table))
    return written


def render_deep(run_dirs: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                tau: float | None = None) -> list[Path]:
    """Write ACC/ASR over rounds (runs overlaid), the final ACC/ASR table, and ROC plots where saved.

    ``tau`` selects the confidence threshold of every curve and table cell; ``None`` uses each run's
    default (:func:`figures.deep_plots.default_tau`). Returns the written paths.
    """
    runs = [load_deep_run(run_dir) for run_dir in run_dirs]
    summaries = [summarise_run(run, tau) for run in runs]
    figures = {DEEP_FIGURE_NAME: plot_acc_asr_over_rounds(summaries)}
    for stem, run, summary in zip(_unique_stems([run.path for run in runs]), runs, summaries):
        if run.conf_clean is None or run.conf_backdoor is None:
            continue
        try:
            figures[f"{stem}_roc.png"] = plot_roc(run.conf_clean, run.conf_backdoor,
                                                 title=f"Rejection ROC - {summary.label}")
        except ValueError as error:
            raise ResultFileError(run.path / "confidences.npz", str(error)) from None
    out = Path(out_dir)
    written = [save_figure(figure, out / name) for name, figure in figures.items()]
    written.append(write_text(out / DEEP_TABLE_NAME, deep_table_markdown(summaries)))
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m figures", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    theory = commands.add_parser("theory", help="figures and Table 3/4 from theory.verify --json files")
    theory.add_argument("results", nargs="+", help="JSON files written by `python -m theory.verify --json`")
    theory.add_argument("--out", required=True, help="output folder (created if missing)")
    deep = commands.add_parser("deep", help="ACC/ASR figures and Tables 1-2 analogue from deepfl run folders")
    deep.add_argument("runs", nargs="+", help="deepfl run folders (config.json, metrics.jsonl, summary.json)")
    deep.add_argument("--out", required=True, help="output folder (created if missing)")
    deep.add_argument("--tau", type=float, default=None,
                      help="confidence threshold to report (default: each run's own, else 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input)."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "theory":
            written = render_theory(args.results, args.out)
        else:
            written = render_deep(args.runs, args.out, args.tau)
    except ResultFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
