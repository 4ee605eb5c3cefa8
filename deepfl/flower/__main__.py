"""``python -m deepfl.flower [deepfl.run config flags] [--num-cpus N ...]``: a run on Flower's
simulation engine.

    python -m deepfl.flower --preset micro --attack continuous --client-defense flip --out runs/fl

The config flags are those of ``python -m deepfl.run`` (same parser, same layering); the run
directory has the native format (``python -m figures deep runs/fl``) and the exit status is
deepfl.run's (2 usage or config error, 3 I/O or data error, RUN_DIR in use). ``--resume`` is not
supported for Flower runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from deepfl.config import ConfigError
from deepfl.flower.server_app import ServerSettings
from deepfl.flower.simulation import SimulationSettings, run_flower_simulation
from deepfl.run import build_parser, config_from_args
from deepfl.rundir import hold_run_dir
from deepfl.runner import CONFIG_NAME, resolve_device
from fldata.cli import main_guard


def build_flower_parser() -> argparse.ArgumentParser:
    """deepfl.run's parser plus the simulation's resource options."""
    parser = build_parser()
    parser.prog = "python -m deepfl.flower"
    parser.description = __doc__
    group = parser.add_argument_group("Flower simulation (Ray)")
    group.add_argument(
        "--num-cpus", type=int, default=SimulationSettings.num_cpus, help="CPUs Ray may use"
    )
    group.add_argument("--cpus-per-client", type=float, default=SimulationSettings.cpus_per_client)
    group.add_argument("--gpus-per-client", type=float, default=SimulationSettings.gpus_per_client)
    group.add_argument(
        "--object-store-mib",
        type=int,
        default=SimulationSettings.object_store_mib,
        help="Ray object store size (MiB)",
    )
    group.add_argument(
        "--reply-timeout",
        type=float,
        default=ServerSettings.reply_timeout,
        help="seconds to wait for one round's client replies",
    )
    group.add_argument("--verbose", action="store_true", help="show Flower's and Ray's INFO logs")
    return parser


def run(args: argparse.Namespace) -> int:
    """Resolve the config, check device, folders and lock (before Ray starts), run; exit status."""
    if args.resume:
        raise ConfigError("--resume is not supported for Flower runs; start a new run")
    cfg = config_from_args(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    run_dir = Path(args.out or f"runs/flower-{cfg.run_name()}")
    resolve_device(args.device or cfg.device)
    with hold_run_dir(run_dir):
        if (run_dir / CONFIG_NAME).exists():
            raise ConfigError(f"{run_dir} already holds a run; choose another --out")
        settings = SimulationSettings(
            args.num_cpus,
            args.cpus_per_client,
            args.gpus_per_client,
            args.object_store_mib,
            args.verbose,
        )
        summary = run_flower_simulation(
            cfg, run_dir, settings, ServerSettings(reply_timeout=args.reply_timeout)
        )
    print(json.dumps({"run_dir": str(run_dir), **summary["final"]}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m deepfl.flower``; exit status as ``python -m deepfl.run`` (fldata.cli)."""
    args = build_flower_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(
        logging.WARNING
    )  # Flower's link-state database migrations
    return main_guard(lambda: run(args), usage=(ConfigError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
