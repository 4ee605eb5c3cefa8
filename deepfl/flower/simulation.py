"""A deepfl run on Flower's simulation engine (Ray): one virtual SuperNode per client.

Virtual node i gets ``node_config["partition-id"] = i`` from Flower, so it is client i of the
native engine (deepfl.flower.strategy). Ray is started with ``num_cpus`` CPUs (each ClientApp
actor takes ``cpus_per_client``, so ``num_cpus // cpus_per_client`` clients train in parallel), a
bounded object store, no dashboard, and Ray's and Flower's INFO logs off unless ``verbose``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepfl.config import ExperimentConfig
from deepfl.flower.server_app import ServerSettings, make_server_app

MIB = 1024**2


@dataclass(frozen=True)
class SimulationSettings:
    """Resources of the Ray backend (see the module docstring)."""

    num_cpus: int = 2
    cpus_per_client: float = 1.0
    gpus_per_client: float = 0.0
    object_store_mib: int = 256
    verbose: bool = False

    def backend_config(self) -> dict[str, Any]:
        """Flower's ``backend_config`` for ``run_simulation``."""
        return {
            "client_resources": {
                "num_cpus": self.cpus_per_client,
                "num_gpus": self.gpus_per_client,
            },
            "init_args": {
                "num_cpus": self.num_cpus,
                "object_store_memory": self.object_store_mib * MIB,
                "include_dashboard": False,
                "logging_level": "INFO" if self.verbose else "ERROR",
                "log_to_driver": self.verbose,
            },
        }


def run_flower_simulation(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    settings: SimulationSettings | None = None,
    server: ServerSettings | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` under ``flwr.simulation.run_simulation``; return the run's summary."""
    settings = settings or SimulationSettings()
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # silence Ray's FutureWarning
    import ray
    from flwr.simulation import run_simulation

    from deepfl.flower.client_app import app as client_app

    flwr_logger = logging.getLogger("flwr")  # Flower logs through its own console handler
    level, propagate = flwr_logger.level, flwr_logger.propagate
    flwr_logger.setLevel(logging.INFO if settings.verbose else logging.ERROR)
    flwr_logger.propagate = False
    results: list[dict[str, Any]] = []
    try:
        run_simulation(
            server_app=make_server_app(cfg, run_dir, server, results.append),
            client_app=client_app,
            num_supernodes=cfg.data.num_clients,
            backend_config=settings.backend_config(),
        )
    finally:
        flwr_logger.setLevel(level)
        flwr_logger.propagate = propagate
        if ray.is_initialized():
            ray.shutdown()
    if not results:
        raise RuntimeError(f"the Flower simulation ended without finishing the run in {run_dir}")
    return results[0]
