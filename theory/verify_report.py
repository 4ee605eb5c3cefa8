"""The report of ``python -m theory.verify``: its JSON payload (schema ``fliplab.theory.verify/1``)
and its console output.

JSON keys: ``schema``, ``version``, ``dataset``, ``attack``, ``seed``, ``round``, ``protocol``,
``config`` (the ``LinearFLConfig``), ``taus``; the round's results
(:class:`theory.results.RoundResult`): ``theorem1.{clean,backdoor}`` (twin pair averages ``lb,
lb_jensen, actual, ub, ub_r2`` = mean of min(ub, R2), ``violations``, ``n``), ``probe``
(``theorem1``, ``deltaW_rel_error``, ``round`` = the probed round and ``start_round`` = its start
``W^{nd}_{start_round}``, ``poisoned``, ``metrics`` = ACC/ASR of the probe pair at the metrics tau),
``theorem2`` (``eps_paper`` + ``eps_paper_status``, ``eps_A``/``premise_A``,
``eps_B``/``lbj0``/``h_l1``, ``C_eps`` = C(||delta||_inf), ``C_simple``, ``eps_for_C`` for
``--clean-budget``, ``delta_inf``, ``inside_A/B``, ``model``, ``error_model``; every key documented
in :class:`theory.results.Theorem2Result`), ``corollary1`` (one row per tau, probe pair),
``metrics`` (twin pair; ``per_tau`` with counts), ``checks``; then ``paper`` (Table 3), ``data``
(slices and totals), ``timings`` and, with ``--all-rounds``, ``series`` (per round: both Theorem-1
results, the :data:`SERIES_THEOREM2_KEYS` of Theorem 2, the metrics and the names of failed
must-hold checks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from theory.paper_reference import TABLE3, table4
from theory.protocols import PROTOCOLS
from theory.report import SCHEMA, Check, failed_must_hold, fmt
from theory.results import RoundResult
from theory.verify_protocol import Verification

if TYPE_CHECKING:
    from linear_fl.config import LinearFLConfig

VERSION = "theory-1"
SERIES_THEOREM2_KEYS = (
    "eps_A",
    "eps_B",
    "delta_inf",
    "eps_paper",
    "eps_paper_status",
    "premise_A",
    "lbj0",
    "C_eps",
)


def series_entry(r: int, result: RoundResult) -> dict[str, Any]:
    """One round of the ``series``: Theorem 1 (twin and probe), part of Theorem 2, metrics,
    failures.
    """
    theorem2 = result.theorem2.to_dict()
    return {
        "round": r,
        "theorem1": result.theorem1.to_dict(),
        "probe_theorem1": result.probe.theorem1.to_dict(),
        "theorem2": {k: theorem2[k] for k in SERIES_THEOREM2_KEYS},
        "metrics": {k: result.metrics[k] for k in ("no_defense", "defense", "tau")},
        "must_hold_failed": [c.name for c in failed_must_hold(result.checks)],
    }


def build_payload(
    run: Verification,
    config: LinearFLConfig,
    labels: dict[str, Any],
    limits: tuple[int | None, int | None],
) -> dict[str, Any]:
    """The JSON payload (module docstring) of one verification. ``labels``: ``dataset``, ``attack``,
    ``seed``, ``protocol`` as given on the command line; ``limits``: ``--train-limit``,
    ``--test-limit``."""
    payload: dict[str, Any] = {
        "schema": SCHEMA,
        "version": VERSION,
        "dataset": labels["dataset"],
        "attack": labels["attack"],
        "seed": labels["seed"],
        "round": run.round,
        "protocol": labels["protocol"],
        "config": config.to_dict(),
        "taus": labels["taus"],
        **run.result.to_dict(),
        "checks": run.checks,
        "paper": {"table3": TABLE3[labels["attack"]]},
        "data": {
            "train_limit": limits[0],
            "test_limit": limits[1],
            "n_benign": int(run.raw_probe.n_B),
            "clean_total": len(run.setup.test_y),
            "backdoor_total": len(run.setup.backdoor_Xa),
        },
        "timings": {**run.twin.timings},
    }
    if run.series is not None:
        payload["series"] = [series_entry(r, result) for r, result in run.series]
    return payload


def _table3_rows(title: str, metrics: dict[str, Any], attack: str) -> list[str]:
    paper = TABLE3[attack]
    lines = [
        f"Table 3 analogue ({title}, tau={metrics['tau']:g}; paper: logistic regression, MNIST)",
        f"  {'':12s} {'ACC ours':>9s} {'ACC paper':>9s} {'ASR ours':>9s} {'ASR paper':>9s}",
    ]
    for name, label in (("no_defense", "no defense"), ("defense", "FLIP")):
        ours = metrics[name]
        lines.append(
            f"  {label:12s} {100 * ours['acc']:9.2f} {paper[name][0]:9.2f} "
            f"{100 * ours['asr']:9.2f} {paper[name][1]:9.2f}"
        )
    return lines


def _table4_rows(metrics: dict[str, Any], attack: str) -> list[str]:
    lines = [
        f"Table 4 counts (N^acc of {metrics['clean_total']} clean, N^asr of "
        f"{metrics['backdoor_total']} backdoor; paper = round(Table-3 % x 10000 / 9020))"
    ]
    for entry in metrics["per_tau"]:
        nd, d = entry["no_defense"], entry["defense"]
        lines.append(
            f"  tau={entry['tau']:.2f}  no defense: N^acc={nd['n_acc']} N^asr={nd['n_asr']} "
            f"rejected clean/backdoor={nd['rejected_clean']}/{nd['rejected_backdoor']} | FLIP: "
            f"N^acc={d['n_acc']} N^asr={d['n_asr']} "
            f"rejected={d['rejected_clean']}/{d['rejected_backdoor']}"
        )
    nd, d = table4(attack)["no_defense"], table4(attack)["defense"]
    lines.append(
        f"  paper      no defense: N^acc={nd['n_acc']} N^asr={nd['n_asr']} | FLIP: "
        f"N^acc={d['n_acc']} N^asr={d['n_asr']}"
    )
    return lines


def _paper_rows(result: dict[str, Any], attack: str) -> list[str]:
    metrics = result["metrics"]
    protocol = result.get("protocol", "default")
    setting = (
        "" if protocol == "default" else f"protocol {protocol}: {PROTOCOLS[protocol].summary}; "
    )
    lines = _table3_rows(f"{setting}twin pair after R rounds", metrics, attack)
    if attack == "single-shot":
        # Right after the poisoning round neither twin has hardened against the new backdoor; the
        # probe
        # pair is the first round in which FLIP does (theory.verify_protocol's docstring).
        probe = result["probe"]
        lines += _table3_rows(
            f"probe pair: round {probe['round']} from W^nd_{probe['start_round']}, the first "
            "hardening round after the poisoning",
            probe["metrics"],
            attack,
        )
    return lines + _table4_rows(metrics, attack)


def _header(payload: dict[str, Any]) -> str:
    probe = payload["probe"]
    attack_round = (
        f" attack_round={payload['config']['attack_round']}"
        if payload["attack"] == "single-shot"
        else ""
    )
    return (
        f"FLIP theory verification: dataset={payload['dataset']} attack={payload['attack']} "
        f"seed={payload['seed']} round R={payload['round']}{attack_round}\n  twin pair = models "
        f"after R rounds without/with defense; probe = round {probe['round']} from "
        f"W^nd_{probe['start_round']}, with and without hardening "
        f"({'malicious client poisons' if probe['poisoned'] else 'no poisoning'} in it)"
    )


def print_report(payload: dict[str, Any], checks: list[Check]) -> None:
    """Console output of one verification (sections in the order of THEORY.md section 10)."""
    t2 = payload["theorem2"]
    print(_header(payload))
    theorem2_title = (
        f"Theorem 2 (A.15; frozen model {t2['model']}, {t2['error_model']} trigger errors, "
        f"||delta||_inf={fmt(t2['delta_inf'])}, eta_a={fmt(t2['eta_a'])})"
    )
    groups: list[tuple[str, str | tuple[str, ...]]] = [
        ("Theorem 1 (Thm 1 eq. 3; dataset averages, per-sample ordering must hold)", "Thm 1"),
        (theorem2_title, ("DeltaW", t2["model"], "Thm 2", "T2")),
        ("Corollary 1 (probe pair; code semantics: argmax = label and conf >= tau)", "Cor 1"),
    ]
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
    print(
        f"Summary: {must - len(failed)}/{must} must-hold checks passed"
        + ("" if not failed else "; FAILED: " + ", ".join(c.name for c in failed))
    )
