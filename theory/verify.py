"""``python -m theory.verify``: check Theorems 1-2 and Corollary 1 of FLIP on the linear engine.

The command line (this module): ``--round R`` attack rounds after pre-training, then a one-round
probe (round R+1 from ``W^{nd}_R``); what runs and what is checked is :mod:`theory.verify_protocol`,
the JSON file and the console output are :mod:`theory.verify_report`.

``--protocol NAME`` (:mod:`theory.protocols`) sets config fields and the default round: ``default``
(the engine's protocol, round 50) or ``paper-table3`` (the setting fitted to the paper's no-defense
Table 3; its Table 3 lines name it).

Every line is PASS/FAIL (must hold) or INFO. Exit status (fldata.cli): 1 if any must-hold check
fails, 2 for a usage or config error, 3 for an I/O or data error (missing data, an unwritable
``--json`` / ``--save-state`` / ``--cache-dir``, checked before any data is read). The
must-hold checks: zero per-sample Theorem-1 ordering violations (twin and probe, clean and
backdoor); closed-form vs simulated DeltaW relative error < 1e-10 and the F-hat model reproducing
the realised DeltaW (when the closed form applies); ``f(0) <= 0``; the T2-B affine law at the
realised delta; T2-C ``dL_c <= UB_c <= C(||delta||_inf) <= simple form``; the T2-A/T2-B soundness
checks whenever the realised error lies inside the radius; certified <= actual for every tau.

``--json PATH`` writes schema ``fliplab.theory.verify/1`` (keys in :mod:`theory.verify_report`;
typed in :mod:`theory.results`). ``--save-state DIR`` writes ``DIR/state.npz`` + ``DIR/state.json``
(layout in :mod:`theory.saved_state`, which also recomputes the numbers).

``--deep RUN_DIR --round R``: the same theorems on a deepfl run's last layer
(:mod:`theory.deep.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fldata.cli import check_writable_dir, check_writable_file, main_guard
from fldata.params import (
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    UNIT_FLOAT,
    argparse_type,
)
from linear_fl.parallel import blas_threads
from theory.deep.cli import add_deep_arguments, run_deep
from theory.frozen import FROZEN_MODELS
from theory.protocols import PROTOCOLS
from theory.report import failed_must_hold, write_report_json
from theory.saved_state import save_verification_state
from theory.verify_protocol import (
    DEFAULT_METRICS_TAU,
    DEFAULT_TAUS,
    AnalysisSettings,
    Verification,
    verify,
)
from theory.verify_report import VERSION, build_payload, print_report

if TYPE_CHECKING:
    from linear_fl.config import LinearFLConfig

# Numeric options checked like config fields (fldata.params): a bad value is a usage error (exit 2)
_tau = argparse_type(UNIT_FLOAT, float)
_positive_int = argparse_type(POSITIVE_INT, int)
_seed = argparse_type(NON_NEGATIVE_INT, int)
_clean_budget = argparse_type(NON_NEGATIVE_FLOAT, float)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m theory.verify`` (linear and ``--deep`` options)."""
    parser = argparse.ArgumentParser(
        prog="python -m theory.verify",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_setting_arguments(parser)
    _add_analysis_arguments(parser)
    _add_output_arguments(parser)
    _add_data_arguments(parser)
    add_deep_arguments(parser)
    return parser


def _add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """Options choosing the experiment: round, protocol, data set and attack."""
    parser.add_argument(
        "--round",
        type=_positive_int,
        default=None,
        help="attack round R after pre-training (default 50, or the --protocol's round); the probe "
        "is round R+1 from W^nd_R. Single-shot: the malicious client poisons in round R unless "
        "--config attack_round=K, so the probe is the first hardening round after the poisoning",
    )
    parser.add_argument(
        "--protocol",
        default="default",
        choices=tuple(PROTOCOLS),
        help="named setting (theory.protocols): 'default', or 'paper-table3' = the setting fitted "
        "to the paper's no-defense Table 3 (--config still overrides it)",
    )
    parser.add_argument(
        "--dataset", default="mnist", choices=("mnist", "fashion-mnist", "cifar10", "digits")
    )
    parser.add_argument(
        "--attack",
        default="continuous",
        choices=("continuous", "single-shot"),
        help="continuous: poisons every round; single-shot: poisons once (round R by default), "
        "update scaled by 'scale' (default 1/p_M = model replacement)",
    )


def _add_analysis_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the analysis: thresholds, seed, frozen model and the T2-C budget."""
    parser.add_argument(
        "--tau",
        type=_tau,
        nargs="+",
        default=list(DEFAULT_TAUS),
        help="confidence thresholds for Corollary 1 (default 0 0.4 0.6 0.8)",
    )
    parser.add_argument(
        "--metrics-tau",
        type=_tau,
        default=None,
        help="threshold of the Table 3 analogue (default 0.4 continuous, 0.0 single-shot)",
    )
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument(
        "--model",
        default="F-hat",
        choices=FROZEN_MODELS,
        help="frozen-residual model (default F-hat)",
    )
    parser.add_argument(
        "--clean-budget",
        type=_clean_budget,
        default=0.05,
        help="the constant C of T2-C (UB_c <= C), in nats (default 0.05)",
    )


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of what is written and shown: JSON, saved state, per-round series, progress."""
    parser.add_argument(
        "--json", type=Path, default=None, help="write the results to this JSON file (atomic)"
    )
    parser.add_argument(
        "--save-state",
        type=Path,
        default=None,
        metavar="DIR",
        help="write DIR/state.npz + state.json",
    )
    parser.add_argument(
        "--all-rounds",
        action="store_true",
        help="also a per-round series for rounds 1..R (a probe per round)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options limiting the data, the pre-training cache, extra LinearFLConfig fields and the BLAS
    threads."""
    parser.add_argument(
        "--blas-threads",
        type=_positive_int,
        default=1,
        help="threads of each BLAS call (default 1: the twin run's two threads take the cores, and "
        "the README's numbers are bit for bit those of one BLAS thread)",
    )
    parser.add_argument(
        "--train-limit",
        type=_positive_int,
        default=None,
        help="use only the first N training images",
    )
    parser.add_argument(
        "--test-limit", type=_positive_int, default=None, help="use only the first N test images"
    )
    parser.add_argument(
        "--cache-dir", type=str, default=None, help="pre-training cache folder of linear_fl"
    )
    parser.add_argument(
        "--config",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra LinearFLConfig fields, e.g. lr=0.5 inversion_maxiter=5 (values parsed as JSON)",
    )


def _config_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs to a dict; values are parsed as JSON when possible (``null``, numbers,
    lists).
    """
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--config expects KEY=VALUE pairs, got {pair!r}")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def make_config(args: argparse.Namespace) -> LinearFLConfig:
    """The ``LinearFLConfig`` of this run (``--train-limit``/``--test-limit`` become
    ``max_train_samples``/ ``max_test_samples``: the slice is taken before pre-training).
    Single-shot: ``attack_round`` = ``--round`` unless ``--config attack_round=K`` is given."""
    from linear_fl.config import LinearFLConfig

    resolve_round(args)
    values: dict[str, Any] = {
        "dataset": args.dataset,
        "seed": args.seed,
        "attack": args.attack,
        **PROTOCOLS[args.protocol].config(args.attack),
        **_config_overrides(args.config),
    }
    if values["attack"] == "single-shot" and "attack_round" not in values:
        values["attack_round"] = args.round
    if args.cache_dir is not None:
        values["cache_dir"] = args.cache_dir
    if args.train_limit is not None:
        values["max_train_samples"] = args.train_limit
    if args.test_limit is not None:
        values["max_test_samples"] = args.test_limit
    return LinearFLConfig.from_dict(values)


def resolve_round(args: argparse.Namespace) -> int:
    """``--round``, or the ``--protocol``'s round for the attack when it was not given (sets
    ``args.round``).
    """
    if args.round is None:
        args.round = PROTOCOLS[args.protocol].round(args.attack)
    return args.round


def analysis_settings(args: argparse.Namespace) -> AnalysisSettings:
    """The per-round analysis options: sorted distinct ``--tau``, ``--metrics-tau`` (default by
    attack), ``--model``, ``--clean-budget``."""
    metrics_tau = DEFAULT_METRICS_TAU[args.attack] if args.metrics_tau is None else args.metrics_tau
    return AnalysisSettings(
        taus=sorted(set(args.tau)),
        metrics_tau=metrics_tau,
        model_kind=args.model,
        clean_budget=args.clean_budget,
    )


def save_state(args: argparse.Namespace, run: Verification, config: LinearFLConfig) -> Path:
    """``--save-state DIR``: the arrays of round R and its probe (:mod:`theory.saved_state`)."""
    R = run.round
    meta = {
        "config": config.to_dict(),
        "seed": args.seed,
        "round": R,
        "attack": args.attack,
        "theory_version": VERSION,
        "probe_round": run.result.probe.round,
    }
    return save_verification_state(
        args.save_state,
        run.setup,
        run.twin.nodef.globals[R],
        run.twin.defense.globals[R],
        run.raw_probe,
        meta,
    )


def run(args: argparse.Namespace) -> int:
    """Run the protocol, print the report, write the outputs; returns the exit status (0 iff every
    must-hold check passed)."""
    started = time.perf_counter()
    resolve_round(args)
    config = make_config(args)
    settings = analysis_settings(args)
    verification = verify(
        config, args.round, settings, all_rounds=args.all_rounds, progress=not args.no_progress
    )
    labels = {
        "dataset": args.dataset,
        "attack": args.attack,
        "seed": args.seed,
        "protocol": args.protocol,
        "taus": settings.taus,
    }
    payload = build_payload(verification, config, labels, (args.train_limit, args.test_limit))
    payload["timings"]["total"] = time.perf_counter() - started
    print_report(payload, verification.checks)
    if args.json is not None:
        write_report_json(args.json, payload)
        print(f"wrote {args.json}")
    if args.save_state is not None:
        path = save_state(args, verification, config)
        print(f"wrote {path} (reload with theory.saved_state.load_verification_state)")
    return 1 if failed_must_hold(verification.checks) else 0


def check_outputs(args: argparse.Namespace, config: LinearFLConfig) -> None:
    """Fail before any data is read if an output or the cache folder cannot be written."""
    if args.json is not None:
        check_writable_file(args.json, "--json")
    if args.save_state is not None:
        check_writable_dir(args.save_state, "--save-state")
    if config.use_cache:
        check_writable_dir(
            config.resolved_cache_dir(), "--cache-dir (the linear_fl pre-training cache)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m theory.verify``; returns the exit status (module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (
        args.deep is not None or args.from_state is not None
    ):  # the CNN's last layer (theory.deep.cli)
        return run_deep(args)
    try:
        config = make_config(args)
    except ValueError as exc:  # LinearFLConfig's checks name the key: a usage error (exit 2)
        parser.error(str(exc))

    def body() -> int:
        check_outputs(args, config)
        with blas_threads(args.blas_threads):
            return run(args)

    return main_guard(body)


if __name__ == "__main__":
    sys.exit(main())
