"""Deployment mode on loopback: a SuperLink and three SuperNodes as separate processes, ``flwr
run``.

The test starts the processes itself (insecure mode, ports picked free at test time, Flower's
home under tmp_path), runs two attack rounds of FLIP (each benign SuperNode keeps its FLIP
cache in its own context.state between rounds), stops every process it started, and checks the
run directory against the native engine. Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flower_fixtures import TINY_FLIP, assert_same_run, require

require("flwr")
from engine_fixtures import single_thread

from deepfl.config import resolve
from deepfl.presets import preset
from deepfl.runner import Experiment

REPO = Path(__file__).resolve().parents[3]
APP = REPO / "deepfl" / "flower" / "app"
NUM_NODES = 3
START_TIMEOUT_S, RUN_TIMEOUT_S, STOP_TIMEOUT_S = 60, 420, 15


def _free_ports(count: int) -> list[int]:
    """Ports the OS reports free now (held open together, so they are distinct)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, (
            f"the SuperLink exited early with status {process.returncode}"
        )
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM each started process group (Flower's own children included), then SIGKILL
    stragglers.
    """
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def _federation(tmp_path: Path, env: dict[str, str]) -> Iterator[int]:
    """A SuperLink and NUM_NODES SuperNodes (partition-id 0..2); yields the SuperLink's port."""
    link_port, *node_ports = _free_ports(1 + NUM_NODES)
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[subprocess.Popen] = []

    def start(name: str, *command: str) -> subprocess.Popen:
        with open(logs / f"{name}.log", "w") as log:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.append(process)
        return process

    try:
        link = start(
            "superlink",
            "flower-superlink",
            "--insecure",
            "--host",
            "127.0.0.1",
            "--port",
            str(link_port),
            "--disable-runtime-dependency-installation",
        )
        _wait_for_port(link_port, link, START_TIMEOUT_S)
        for partition, port in enumerate(node_ports):
            start(
                f"supernode{partition}",
                "flower-supernode",
                "--insecure",
                "--superlink",
                f"127.0.0.1:{link_port}",
                "--port",
                str(port),
                "--max-wait-time",
                str(RUN_TIMEOUT_S),
                "--node-config",
                f"partition-id={partition} num-partitions={NUM_NODES}",
            )
        yield link_port
    finally:
        _stop(processes)


def _environment(tmp_path: Path) -> dict[str, str]:
    """Flower's home (its config.toml names the loopback SuperLink) under tmp_path; this checkout
    first on the Python path, this interpreter's scripts (flower-superlink, flower-superexec, ...)
    first on PATH."""
    pythonpath = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    path = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")]))
    return {
        **os.environ,
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "PYTHONPATH": pythonpath,
        "PATH": path,
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "OMP_NUM_THREADS": "1",
    }


@pytest.mark.slow
def test_superlink_and_three_supernodes_reproduce_the_native_run(tmp_path: Path) -> None:
    layer = {
        "device": "cpu",
        "data": {"num_clients": NUM_NODES, "train_limit": 600, "test_limit": 200},
        "server": {"clients_per_round": NUM_NODES},
        "attack": {"kind": "continuous", "num_attackers": 1, "per_round": 1},
        "defense": {"client": "flip", "client_params": TINY_FLIP},
        "run": {
            "rounds": 2,
            "pretrain_rounds": 0,
            "threads": 1,
            "taus": [0.0, 0.5],
            "cache_dir": str(tmp_path / "cache"),
        },
    }
    cfg = resolve(preset("micro"), layer)
    (tmp_path / "experiment.json").write_text(json.dumps(cfg.to_dict()))
    env = _environment(tmp_path)
    with _federation(tmp_path, env) as link_port:
        (tmp_path / "flwr-home").mkdir(exist_ok=True)
        (tmp_path / "flwr-home" / "config.toml").write_text(
            '[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = '
            f'"127.0.0.1:{link_port}"\n'
            "insecure = true\n"
        )
        run_config = (
            f"args='--config {tmp_path / 'experiment.json'}' out='{tmp_path / 'flower'}' "
            f"node-wait-seconds={float(START_TIMEOUT_S)} reply-timeout={float(RUN_TIMEOUT_S)}"
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flwr.cli.app",
                "run",
                str(APP),
                "loopback",
                "--stream",
                "--run-config",
                run_config,
            ],
            check=False,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
        )
    logs = "\n".join(
        f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((tmp_path / "logs").iterdir())
    )
    assert done.returncode == 0 and (tmp_path / "flower" / "summary.json").exists(), (
        done.stdout[-3000:] + logs
    )
    with single_thread():
        Experiment(cfg, tmp_path / "native").run()
    assert_same_run(tmp_path / "flower", tmp_path / "native")
    summary = json.loads((tmp_path / "flower" / "summary.json").read_text())
    assert summary["engine"]["name"] == "flower" and sorted(summary["engine"]["nodes"]) == [
        "0",
        "1",
        "2",
    ]
