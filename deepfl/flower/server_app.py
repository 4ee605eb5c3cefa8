"""The Flower ServerApp of a deepfl run: the strategy's loop plus the native run directory.

``run_server`` owns one run directory in the native engine's format (deepfl.runner):
``config.json`` (resolved config), ``metrics.jsonl`` (one row per round: clients, attackers,
accepted, seconds, and ACC / ASR at every tau and per-class ACC on evaluation rounds),
``confidences.npz`` and ``summary.json`` (written by ``Experiment.finish``; the summary also
records ``"engine": {"name": "flower", ...}``). ACC and ASR are measured on the server's test sets
after every ``run.eval_every``-th round and the last one (server-side evaluation, Flower's
``evaluate_fn``), so ``python -m figures deep`` reads Flower runs as native ones. Flower runs do
not use the native pre-training cache and cannot be resumed (no checkpoint.pt).

Deployment (``flwr run``): the module-level ``app`` reads ``context.run_config``: ``args`` (the
``python -m deepfl.run`` config flags, e.g. ``"--preset micro --attack continuous"``), ``out``
(the run directory, absolute paths recommended: relative ones resolve against the SuperLink's
working directory), ``node-wait-seconds`` and ``reply-timeout``.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flwr
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from deepfl.config import ConfigError, ExperimentConfig
from deepfl.evaluate import Evaluation
from deepfl.flower.records import vector_to_arrays
from deepfl.flower.strategy import DefenseStrategy
from deepfl.io import write_json_atomic, write_jsonl_atomic
from deepfl.run import build_parser, config_from_args
from deepfl.rundir import hold_run_dir, remove_leftover_temps
from deepfl.runner import CONFIG_NAME, METRICS_NAME, SUMMARY_NAME, Experiment

LOGGER = logging.getLogger("deepfl.flower")


@dataclass(frozen=True)
class ServerSettings:
    """How long the server waits: for the SuperNodes to connect, and for one round's replies."""

    node_wait_seconds: float = 120.0
    reply_timeout: float = 3600.0


class RunRecorder:
    """Flower ``evaluate_fn``: after round r, evaluate when due and append r's row to
    metrics.jsonl.
    """

    def __init__(self, engine: Experiment, strategy: DefenseStrategy) -> None:
        self.engine = engine
        self.strategy = strategy
        self.last_evaluation: Evaluation | None = None

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        if server_round == 0:  # Flower's evaluation of the initial model: not a round of the run
            return None
        row = self.strategy.last_row
        if row is None or row["round"] != server_round:
            raise RuntimeError(
                f"round {server_round} has no aggregated row; the strategy did not aggregate it"
            )
        metrics = None
        if self.engine.is_evaluation_round(server_round):
            self.last_evaluation = self.engine.record_evaluation(row)
            result = self.last_evaluation.result
            by_tau = list(zip(result.taus, result.acc, result.asr, strict=True))
            metrics = MetricRecord(
                {
                    **{f"acc@{tau}": acc for tau, acc, _ in by_tau},
                    **{f"asr@{tau}": asr for tau, _, asr in by_tau},
                }
            )
            tau = self.engine.cfg.run.taus[0]
            acc, asr = result.rates_at(tau)
            LOGGER.info(
                "round %d/%d (%s): ACC@%s %.3f, ASR@%s %.3f, accepted %s",
                server_round,
                self.engine.cfg.run.rounds,
                row["phase"],
                tau,
                acc,
                tau,
                asr,
                row["accepted"],
            )
        self.engine.append_row(row)
        return metrics


def run_server(
    grid: Grid, cfg: ExperimentConfig, run_dir: str | Path, settings: ServerSettings | None = None
) -> dict[str, Any]:
    """Run ``cfg`` on the nodes of ``grid``, write ``run_dir`` (module docstring); return the
    summary.

    Holds the run folder's lock (deepfl.rundir) for the whole run, as a native run does.
    """
    with hold_run_dir(run_dir) as folder:
        remove_leftover_temps(folder)
        if (folder / CONFIG_NAME).exists():
            raise ConfigError(f"{run_dir} already holds a run; choose another output directory")
        return _run_locked(grid, cfg, folder, settings or ServerSettings())


def _run_locked(
    grid: Grid, cfg: ExperimentConfig, run_dir: Path, settings: ServerSettings
) -> dict[str, Any]:
    """:func:`run_server`'s body, with the run folder's lock held."""
    engine = Experiment(cfg, run_dir)
    write_json_atomic(run_dir / CONFIG_NAME, cfg.to_dict())
    write_jsonl_atomic(run_dir / METRICS_NAME, [])
    strategy = DefenseStrategy(engine, settings.node_wait_seconds, settings.reply_timeout)
    recorder = RunRecorder(engine, strategy)
    strategy.start(
        grid,
        vector_to_arrays(engine.global_state, engine.flat.layout),
        num_rounds=cfg.run.rounds,
        timeout=settings.reply_timeout,
        evaluate_fn=recorder,
    )
    evaluation = recorder.last_evaluation or engine.evaluate()
    summary = engine.finish(evaluation)
    summary["engine"] = {
        "name": "flower",
        "flwr_version": flwr.__version__,
        "nodes": {str(client): node for client, node in sorted(strategy.node_of_client.items())},
    }
    write_json_atomic(run_dir / SUMMARY_NAME, summary)
    return summary


def make_server_app(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    settings: ServerSettings | None = None,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
) -> ServerApp:
    """A ServerApp bound to one config and run directory (the simulation entry point)."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        summary = run_server(grid, cfg, run_dir, settings)
        if on_summary is not None:
            on_summary(summary)

    return server_app


def config_from_run_config(
    run_config: dict[str, Any],
) -> tuple[ExperimentConfig, Path, ServerSettings]:
    """Experiment config, run directory and waits from a Flower run config (module docstring)."""
    try:
        args = build_parser().parse_args(shlex.split(str(run_config.get("args", ""))))
    except SystemExit as error:  # argparse printed what is wrong; a ServerApp must not exit
        raise ConfigError(
            f"run-config 'args' are not valid python -m deepfl.run flags (status {error.code})"
        ) from None
    if args.resume or args.print_config or args.out:
        raise ConfigError(
            "run-config 'args' takes config flags only; give the run directory as run-config 'out'"
        )
    out = str(run_config.get("out", "")).strip()
    if not out:
        raise ConfigError("run-config 'out' (the run directory) is required")
    settings = ServerSettings(
        float(run_config.get("node-wait-seconds", ServerSettings.node_wait_seconds)),
        float(run_config.get("reply-timeout", ServerSettings.reply_timeout)),
    )
    return config_from_args(args), Path(out).expanduser(), settings


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Deployment entry point: the run described by ``context.run_config``."""
    cfg, run_dir, settings = config_from_run_config(dict(context.run_config))
    run_server(grid, cfg, run_dir, settings)
