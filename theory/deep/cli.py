"""``python -m theory.verify --deep RUN_DIR --round R``: the theorems on a deepfl run's last layer.

The probe (:mod:`deepfl.probe`, loaded lazily: ``theory`` imports without torch) runs round R+1 of
the run from its global model ``G_R`` twice, with FLIP on the benign clients and without, in three
versions, then checks (:mod:`theory.deep.analysis`):

1. (a) last layer only, engine SGD: features frozen (network logits = ``W\\tilde\\phi``), Theorem 1
   per sample on ``\\tilde\\phi(x)`` (must hold, 0 violations), Corollary 1 certified <= actual;
2. (a) last layer only, probe protocol (one full-batch step, paper convention): Theorem 1,
   closed-form vs simulated ``\\Delta W`` (< 1e-10 relative), Theorem 2 (paper ``\\varepsilon_P``,
   T2-A/B/C against the feature-space trigger error ``\\|\\delta_\\phi\\|_\\infty``), Corollary 1;
3. (b) all layers train: the fraction of clean and backdoor samples whose loss change lies inside
   the last-layer bracket, and how far outside the others fall (information, nothing must hold).

Exit status (fldata.cli): 0 if every must-hold check passed, 1 if one failed, 2 for a bad round, run
config or parameter, 3 for an unreadable or damaged file or folder, and 3 without torch (one line).
``--json FILE`` writes schema ``fliplab.theory.deep/1`` (keys ``last_layer_sgd``,
``last_layer_protocol``, ``all_layers``, each with ``violations_clean`` / ``violations_backdoor``;
``trigger_error``; ``checks``) and ``FILE`` with suffix ``.samples.npz`` (per-sample ``lb,
lb_jensen, actual, ub`` of each part, float32, for the figures). ``--save-state DIR`` writes the
probe's arrays (:mod:`theory.deep.state`); ``--from-state DIR`` recomputes everything from them
without torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from fldata.atomic import write_bytes_atomic
from theory.deep.analysis import analyse
from theory.deep.state import DeepProbeState, load_probe_state, save_probe_state
from theory.report import Check, failed_must_hold, fmt, json_ready, write_report_json

SCHEMA = "fliplab.theory.deep/1"
VERSION = "theory-deep-1"


def add_deep_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--deep`` options of ``python -m theory.verify``."""
    group = parser.add_argument_group(
        "deep probe (issue 15): the theorems on a deepfl run's last layer"
    )
    group.add_argument(
        "--deep",
        type=Path,
        metavar="RUN_DIR",
        help="probe round R+1 of this deepfl run from its global model G_R (needs torch)",
    )
    group.add_argument(
        "--from-state",
        type=Path,
        metavar="DIR",
        help="recompute a --deep check from DIR/deep_state.npz (written by --save-state), no torch",
    )
    group.add_argument(
        "--replay-dir",
        type=Path,
        default=None,
        help="where to replay the run when it kept no checkpoint at round R (default: a temporary "
        "folder)",
    )
    group.add_argument(
        "--flip-params",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="the probe's FLIP for a run without client defense: a mode and FlipConfig fields, "
        'e.g. \'{"mode": "paper", "warmup_steps": 50}\' (default mode fliplab; a FLIP '
        "run's own parameters are used otherwise)",
    )
    group.add_argument(
        "--device", default=None, help="torch device of the probe (default: the run's)"
    )


def _probe_state(args: argparse.Namespace) -> DeepProbeState | int:
    """The probe's arrays: from a saved state, or by running the probe (torch, lazily imported)."""
    if args.from_state is not None:
        return load_probe_state(args.from_state)
    if importlib.util.find_spec("torch") is None:
        print(
            "error: --deep needs PyTorch: pip install -e "
            "'.[deep]' (the linear check runs without it)",
            file=sys.stderr,
        )
        return 3
    from deepfl.probe_rounds import probe_round

    return probe_round(
        args.deep,
        args.round,
        args.flip_params,
        args.replay_dir,
        args.device,
        progress=not args.no_progress,
    )


def deep_payload(
    state: DeepProbeState, taus: list[float], model_kind: str, clean_budget: float
) -> tuple[dict[str, Any], list[Check], dict[str, np.ndarray]]:
    """JSON payload (schema :data:`SCHEMA`), checks and per-sample arrays of one probe."""
    results, checks, samples = analyse(state, taus, model_kind, clean_budget)
    # A saved state's sidecar sorts the meta's keys: sort them here too, so both give the same file.
    meta = json.loads(json.dumps(json_ready(state.meta), sort_keys=True))
    payload = {
        "schema": SCHEMA,
        "version": VERSION,
        **{k: v for k, v in meta.items() if k not in ("config", "seconds")},
        "taus": taus,
        "model_kind": model_kind,
        "features": {
            "dim": int(state.X_clean.shape[1] - 1),
            "dtype": "float64",
            "bias": "last column = 1",
        },
        **results,
        "checks": checks,
        "config": meta.get("config"),
        "seconds": meta.get("seconds"),
    }
    return payload, checks, samples


def write_samples(path: Path, samples: dict[str, np.ndarray]) -> Path:
    """Per-sample arrays as a compressed float32 ``.npz`` (atomic)."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in samples.items()}
    np.savez_compressed(buffer, **arrays)
    return write_bytes_atomic(path, buffer.getvalue())


def samples_path(json_path: Path) -> Path:
    """``results/x.json`` -> ``results/x.samples.npz``."""
    return json_path.with_suffix(".samples.npz")


def run_deep(args: argparse.Namespace) -> int:
    """Run (or reload) the probe, print the report, write the outputs; returns the exit status
    (fldata.cli: 2 for a bad round / run / parameter, 3 for unreadable or damaged files)."""
    from fldata.cli import check_writable_dir, main_guard
    from linear_fl.state import StateError

    def body() -> int:
        if args.json is not None:
            check_writable_dir(args.json.parent, "the --json folder")
        if args.save_state is not None:
            check_writable_dir(args.save_state, "the --save-state folder")
        state = _probe_state(args)
        if isinstance(state, int):
            return state
        taus = sorted(set(args.tau))
        payload, checks, samples = deep_payload(state, taus, args.model, args.clean_budget)
        print_deep_report(payload, checks)
        if args.json is not None:
            write_report_json(args.json, payload)
            write_samples(samples_path(args.json), samples)
            print(f"wrote {args.json} and {samples_path(args.json)}")
        if args.save_state is not None:
            print(
                f"wrote {save_probe_state(args.save_state, state)} (recompute with --from-state "
                f"{args.save_state})"
            )
        return 1 if failed_must_hold(checks) else 0

    return main_guard(body, usage=(ValueError,), data=(StateError,))


def _metrics_line(title: str, rows: list[dict[str, Any]]) -> str:
    parts = []
    for row in rows:
        values = " ".join(
            f"{name}={100 * v['acc']:.2f}/{100 * v['asr']:.2f}"
            for name, v in row.items()
            if name != "tau"
        )
        parts.append(f"tau={row['tau']:g}: {values}")
    return f"  {title} ACC/ASR %: " + "; ".join(parts)


def print_deep_report(payload: dict[str, Any], checks: list[Check]) -> None:
    """Console output: the probe, then (a) SGD, (a) protocol + Theorem 2, Corollary 1, (b),
    summary.
    """
    error = payload["trigger_error"]
    print(
        f"FLIP theory on a deep model's last layer: run={payload['run_dir']} "
        f"({payload['dataset']}, {payload['model']}, {payload['attack']} attack, seed "
        f"{payload['seed']}), round R={payload['round']}\n  probe = round {payload['probe_round']} "
        f"from G_{payload['round']} ({payload['source']}), with FLIP on the benign clients "
        f"{payload['benign']} and without; attackers {payload['attackers']} "
        f"{'poison' if payload['poisoned'] else 'do not poison'} in it; features phi = "
        f"{payload['features']['dim']} ({payload['feature_layer']}), float64"
    )
    if error["n_pairs"]:
        print(
            f"  feature-space trigger error over {error['n_pairs']} hardening pairs: "
            f"||delta_phi||_inf max {fmt(error['feature_inf_max'])}, median "
            f"{fmt(error['feature_inf_median'])} (median ||phi||_inf "
            f"{fmt(error['feature_true_inf_median'])}); input space ||delta||_inf max "
            f"{fmt(error['input_inf_max'])}"
        )
    groups = [
        ("(a) last layer only, engine SGD (Thm 1 on phi~, Cor 1)", ("(a) SGD",)),
        (
            "(a) last layer only, probe protocol (Thm 1, closed form, Thm 2, Cor 1)",
            ("(a) protocol", "DeltaW", "F-hat", "F0", "Thm 2", "T2"),
        ),
        ("(b) all layers train (information)", ("(b)",)),
    ]
    for title, keys in groups:
        print(title)
        for check in checks:
            if any(key in check.name for key in keys):
                print(check.line())
    print(_metrics_line("G_R", payload["metrics_start"]))
    for key, title in (
        ("last_layer_sgd", "(a) SGD"),
        ("last_layer_protocol", "(a) protocol"),
        ("all_layers", "(b)"),
    ):
        print(_metrics_line(title, payload[key]["metrics"]))
    failed = failed_must_hold(checks)
    must = sum(c.must_hold for c in checks)
    print(
        f"Summary: {must - len(failed)}/{must} must-hold checks passed"
        + ("" if not failed else "; FAILED: " + ", ".join(c.name for c in failed))
    )
