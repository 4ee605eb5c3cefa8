"""The deployment ServerApp's run config: the README's ``flwr run`` line and the app's defaults
resolve.
"""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path

import pytest
from flower_fixtures import require

require("flwr")
from flwr.common.config import parse_config_args

from deepfl.config import ConfigError
from deepfl.flower.server_app import config_from_run_config

REPO = Path(__file__).resolve().parents[3]


def _readme_run_config() -> str:
    """The ``--run-config`` value of the README's ``flwr run`` command."""
    line = next(
        line
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("flwr run ")
    )
    words = shlex.split(line.replace("$PWD", "/work/here"))
    return words[words.index("--run-config") + 1]


def test_readme_deployment_command_resolves_to_a_three_node_flip_run() -> None:
    cfg, run_dir, settings = config_from_run_config(parse_config_args([_readme_run_config()]))
    assert cfg.data.num_clients == 3 and cfg.server.clients_per_round == 3
    assert cfg.defense.client == "flip" and cfg.attack.kind == "continuous"
    assert run_dir == Path("/work/here/runs/fl-deploy")
    assert settings.node_wait_seconds > 0 and settings.reply_timeout > 0


def test_app_defaults_resolve_and_bad_run_configs_are_refused() -> None:
    app = tomllib.loads((REPO / "deepfl" / "flower" / "app" / "pyproject.toml").read_text())
    assert app["tool"]["flwr"]["app"]["components"] == {
        "serverapp": "deepfl.flower.server_app:app",
        "clientapp": "deepfl.flower.client_app:app",
    }
    cfg, run_dir, _ = config_from_run_config(app["tool"]["flwr"]["app"]["config"])
    assert cfg.attack.kind == "continuous" and run_dir == Path("runs/flower-deployment")
    with pytest.raises(ConfigError, match="'out'"):
        config_from_run_config({"args": "--preset micro"})
    with pytest.raises(ConfigError, match="config flags only"):
        config_from_run_config({"args": "--preset micro --out x", "out": "y"})
    with pytest.raises(ConfigError, match="not valid"):
        config_from_run_config({"args": "--attack sometimes", "out": "y"})
    with pytest.raises(ConfigError, match="num_clients"):
        config_from_run_config({"args": "--set data.num_clients=0", "out": "y"})
