"""Command line: ``python -m deepfl.run --config FILE [--preset NAME] [--set key=value ...]``.

Examples
    python -m deepfl.run --preset cpu-small --attack continuous --defense fedavg --out runs/cs-cont
    python -m deepfl.run --preset paper --dataset mnist --defense krum --set run.eval_every=5 \\
        --out runs/krum
    # continue a killed run from its last checkpoint (--device and --threads may change)
    python -m deepfl.run --resume runs/cs-cont --threads 1
    python -m deepfl.run --preset cpu-small --set run.keep_checkpoints=[20,40] --stop-after 40 \\
        --out runs/cs
    # three seeds in lockstep, their vectorisable clients batched (deepfl.population; for GPUs)
    python -m deepfl.run --preset paper --attack continuous --seeds 0 1 2 --out 'runs/p-s{seed}'
    python -m deepfl.run --resume runs/p-s0 runs/p-s1 runs/p-s2

Layers (lowest first): defaults < dataset defaults < --preset < --config < flags < --set.

Exit status (fldata.cli): 0 done; 1 the global model diverged; 2 a usage or config error; 3 an I/O
or data error (unwritable --out or cache folder, damaged checkpoint, RUN_DIR in use by another run).
The device, the output and cache folders and the run folder's lock are checked before any data
is read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepfl.config import (
    ConfigError,
    ExperimentConfig,
    from_dict,
    load_file,
    parse_override,
    resolve,
)
from deepfl.population import SeedPopulation, population_dirs
from deepfl.presets import PRESETS, preset
from deepfl.rundir import hold_run_dir
from deepfl.runner import (
    CONFIG_NAME,
    Experiment,
    check_resumable,
    load_run_config,
    override_threads,
    pretrain_cache_dir,
    resolve_device,
)
from fldata.cli import InputOutputError, check_writable_dir, main_guard
from fldata.params import POSITIVE_INT, argparse_type


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deepfl.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="TOML or JSON config file")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="named config layer")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set attack.start_round=12 (value parsed as JSON if "
        "possible)",
    )
    parser.add_argument("--dataset", help="shortcut for --set data.dataset=NAME")
    parser.add_argument("--defense", help="server defense name (shortcut for defense.server)")
    parser.add_argument(
        "--client-defense", help="client defense name, e.g. flip (shortcut for defense.client)"
    )
    parser.add_argument(
        "--attack", choices=["none", "single-shot", "continuous"], help="shortcut for attack.kind"
    )
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--threads",
        type=argparse_type(POSITIVE_INT, int),
        metavar="N",
        help="torch threads of this process, over run.threads; also with --resume (the stored "
        "config keeps its value)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="S",
        help="run these seeds together, their vectorisable clients as one batched model "
        "(deepfl.population; run.vectorise is switched on); --out must contain {seed}",
    )
    parser.add_argument(
        "--out", help="run directory (default runs/<dataset>-<attack>-<defense>-s<seed>)"
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        nargs="+",
        help="continue the run stored in RUN_DIR (several: continue them as one population)",
    )
    parser.add_argument(
        "--stop-after",
        type=argparse_type(POSITIVE_INT, int),
        metavar="R",
        help="stop after round R (checkpointed; continue later with --resume)",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    layers: list[dict[str, Any]] = []
    if args.preset:
        layers.append(preset(args.preset))
    if args.config:
        try:
            layers.append(load_file(args.config))
        except OSError as error:
            raise InputOutputError(
                f"--config {args.config} cannot be read: {error.strerror or error}"
            ) from None
        except ConfigError:
            raise
        except ValueError as error:  # TOML / JSON syntax
            raise ConfigError(f"--config {args.config}: {error}") from None
    flags: dict[str, Any] = {}
    for value, section, key in (
        (args.dataset, "data", "dataset"),
        (args.defense, "defense", "server"),
        (args.client_defense, "defense", "client"),
        (args.attack, "attack", "kind"),
    ):
        if value is not None:
            flags.setdefault(section, {})[key] = value
    if args.device is not None:
        flags["device"] = args.device
    if args.seed is not None:
        flags["seed"] = args.seed
    layers.append(flags)
    layers.extend(parse_override(text) for text in args.overrides)
    return resolve(*layers)


def _resume_config(args: argparse.Namespace) -> tuple[ExperimentConfig, Path]:
    """The stored config of ``--resume RUN_DIR``; only execution flags (``--device``,
    ``--threads``, ``--stop-after``) may come with it."""
    extra = [
        flag
        for flag, value in (
            ("--config", args.config),
            ("--preset", args.preset),
            ("--set", args.overrides),
            ("--dataset", args.dataset),
            ("--defense", args.defense),
            ("--attack", args.attack),
            ("--client-defense", args.client_defense),
            ("--seed", args.seed),
            ("--seeds", args.seeds),
            ("--out", args.out),
        )
        if value
    ]
    if extra:
        raise ConfigError(
            "--resume continues the stored config; it accepts only --device, --threads and "
            "--stop-after, not "
            f"{', '.join(extra)}"
        )
    return load_run_config(args.resume[0]), Path(args.resume[0])


def run(args: argparse.Namespace) -> int:
    """Resolve the config, check device, folders and lock (before any data is read), run; exit
    status.
    """
    if (args.resume and len(args.resume) > 1) or args.seeds:
        return run_population(args)
    if args.resume:
        cfg, run_dir = _resume_config(args)
    else:
        cfg = config_from_args(args)
        if args.print_config:
            print(json.dumps(cfg.to_dict(), indent=2))
            return 0
        run_dir = Path(args.out or f"runs/{cfg.run_name()}")
    device = resolve_device(args.device or cfg.device)
    check_cache_folder(cfg)
    with held_run_dir(run_dir, cfg, resumed=bool(args.resume)):
        experiment = Experiment(cfg, run_dir, device)
        override_threads(args.threads)
        summary = experiment.run(stop_after=args.stop_after)
    if summary is None:
        print(json.dumps({"run_dir": str(run_dir), "stopped_after": args.stop_after}))
        return 0
    print(json.dumps({"run_dir": str(run_dir), **summary["final"]}, indent=2))
    return 0


def check_cache_folder(cfg: ExperimentConfig) -> None:
    """The pre-training cache folder must be writable when the run pre-trains (checked before any
    data is read)."""
    if cfg.run.pretrain_rounds:
        check_writable_dir(pretrain_cache_dir(cfg), "the pre-training cache folder (run.cache_dir)")


@contextlib.contextmanager
def held_run_dir(run_dir: Path, cfg: ExperimentConfig, resumed: bool) -> Iterator[None]:
    """Hold ``run_dir``'s lock; a resumed run's stored config must match ``cfg``, a fresh run's
    folder must hold no run yet."""
    with hold_run_dir(run_dir):
        if resumed:
            check_resumable(run_dir, cfg)
        elif (run_dir / CONFIG_NAME).exists():
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose "
                "another --out"
            )
        yield


def _population_configs(args: argparse.Namespace) -> list[tuple[ExperimentConfig, Path, bool]]:
    """(config, run folder, resumed) of every run of ``--seeds`` / several ``--resume``."""
    if args.resume:
        _resume_config(argparse.Namespace(**{**vars(args), "resume": args.resume[:1]}))
        return [(load_run_config(folder), Path(folder), True) for folder in args.resume]
    if args.seed is not None:
        raise ConfigError("give --seed or --seeds, not both")
    if args.print_config:
        raise ConfigError("--print-config takes one --seed, not --seeds")
    base = config_from_args(args).to_dict()
    configs = [
        from_dict({**base, "seed": seed, "run": {**base["run"], "vectorise": True}})
        for seed in args.seeds
    ]
    folders = (
        population_dirs(args.out, args.seeds)
        if args.out
        else [Path(f"runs/{cfg.run_name()}") for cfg in configs]
    )
    return [(cfg, folder, False) for cfg, folder in zip(configs, folders, strict=True)]


def run_population(args: argparse.Namespace) -> int:
    """``--seeds`` or several ``--resume``: the runs as one :class:`SeedPopulation`."""
    runs = _population_configs(args)
    device = resolve_device(args.device or runs[0][0].device)
    check_cache_folder(runs[0][0])  # the runs differ only in the seed
    with contextlib.ExitStack() as stack:
        for cfg, run_dir, resumed in runs:
            stack.enter_context(held_run_dir(run_dir, cfg, resumed))
        population = SeedPopulation([Experiment(cfg, folder, device) for cfg, folder, _ in runs])
        override_threads(args.threads)
        summaries = population.run(stop_after=args.stop_after)
    for (_, run_dir, _), summary in zip(runs, summaries, strict=True):
        final = summary["final"] if summary else {"stopped_after": args.stop_after}
        print(json.dumps({"run_dir": str(run_dir), **final}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m deepfl.run``; returns the exit status (module docstring)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return main_guard(lambda: run(args), usage=(ConfigError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
