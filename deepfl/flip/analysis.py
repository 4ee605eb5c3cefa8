"""Measurements behind FLIP's modes (issue 17), written to ``results/flip/`` as markdown + JSON.

``python -m deepfl.flip.analysis ranks``: where the backdoor pairs ``(s -> target)`` rank in a
benign client's warm-up distance matrix. The global models are replayed deterministically from
``python -m deepfl.run --preset cpu-small --attack continuous --seed 0`` (no defense): round 10
(the clean pre-trained model) and round 50 (backdoored). Every benign client inverts its universal
triggers (FLIP's warm-up: 10 targets, one batched inversion, the shared inversion settings of the
three modes) and the matrix is read three ways: the variance over optimisation steps of each
source's mean loss (the paper mode's reading), the variance over samples (the other reading), and
the mask L1 (the release's warm-up distance; its normalisation by the largest entry keeps the
order). A backdoor pair's rank is its place among the client's eligible pairs (source with more
than 5 local samples) when the LARGEST distance is taken first (the paper's and the release's
rule), and when the smallest is.

``python -m deepfl.flip.analysis false-positives``: how often ``fliplab``'s Neural-Cleanse outlier
test flags a class on a run with NO attack (cpu-small, seed 0, the first ``--rounds`` rounds after
pre-training), per client-round and per test (MAD index, mask/median ratio, either), and the clean
accuracy that costs against the same rounds without a defense.

``python -m deepfl.flip.analysis run-state RUN_DIR [RUN_DIR ...]``: what the benign clients of
finished FLIP runs did, read from their checkpoints (:mod:`.run_state`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepfl.run import build_parser, config_from_args
from deepfl.runner import Experiment

from . import distance as distance_matrix
from .config import FlipConfig
from .plan import ClientRound, _anomalous, _smallest_mask_targets, run_inversions
from .state import FlipClientState

__all__ = ["main", "pair_ranks", "replay_models"]

RESULTS = Path(__file__).resolve().parents[2] / "results" / "flip"
READINGS: dict[str, str] = {
    "loss_variance": "loss variance over steps (paper mode)",
    "loss_variance_samples": "loss variance over samples",
    "mask_size": "mask L1 (release)",
}
BASE_ARGS = [
    "--seed",
    "0",
    "--device",
    "cpu",
    "--set",
    "run.threads=1",
    "--set",
    "run.progress=false",
]


def replay_models(
    rounds: list[int], work: Path, preset: str = "cpu-small"
) -> tuple[Experiment, dict[int, torch.Tensor]]:
    """The global state after each of ``rounds`` of the ``preset`` continuous run (no defense)."""
    cfg = config_from_args(
        build_parser().parse_args([*BASE_ARGS, "--preset", preset, "--attack", "continuous"])
    )
    exp = Experiment(cfg, work / "replay")
    states = {}
    for round_index in sorted(rounds):
        exp.run(stop_after=round_index)
        states[round_index] = exp.global_state.clone()
    return exp, states


def pair_ranks(
    matrix: np.ndarray, counts: np.ndarray, target: int, min_samples: int = 5
) -> dict[str, Any]:
    """Ranks (1 = chosen first) of the eligible pairs ``(s, target)`` under largest- and
    smallest-first, and the number of eligible pairs (source with more than ``min_samples``)."""
    out: dict[str, Any] = {}
    for priority in ("largest", "smallest"):
        order = [
            (s, t)
            for s, t in distance_matrix.pairs_by_distance(matrix, priority)
            if counts[s] > min_samples
        ]
        out[priority] = [rank + 1 for rank, (s, t) in enumerate(order) if t == target]
        out["eligible"] = len(order)
    return out


def _client_distances(
    exp: Experiment, client: int, config: FlipConfig
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One client's warm-up universal inversion on the current global model, read three ways."""
    data = exp.federation.clients[client]
    ctx = _context(exp, client, round_index=0)
    planner = ClientRound(config, data, {}, ctx)
    results = [
        group[0]
        for group in run_inversions(
            config,
            exp.model,
            data.images,
            data.labels,
            planner.universal_requests(),
            config.warmup_steps,
            exp.federation.num_classes,
        )
    ]
    matrices = {
        name: distance_matrix.warmup_distance_matrix(results, exp.federation.num_classes, name)
        for name in READINGS
    }
    return matrices, planner.counts


def _context(exp: Experiment, client: int, round_index: int) -> Any:
    from deepfl.client import RoundContext
    from deepfl.seeding import CLIENT_TRAINING, torch_generator

    return RoundContext(
        round_index,
        client,
        exp.federation.num_classes,
        exp.device,
        torch_generator(exp.cfg.seed, round_index, client, CLIENT_TRAINING),
    )


def ranks_report(
    exp: Experiment, states: dict[int, torch.Tensor], clients: list[int]
) -> dict[str, Any]:
    """Per model and reading: every client's backdoor-pair ranks, and a summary."""
    config, target = FlipConfig(), int(exp.cfg.attack.target)
    report: dict[str, Any] = {
        "preset": _preset_name(exp),
        "target": target,
        "clients": clients,
        "config": {"warmup_steps": config.warmup_steps, "batch_size": config.batch_size},
        "models": {},
    }
    for round_index, state in states.items():
        exp.global_state = state
        exp.flat.set(state)
        evaluation = exp.evaluate()
        per_client = {}
        for client in clients:
            matrices, counts = _client_distances(exp, client, config)
            per_client[client] = {
                name: pair_ranks(m, counts, target) for name, m in matrices.items()
            }
        report["models"][str(round_index)] = {
            "acc": evaluation.acc["0.0"],
            "asr": evaluation.asr["0.0"],
            "per_client": per_client,
            "summary": {
                name: _summary([per_client[c][name] for c in clients]) for name in READINGS
            },
        }
    return report


def _summary(ranks: list[dict[str, Any]]) -> dict[str, float]:
    best = np.array([min(r["largest"]) if r["largest"] else np.nan for r in ranks], dtype=float)
    best_small = np.array(
        [min(r["smallest"]) if r["smallest"] else np.nan for r in ranks], dtype=float
    )
    eligible = np.array([r["eligible"] for r in ranks], dtype=float)
    return {
        "median_best_rank_largest_first": float(np.nanmedian(best)),
        "clients_with_backdoor_pair_first": float(np.nanmean(best == 1)),
        "clients_with_backdoor_pair_in_top_10": float(np.nanmean(best <= 10)),
        "median_best_rank_smallest_first": float(np.nanmedian(best_small)),
        "median_eligible_pairs": float(np.median(eligible)),
    }


def ranks_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Where the backdoor pair ranks in FLIP's warm-up distance matrix",
        "",
        "Generated by `python -m deepfl.flip.analysis "
        "ranks` (deepfl/flip/analysis.py docstring: setup).",
        f"{report['preset']} continuous, seed 0, no defense, backdoor target {report['target']}; "
        f"{len(report['clients'])} benign clients, each inverting its universal triggers "
        f"({report['config']['warmup_steps']} steps, {report['config']['batch_size']} samples per "
        "target and step) on the global model. Rank 1 = the pair hardened first; a client's best "
        "rank is its best-placed pair (s -> target) among "
        "its eligible pairs (source with > 5 samples).",
        "",
    ]
    for round_index, model in report["models"].items():
        lines += [
            f"## Global model of round {round_index}: ACC {100 * model['acc']:.2f}%, ASR "
            f"{100 * model['asr']:.2f}%",
            "",
            "| distance | median best rank, largest first | clients with a backdoor pair first | "
            "in top 10 | median best rank, smallest first | median eligible pairs |",
            "|---|---|---|---|---|---|",
        ]
        for name, label in READINGS.items():
            s = model["summary"][name]
            lines.append(
                f"| {label} | {s['median_best_rank_largest_first']:g} | "
                f"{100 * s['clients_with_backdoor_pair_first']:.0f}% | "
                f"{100 * s['clients_with_backdoor_pair_in_top_10']:.0f}% | "
                f"{s['median_best_rank_smallest_first']:g} | {s['median_eligible_pairs']:g} |"
            )
        lines.append("")
    lines += _ranks_conclusion(report)
    return "\n".join(lines)


def _ranks_conclusion(report: dict[str, Any]) -> list[str]:
    """The reading chosen for the paper mode, and what the numbers say about 'largest first'."""
    last = report["models"][max(report["models"], key=int)]["summary"]
    first = {name: 100 * last[name]["clients_with_backdoor_pair_first"] for name in READINGS}
    top = {name: 100 * last[name]["clients_with_backdoor_pair_in_top_10"] for name in READINGS}
    return [
        "## Reading",
        "",
        "The `paper` mode reads the paper's distance as the variance over optimisation steps of "
        "each source's "
        'mean loss (`distance="loss_variance"`): section 3 measures "loss changes during '
        'optimization" '
        "and explains that a far class's loss is high until the prediction flips, then small, a "
        "statement "
        "about the loss trajectory over the steps. The variance over samples "
        "(`loss_variance_samples`) and "
        "the release's mask L1 (`mask_size` / `mask_growth`) stay available as options.",
        "",
        "On the backdoored model, with the largest distance "
        "first, a backdoor pair is the first pair of "
        + ", ".join(
            f"{first[name]:.0f}% of the clients under the {READINGS[name]}" for name in READINGS
        )
        + "; among the first 10 pairs of "
        + ", ".join(f"{top[name]:.0f}%" for name in READINGS)
        + " (same order).",
    ]


def _preset_name(exp: Experiment) -> str:
    """cpu-small or micro, by the run's client count (the analysis runs one of the two presets)."""
    return (
        "cpu-small"
        if exp.cfg.data.num_clients == 20
        else f"{exp.cfg.data.num_clients}-client preset"
    )


def _write(name: str, report: dict[str, Any], markdown: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    (out / f"{name}.md").write_text(markdown + "\n")
    print(markdown)


def run_ranks(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        exp, states = replay_models(
            [args.clean_round, args.backdoor_round], Path(work), args.preset
        )
        attackers = set(exp.schedule.attacker_ids)
        clients = [c for c in range(len(exp.federation.clients)) if c not in attackers][
            : args.clients
        ]
        report = ranks_report(exp, states, clients)
    _write("backdoor_pair_ranks", report, ranks_markdown(report), args.out)


# ------------------------------------------------------------------------------ false positives
def _recorder(exp: Experiment, log: list[dict[str, Any]]) -> Callable[..., None]:
    """Wrap the FLIP defense's ``train`` to log the outlier test's input and verdict per
    client-round.
    """
    train = exp.client_defense.train

    def recording(model: Any, data: Any, state: dict, trainer: Any, ctx: Any) -> None:
        warm = FlipClientState.from_dict(state).distance is None
        train(model, data, state, trainer, ctx)
        flip = FlipClientState.from_dict(state)
        masks = flip.universal_masks
        assert masks is not None and flip.universal_success is not None
        assert flip.focus_targets is not None
        targets = [t for t in range(masks.shape[0]) if np.all(np.isfinite(masks[t]))]
        log.append(
            {
                "round": int(ctx.round),
                "client": int(ctx.client_id),
                "warm_up": warm,
                "mask_l1": [float(masks[t].sum()) for t in targets],
                "targets": targets,
                "success": flip.universal_success.tolist(),
                "flagged": flip.focus_targets.tolist(),
                "suspect": flip.suspect_target,
            }
        )

    return recording


def _flags_by_test(entry: dict[str, Any]) -> dict[str, list[int]]:
    """Re-run the outlier test on a logged client-round with each test (mad / ratio / either)."""
    from fldata.triggers import Trigger

    from .inversion import InversionResult

    dummy = Trigger(np.zeros((1, 1)), np.zeros((1, 1, 1)))
    results = [
        InversionResult(dummy, t, (), ok, 1.0, 0.0, l1)
        for t, l1, ok in zip(entry["targets"], entry["mask_l1"], entry["success"], strict=True)
    ]
    out = {}
    for test in ("mad", "ratio", "either"):
        config = FlipConfig(focus_anomaly_test=test)
        out[test] = [
            r.target for r in _anomalous(_smallest_mask_targets(results, 1), results, config)
        ]
    return out


def false_positive_report(rounds: int, work: Path, preset: str = "cpu-small") -> dict[str, Any]:
    """fliplab and no defense over the same ``rounds`` attack-free rounds after pre-training."""
    base = [*BASE_ARGS, "--preset", preset, "--attack", "none"]
    runs: dict[str, Any] = {}
    log: list[dict[str, Any]] = []
    for name, extra in (
        ("none", []),
        (
            "fliplab",
            ["--client-defense", "flip", "--set", 'defense.client_params={"mode": "fliplab"}'],
        ),
    ):
        cfg = config_from_args(build_parser().parse_args([*base, *extra]))
        exp = Experiment(cfg, work / name)
        if name == "fliplab":
            exp.client_defense.train = _recorder(exp, log)  # type: ignore[method-assign]
        exp.run(stop_after=cfg.run.pretrain_rounds + rounds)
        rows = [
            json.loads(line) for line in (work / name / "metrics.jsonl").read_text().splitlines()
        ]
        runs[name] = [
            {"round": r["round"], "acc": r["acc"]["0.0"]} for r in rows if r["phase"] == "attack"
        ]
    for entry in log:
        entry["by_test"] = _flags_by_test(entry)
    return {
        "preset": preset,
        "rounds": rounds,
        "first_round": cfg.run.pretrain_rounds + 1,
        "log": log,
        "acc": runs,
        "summary": _fp_summary(log, runs),
    }


def _fp_summary(log: list[dict[str, Any]], runs: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "client_rounds": len(log),
        "warm_up_client_rounds": sum(e["warm_up"] for e in log),
    }
    for test in ("mad", "ratio", "either"):
        summary[f"flagged_{test}"] = sum(bool(e["by_test"][test]) for e in log)
    summary["flagged_by_run"] = sum(bool(e["flagged"]) for e in log)
    summary["client_rounds_stamping_a_suspect"] = sum(
        e["suspect"] is not None and not e["warm_up"] for e in log
    )
    classes: dict[int, int] = {}
    for e in log:
        for t in e["flagged"]:
            classes[t] = classes.get(t, 0) + 1
    summary["flagged_classes"] = {str(k): v for k, v in sorted(classes.items())}
    for name, rows in runs.items():
        summary[f"acc_{name}_last"] = rows[-1]["acc"]
        summary[f"acc_{name}_mean"] = float(np.mean([r["acc"] for r in rows]))
    return summary


def fp_markdown(report: dict[str, Any]) -> str:
    s, n = report["summary"], report["summary"]["client_rounds"]
    pct = lambda k: f"{s[k]} / {n} ({100 * s[k] / max(n, 1):.0f}%)"  # noqa: E731
    return "\n".join(
        [
            "# False positives of fliplab's outlier test (no attack)",
            "",
            "Generated by `python -m deepfl.flip.analysis false-positives` "
            "(deepfl/flip/analysis.py docstring).",
            f"{report['preset']}, attack none, seed 0, the first {report['rounds']} rounds after "
            "pre-training (rounds "
            f"{report['first_round']}-{report['first_round'] + report['rounds'] - 1}); every "
            "participant is benign, so every flag is a false positive.",
            "",
            "| outlier test | client-rounds with a flagged class |",
            "|---|---|",
            f"| MAD anomaly index > 2 | {pct('flagged_mad')} |",
            f"| mask L1 < 0.5 x median | {pct('flagged_ratio')} |",
            f"| either (fliplab's default) | {pct('flagged_either')} |",
            "",
            f"{s['warm_up_client_rounds']} of the {n} client-rounds were warm-ups (first "
            f"selection). Flagged classes (count): {s['flagged_classes']}. Client-rounds after a "
            "warm-up that stamp a remembered suspect or a fresh flag: "
            f"{s['client_rounds_stamping_a_suspect']}.",
            "",
            "| clean ACC (tau = 0) | no defense | fliplab | cost |",
            "|---|---|---|---|",
            f"| last round | {100 * s['acc_none_last']:.2f}% | {100 * s['acc_fliplab_last']:.2f}% "
            f"| {100 * (s['acc_none_last'] - s['acc_fliplab_last']):.2f} points |",
            f"| mean over the rounds | {100 * s['acc_none_mean']:.2f}% | "
            f"{100 * s['acc_fliplab_mean']:.2f}% | "
            f"{100 * (s['acc_none_mean'] - s['acc_fliplab_mean']):.2f} points |",
            "",
        ]
    )


def run_false_positives(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        report = false_positive_report(args.rounds, Path(work), args.preset)
    _write("outlier_false_positives", report, fp_markdown(report), args.out)


def run_states(args: argparse.Namespace) -> None:
    from .run_state import run_state_markdown, run_state_report

    reports = [run_state_report(run_dir) for run_dir in args.run_dirs]
    _write(args.name, {"runs": reports}, run_state_markdown(reports), args.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deepfl.flip.analysis",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ranks = sub.add_parser(
        "ranks", help="where the backdoor pairs rank in the warm-up distance matrix"
    )
    ranks.add_argument("--clean-round", type=int, default=10)
    ranks.add_argument("--backdoor-round", type=int, default=50)
    ranks.add_argument("--clients", type=int, default=16, help="benign clients inverted per model")
    fp = sub.add_parser("false-positives", help="fliplab's outlier test on a run without attack")
    fp.add_argument("--rounds", type=int, default=10)
    for command in (ranks, fp):
        command.add_argument(
            "--preset", default="cpu-small", help="the run's preset (micro: a smoke test)"
        )
    state = sub.add_parser(
        "run-state", help="what the benign clients of finished FLIP runs hardened (checkpoints)"
    )
    state.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    state.add_argument("--name", default="run_state", help="output file stem under --out")
    for command in (ranks, fp, state):
        command.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    commands = {"ranks": run_ranks, "false-positives": run_false_positives, "run-state": run_states}
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
