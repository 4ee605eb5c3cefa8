"""``python -m theory.verify``: check Theorems 1-2 and Corollary 1 of FLIP on the linear engine.

Protocol (THEORY.md section 10): pre-train (cached), run the twin process for ``--round R`` attack
rounds without and with the FLIP defense, then

1. Theorem 1 on the realised twin pair ``(W^{nd}_R, W^{d}_R)`` and on the probe pair;
2. Theorem 2 (paper-literal ``eps_P``, corrected T2-A/B/C) on the one-round probe: round R+1 from the
   common start ``W^{nd}_R``, with and without hardening (frozen model ``F-hat`` by default);
3. Corollary 1 counts (actual and certified) on the probe pair for each ``--tau``;
4. ACC/ASR without and with defense on the twin pair (Table 3 analogue, paper numbers beside ours)
   and the Table 4 counts ``N^{acc}``, ``N^{asr}`` with rejected counts.

Single-shot protocol: the malicious client poisons in round R (``attack_round`` defaults to ``--round``;
``--config attack_round=K`` overrides it) with model replacement (``scale`` default ``1/p_M``,
``malicious_local_epochs`` default 10, see ``linear_fl.config``), so the twin pair after R rounds is
the pair right after the poisoning: the no-defense ASR spike. The FLIP twin cannot undo it in that
same round (its round-R inversion ran on the still clean ``W^{d}_{R-1}``), so its ASR is also high
there. The probe, round R+1 from the backdoored ``W^{nd}_R``, is the first round in which the benign
client inverts the implanted backdoor and hardens against it: Theorems 1-2 and Corollary 1 are checked
there, and for single-shot the Table 3 analogue is printed for the probe pair as well (no defense vs
FLIP after round R+1 from the common ``W^{nd}_R``). The malicious client does not poison in the probe
round (it trains on clean data); the closed forms hold for any oblivious malicious update (THEORY.md
sections 2, 10). Probing the poisoning round itself (from ``W^{nd}_{R-1}``) would invert a trigger from
a model without a backdoor and certify nothing.

``--protocol NAME`` (:mod:`theory.protocols`) sets config fields and the default round: ``default`` (the
engine's protocol, round 50) or ``paper-table3`` (the setting fitted to the paper's no-defense Table 3; its Table 3
lines name it). The no-defense twin runs in a background thread (bitwise the sequential result) and the
per-round ACC/ASR of the twins is not computed (not reported).

Every line is PASS/FAIL (must hold) or INFO. Exit status (fldata.cli): 1 if any must-hold check
fails, 2 for a usage or config error, 3 for an I/O or data error (missing data, an unwritable
``--json`` / ``--save-state`` / ``--cache-dir``, checked before any data is read). The
must-hold checks: zero per-sample Theorem-1 ordering violations (twin and probe, clean and
backdoor); closed-form vs simulated DeltaW relative error < 1e-10 and the F-hat model reproducing
the realised DeltaW (when the closed form applies); ``f(0) <= 0``; the T2-B affine law at the
realised delta; T2-C ``dL_c <= UB_c <= C(||delta||_inf) <= simple form``; the T2-A/T2-B soundness
checks whenever the realised error lies inside the radius; certified <= actual for every tau.

``--json PATH`` writes schema ``fliplab.theory.verify/1``: ``protocol``, ``theorem1.{clean,backdoor}`` (twin pair
averages ``lb, lb_jensen, actual, ub, ub_r2`` = mean of min(ub, R2), ``violations``, ``n``),
``probe.theorem1``, ``probe.deltaW_rel_error``, ``probe.round`` (the probed round) and
``probe.start_round`` (its start ``W^{nd}_{start_round}``), ``probe.poisoned``, ``probe.metrics`` (ACC/ASR
of the probe pair at the metrics tau), ``theorem2`` (``eps_paper`` + ``eps_paper_status``,
``eps_A``/``premise_A``, ``eps_B``/``lbj0``/``h_l1``, ``C_eps`` = C(||delta||_inf), ``C_simple``,
``eps_for_C`` for ``--clean-budget``, ``delta_inf``, ``inside_A/B``, ``model``, ``error_model``),
``corollary1`` (one row per tau, probe pair), ``metrics`` (twin pair; ``per_tau`` with counts),
``checks`` and, with ``--all-rounds``, ``series``. ``--save-state DIR`` writes ``DIR/state.npz`` +
``DIR/state.json`` (layout in :mod:`theory.saved_state`, which also recomputes the numbers).

``--deep RUN_DIR --round R``: the same theorems on a deepfl run's last layer (:mod:`theory.deep.cli`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from fldata.cli import check_writable_dir, check_writable_file, main_guard
from fldata.params import (NON_NEGATIVE_FLOAT, NON_NEGATIVE_INT, POSITIVE_INT, UNIT_FLOAT,
                           argparse_type)
from theory.analysis import (EvaluationSets, ProbeInputs, corollary_round, theorem1_pair, theorem2_round,
                             threshold_metrics)
from theory.deep.cli import add_deep_arguments, run_deep
from theory.frozen import FROZEN_MODELS, HardeningRound
from theory.paper_reference import TABLE3, table4
from theory.protocols import PROTOCOLS
from theory.report import SCHEMA, Check, failed_must_hold, fmt, write_report_json
from theory.results import ProbeResult, RoundResult
from theory.saved_state import save_verification_state

if TYPE_CHECKING:
    from linear_fl.config import LinearFLConfig

VERSION = "theory-1"
DEFAULT_TAUS = (0.0, 0.4, 0.6, 0.8)
# Threshold of the Table 3 analogue: the released config's comment says 0.4 for the continuous
# attack; single-shot uses 0 (THEORY.md 7.4).
DEFAULT_METRICS_TAU = {"continuous": 0.4, "single-shot": 0.0}


# Numeric options checked like config fields (fldata.params): a bad value is a usage error (exit 2)
_tau = argparse_type(UNIT_FLOAT, float)
_positive_int = argparse_type(POSITIVE_INT, int)
_seed = argparse_type(NON_NEGATIVE_INT, int)
_clean_budget = argparse_type(NON_NEGATIVE_FLOAT, float)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m theory.verify", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round", type=_positive_int, default=None,
                        help="attack round R after pre-training (default 50, or the --protocol's round); the probe "
                             "is round R+1 from W^nd_R. Single-shot: the malicious client poisons in round R unless "
                             "--config attack_round=K, so the probe is the first hardening round after the poisoning")
    parser.add_argument("--protocol", default="default", choices=tuple(PROTOCOLS),
                        help="named setting (theory.protocols): 'default', or 'paper-table3' = the setting fitted "
                             "to the paper's no-defense Table 3 (--config still overrides it)")
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist", "cifar10", "digits"))
    parser.add_argument("--attack", default="continuous", choices=("continuous", "single-shot"),
                        help="continuous: poisons every round; single-shot: poisons once (round R by default), "
                             "update scaled by 'scale' (default 1/p_M = model replacement)")
    parser.add_argument("--tau", type=_tau, nargs="+", default=list(DEFAULT_TAUS),
                        help="confidence thresholds for Corollary 1 (default 0 0.4 0.6 0.8)")
    parser.add_argument("--metrics-tau", type=_tau, default=None,
                        help="threshold of the Table 3 analogue (default 0.4 continuous, 0.0 single-shot)")
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument("--model", default="F-hat", choices=FROZEN_MODELS, help="frozen-residual model (default F-hat)")
    parser.add_argument("--clean-budget", type=_clean_budget, default=0.05,
                        help="the constant C of T2-C (UB_c <= C), in nats (default 0.05)")
    parser.add_argument("--json", type=Path, default=None, help="write the results to this JSON file (atomic)")
    parser.add_argument("--save-state", type=Path, default=None, metavar="DIR", help="write DIR/state.npz + state.json")
    parser.add_argument("--all-rounds", action="store_true",
                        help="also a per-round series for rounds 1..R (a probe per round)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--train-limit", type=_positive_int, default=None, help="use only the first N training images")
    parser.add_argument("--test-limit", type=_positive_int, default=None, help="use only the first N test images")
    parser.add_argument("--cache-dir", type=str, default=None, help="pre-training cache folder of linear_fl")
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra LinearFLConfig fields, e.g. lr=0.5 inversion_maxiter=5 (values parsed as JSON)")
    add_deep_arguments(parser)
    return parser


def _config_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs to a dict; values are parsed as JSON when possible (``null``, numbers, lists)."""
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


def make_config(args: argparse.Namespace) -> "LinearFLConfig":
    """The ``LinearFLConfig`` of this run (``--train-limit``/``--test-limit`` become ``max_train_samples``/
    ``max_test_samples``: the slice is taken before pre-training). Single-shot: ``attack_round`` = ``--round``
    unless ``--config attack_round=K`` is given."""
    from linear_fl.config import LinearFLConfig

    resolve_round(args)
    values: dict[str, Any] = {"dataset": args.dataset, "seed": args.seed, "attack": args.attack,
                              **PROTOCOLS[args.protocol].config(args.attack), **_config_overrides(args.config)}
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
    """``--round``, or the ``--protocol``'s round for the attack when it was not given (sets ``args.round``)."""
    if args.round is None:
        args.round = PROTOCOLS[args.protocol].round(args.attack)
    return args.round


def probe_inputs(probe: Any) -> ProbeInputs:
    """Adapt a ``linear_fl.probe.Probe`` to the theory's :class:`ProbeInputs`."""
    return ProbeInputs(rnd=HardeningRound.from_probe(probe), W_nodef=np.asarray(probe.W_nodef, dtype=np.float64),
                       W_def=np.asarray(probe.W_def, dtype=np.float64),
                       deltaW_simulated=np.asarray(probe.deltaW_simulated, dtype=np.float64),
                       closed_form_applies=bool(probe.closed_form_applies))


def analyse_round(setup: Any, W_nodef: np.ndarray, W_def: np.ndarray, probe: ProbeInputs, taus: list[float],
                  metrics_tau: float, model_kind: str, clean_budget: float, probe_round: int = 0,
                  poisoned: bool = False) -> RoundResult:
    """All theory results of round R: twin Theorem 1, probe Theorem 1/2, Corollary 1, metrics, checks.
    ``probe_round`` / ``poisoned`` only label the probe (round index, whether the attacker poisoned in it)."""
    sets = EvaluationSets(X_clean=setup.test_Xa, y_clean=setup.test_y, X_backdoor=setup.backdoor_Xa,
                          target=setup.config.target)
    t1_twin, checks = theorem1_pair(W_nodef, W_def, sets, "twin")
    t1_probe, probe_checks = theorem1_pair(probe.W_nodef, probe.W_def, sets, "probe")
    t2 = theorem2_round(probe, sets, model_kind, clean_budget)
    cor, cor_checks = corollary_round(probe, sets, taus, t2.model, t2.per_sample, t2.support, t2.result.delta_inf)
    assert t2.result.deltaW_rel_error is not None     # theorem2_round compares with the simulated DeltaW
    probe_result = ProbeResult(
        theorem1=t1_probe, deltaW_rel_error=t2.result.deltaW_rel_error,
        closed_form_applies=probe.closed_form_applies, round=probe_round, start_round=probe_round - 1,
        poisoned=poisoned, metrics=threshold_metrics(probe.W_nodef, probe.W_def, sets, [metrics_tau], metrics_tau))
    return RoundResult(theorem1=t1_twin, probe=probe_result, theorem2=t2.result, corollary1=cor,
                       metrics=threshold_metrics(W_nodef, W_def, sets, taus, metrics_tau),
                       checks=checks + probe_checks + t2.checks + cor_checks)


def _table3_rows(title: str, metrics: dict[str, Any], attack: str) -> list[str]:
    paper = TABLE3[attack]
    lines = [f"Table 3 analogue ({title}, tau={metrics['tau']:g}; paper: logistic regression, MNIST)",
             f"  {'':12s} {'ACC ours':>9s} {'ACC paper':>9s} {'ASR ours':>9s} {'ASR paper':>9s}"]
    for name, label in (("no_defense", "no defense"), ("defense", "FLIP")):
        ours = metrics[name]
        lines.append(f"  {label:12s} {100 * ours['acc']:9.2f} {paper[name][0]:9.2f} {100 * ours['asr']:9.2f} "
                     f"{paper[name][1]:9.2f}")
    return lines


def _paper_rows(result: dict[str, Any], attack: str) -> list[str]:
    metrics = result["metrics"]
    protocol = result.get("protocol", "default")
    setting = "" if protocol == "default" else f"protocol {protocol}: {PROTOCOLS[protocol].summary}; "
    lines = _table3_rows(f"{setting}twin pair after R rounds", metrics, attack)
    if attack == "single-shot":
        # Right after the poisoning round neither twin has hardened against the new backdoor; the probe
        # pair is the first round in which FLIP does (see the module docstring).
        probe = result["probe"]
        lines += _table3_rows(f"probe pair: round {probe['round']} from W^nd_{probe['start_round']}, the first "
                              "hardening round after the poisoning", probe["metrics"], attack)
    lines.append(f"Table 4 counts (N^acc of {metrics['clean_total']} clean, N^asr of {metrics['backdoor_total']} "
                 "backdoor; paper = round(Table-3 % x 10000 / 9020))")
    for entry in metrics["per_tau"]:
        nd, d = entry["no_defense"], entry["defense"]
        lines.append(f"  tau={entry['tau']:.2f}  no defense: N^acc={nd['n_acc']} N^asr={nd['n_asr']} rejected "
                     f"clean/backdoor={nd['rejected_clean']}/{nd['rejected_backdoor']} | FLIP: N^acc={d['n_acc']} "
                     f"N^asr={d['n_asr']} rejected={d['rejected_clean']}/{d['rejected_backdoor']}")
    nd, d = table4(attack)["no_defense"], table4(attack)["defense"]
    lines.append(f"  paper      no defense: N^acc={nd['n_acc']} N^asr={nd['n_asr']} | FLIP: N^acc={d['n_acc']} "
                 f"N^asr={d['n_asr']}")
    return lines


def print_report(payload: dict[str, Any], checks: list[Check]) -> None:
    """Console output of one verification (sections in the order of THEORY.md section 10)."""
    t2 = payload["theorem2"]
    probe = payload["probe"]
    attack_round = (f" attack_round={payload['config']['attack_round']}" if payload["attack"] == "single-shot"
                    else "")
    print(f"FLIP theory verification: dataset={payload['dataset']} attack={payload['attack']} seed={payload['seed']} "
          f"round R={payload['round']}{attack_round}\n  twin pair = models after R rounds without/with defense; "
          f"probe = round {probe['round']} from W^nd_{probe['start_round']}, with and without hardening "
          f"({'malicious client poisons' if probe['poisoned'] else 'no poisoning'} in it)")
    theorem2_title = (f"Theorem 2 (A.15; frozen model {t2['model']}, {t2['error_model']} trigger errors, "
                      f"||delta||_inf={fmt(t2['delta_inf'])}, eta_a={fmt(t2['eta_a'])})")
    groups: list[tuple[str, str | tuple[str, ...]]] = [("Theorem 1 (Thm 1 eq. 3; dataset averages, per-sample ordering must hold)", "Thm 1"),
              (theorem2_title, ("DeltaW", t2["model"], "Thm 2", "T2")),
              ("Corollary 1 (probe pair; code semantics: argmax = label and conf >= tau)", "Cor 1")]
    for title, prefixes in groups:
        print(title)
        for check in checks:
            if check.name.startswith(prefixes):
                print(check.line())
    for line in _paper_rows(payload, payload["attack"]):
        print(line)
    for check in checks:
        if check.name.startswith("series"):
            print(check.line())
    failed = failed_must_hold(checks)
    must = sum(c.must_hold for c in checks)
    print(f"Summary: {must - len(failed)}/{must} must-hold checks passed"
          + ("" if not failed else "; FAILED: " + ", ".join(c.name for c in failed)))


SERIES_THEOREM2_KEYS = ("eps_A", "eps_B", "delta_inf", "eps_paper", "eps_paper_status", "premise_A", "lbj0", "C_eps")


def run(args: argparse.Namespace) -> int:
    """Run the protocol; returns the exit status (0 iff every must-hold check passed)."""
    from linear_fl.probe import one_round_probe
    from linear_fl.twin import prepare, run_twin

    started = time.perf_counter()
    resolve_round(args)
    config = make_config(args)
    setup = prepare(config)
    R = args.round
    twin = run_twin(setup, R, progress=not args.no_progress, evaluate=False)  # per-round ACC/ASR: not reported
    metrics_tau = DEFAULT_METRICS_TAU[args.attack] if args.metrics_tau is None else args.metrics_tau
    taus = sorted(set(args.tau))

    def at_round(r: int) -> tuple[RoundResult, Any]:
        # The probe is the round that starts from W^nd_r, i.e. round r+1; its inversion is warm-started
        # from the defense twin's inversion of round r (as the twin itself would do).
        inversions = twin.defense.inversions
        warm = inversions[r - 1].warm_starts() if len(inversions) >= r else None
        raw = one_round_probe(setup, twin.nodef.globals[r], r + 1, warm=warm)
        return analyse_round(setup, twin.nodef.globals[r], twin.defense.globals[r], probe_inputs(raw), taus,
                             metrics_tau, args.model, args.clean_budget, r + 1, bool(raw.poisoned)), raw

    result, raw_probe = at_round(R)
    checks = result.checks
    payload: dict[str, Any] = {
        "schema": SCHEMA, "version": VERSION, "dataset": args.dataset, "attack": args.attack, "seed": args.seed,
        "round": R, "protocol": args.protocol, "config": config.to_dict(), "taus": taus, **result.to_dict(),
        "checks": checks, "paper": {"table3": TABLE3[args.attack]},
        "data": {"train_limit": args.train_limit, "test_limit": args.test_limit,
                 "n_benign": int(raw_probe.n_B), "clean_total": len(setup.test_y),
                 "backdoor_total": len(setup.backdoor_Xa)},
        "timings": {**twin.timings},
    }
    if args.all_rounds:
        payload["series"] = []
        for r in tqdm(range(1, R + 1), desc="per-round probes", disable=args.no_progress):
            res_r = result if r == R else at_round(r)[0]
            theorem2 = res_r.theorem2.to_dict()
            payload["series"].append({
                "round": r, "theorem1": res_r.theorem1.to_dict(), "probe_theorem1": res_r.probe.theorem1.to_dict(),
                "theorem2": {k: theorem2[k] for k in SERIES_THEOREM2_KEYS},
                "metrics": {k: res_r.metrics[k] for k in ("no_defense", "defense", "tau")},
                "must_hold_failed": [c.name for c in failed_must_hold(res_r.checks)]})
        failures = [f"round {e['round']}: {n}" for e in payload["series"] for n in e["must_hold_failed"]]
        checks.append(Check("series: must-hold checks at every round 1..R", 0.0, float(len(failures)),
                            passed=not failures, must_hold=True,
                            detail="all passed" if not failures else "; ".join(failures)))
        payload["checks"] = checks
    payload["timings"]["total"] = time.perf_counter() - started
    print_report(payload, checks)
    if args.json is not None:
        write_report_json(args.json, payload)
        print(f"wrote {args.json}")
    if args.save_state is not None:
        path = save_verification_state(args.save_state, setup, twin.nodef.globals[R], twin.defense.globals[R],
                                       raw_probe, {"config": config.to_dict(), "seed": args.seed, "round": R,
                                                   "attack": args.attack, "theory_version": VERSION,
                                                   "probe_round": payload["probe"]["round"]})
        print(f"wrote {path} (reload with theory.saved_state.load_verification_state)")
    return 1 if failed_must_hold(checks) else 0


def check_outputs(args: argparse.Namespace, config: "LinearFLConfig") -> None:
    """Fail before any data is read if an output or the cache folder cannot be written."""
    if args.json is not None:
        check_writable_file(args.json, "--json")
    if args.save_state is not None:
        check_writable_dir(args.save_state, "--save-state")
    if config.use_cache:
        check_writable_dir(config.resolved_cache_dir(), "--cache-dir (the linear_fl pre-training cache)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m theory.verify``; returns the exit status (module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.deep is not None or args.from_state is not None:    # the CNN's last layer (theory.deep.cli)
        return run_deep(args)
    try:
        config = make_config(args)
    except ValueError as exc:  # LinearFLConfig's checks name the key: a usage error (exit 2)
        parser.error(str(exc))

    def body() -> int:
        check_outputs(args, config)
        return run(args)

    return main_guard(body)


if __name__ == "__main__":
    sys.exit(main())
