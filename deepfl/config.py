"""Typed, validated configuration of a deep federated run (ALGORITHMS.md, "Federated setup").

A config is a tree of sections (``[data]``, ``[model]``, ...) plus a few top-level keys. It is
built in layers, each overriding the previous one:

    dataclass defaults (the paper's MNIST setting)
    < dataset defaults (DATASET_DEFAULTS[data.dataset]: model, epochs, poison count, schedule)
    < preset (deepfl.presets)  < config file (TOML or JSON)  < CLI flags  < ``--set key=value``

Every layer passes through the same checks. Each section declares its fields' constraints once
(``parameter_constraints``, checked by :mod:`fldata.params`); :func:`validate` adds the rules
that relate fields and checks the params of the selected server defense, client defense and
attacker against their own declarations (:mod:`deepfl.components`), all before any data is read.
An unknown key or section, a value of the wrong type or an impossible value raises
``ConfigError`` (a ValueError) whose one-line message names the key and what is allowed.
The fully resolved config is what a run directory stores (``config.json``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from fldata.datasets import DATASET_NAMES
from fldata.params import (
    BOOLEAN,
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    ConfigError,
    Constraints,
    Interval,
    ListOf,
    Options,
    Section,
    Table,
    Text,
    validate_fields,
    validate_params,
    validate_value,
)


def _defense_names() -> list[str]:
    from deepfl.defenses import REGISTRY

    return sorted(REGISTRY)


def _client_defense_names() -> list[str]:
    from deepfl.client import CLIENT_DEFENSES

    return list(CLIENT_DEFENSES)


def _attacker_names() -> list[str]:
    from deepfl.client import ATTACKER_BEHAVIOURS

    return list(ATTACKER_BEHAVIOURS)


@dataclass
class DataConfig:
    dataset: str = "mnist"
    train_limit: int = 0  # use a fixed random subset of N training images (0 = all)
    test_limit: int = 0  # use a fixed random subset of N test images (0 = all)
    num_clients: int = 100
    partition: str = "dirichlet"  # "dirichlet" | "iid"
    alpha: float = 0.5  # Dirichlet concentration
    min_client_size: int = 1  # redraw the Dirichlet split until every client has this many samples

    parameter_constraints: ClassVar[Constraints] = {
        "dataset": [Options(*DATASET_NAMES)],
        "train_limit": NON_NEGATIVE_INT,
        "test_limit": NON_NEGATIVE_INT,
        "num_clients": POSITIVE_INT,
        "partition": [Options("dirichlet", "iid")],
        "alpha": POSITIVE_FLOAT,
        "min_client_size": NON_NEGATIVE_INT,
    }


@dataclass
class ModelConfig:
    name: str = "cnn"  # "cnn" | "resnet18" | "linear"
    resnet_width: int = 32  # 32 = released half-width ResNet-18, 64 = standard width

    parameter_constraints: ClassVar[Constraints] = {
        "name": [Options("cnn", "resnet18", "linear")],
        "resnet_width": POSITIVE_INT,
    }


@dataclass
class TrainConfig:
    """Local SGD of one client: lr, momentum, weight decay, mini-batch size, epochs."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    epochs: int = 1

    parameter_constraints: ClassVar[Constraints] = {
        "lr": POSITIVE_FLOAT,
        "momentum": [Interval(float, 0, 1, closed="left")],
        "weight_decay": NON_NEGATIVE_FLOAT,
        "batch_size": POSITIVE_INT,
        "epochs": POSITIVE_INT,
    }


@dataclass
class AttackConfig:
    kind: str = "continuous"  # "none" | "single-shot" | "continuous"
    selection: str = (
        "schedule"  # "schedule": scheduled attackers join; "random": attackers join when sampled
    )
    num_attackers: int = 4  # attacker clients in the population
    per_round: int = 4  # attackers joining each attack round ("schedule"); single-shot forces 1
    start_round: int = 0  # first attack round (0 = pretrain_rounds + 1)
    end_round: int = 0  # last attack round (0 = last round)
    rounds: list[int] = field(
        default_factory=list
    )  # single-shot attack rounds ([] = start+1, start+3, ...)
    scale: float = 1.0  # factor applied to an attacker's update (single-shot default n / eta_g)
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    epochs: int = 10  # poison epochs
    num_poison: int = 20  # first num_poison samples of every mini-batch are poisoned
    trigger: str = "dba"  # "dba": attacker k trains with piece k mod 4 | "full"
    trigger_scale: int = 1  # trigger size (paper A.8)
    target: int = 2
    behaviour: str = "standard"  # "standard" | "adaptive" (deepfl.flip)
    behaviour_params: dict[str, Any] = field(default_factory=dict)

    parameter_constraints: ClassVar[Constraints] = {
        "kind": [Options("none", "single-shot", "continuous")],
        "selection": [Options("schedule", "random")],
        "num_attackers": NON_NEGATIVE_INT,
        "per_round": NON_NEGATIVE_INT,
        "start_round": NON_NEGATIVE_INT,
        "end_round": NON_NEGATIVE_INT,
        "rounds": [ListOf(Interval(int, 1, None, closed="left"))],
        "scale": POSITIVE_FLOAT,
        **TrainConfig.parameter_constraints,
        "num_poison": NON_NEGATIVE_INT,
        "trigger": [Options("dba", "full")],
        "trigger_scale": POSITIVE_INT,
        "target": NON_NEGATIVE_INT,
        "behaviour": [Options(source=_attacker_names)],
        "behaviour_params": [Table()],  # checked against attack.behaviour (deepfl.components)
    }

    def train_config(self) -> TrainConfig:
        return TrainConfig(self.lr, self.momentum, self.weight_decay, self.batch_size, self.epochs)


@dataclass
class ServerConfig:
    clients_per_round: int = 10
    # "global-lr": global += eta_g * agg | "sample-weighted": FedAvg by sample count
    rule: str = "global-lr"
    global_lr: float = 0.1  # eta_g of the "global-lr" rule
    pretrain_lr: float = (
        1.0  # eta_g during clean pre-training (1 = plain mean; converges in few rounds)
    )
    root_set_size: int = (
        100  # FLTrust root set, always removed from client data (same clients for every defense)
    )

    parameter_constraints: ClassVar[Constraints] = {
        "clients_per_round": POSITIVE_INT,
        "rule": [Options("global-lr", "sample-weighted")],
        "global_lr": POSITIVE_FLOAT,
        "pretrain_lr": POSITIVE_FLOAT,
        "root_set_size": POSITIVE_INT,
    }


@dataclass
class DefenseConfig:
    server: str = "fedavg"  # a name in deepfl.defenses.REGISTRY
    params: dict[str, Any] = field(default_factory=dict)
    assumed_attackers: int = -1  # f given to the server defense (-1 = attackers per attack round)
    client: str = "none"  # a name in deepfl.client.CLIENT_DEFENSES ("none" | "flip")
    client_params: dict[str, Any] = field(default_factory=dict)

    # params / client_params are checked against the selected defenses (deepfl.components)
    parameter_constraints: ClassVar[Constraints] = {
        "server": [Options(source=_defense_names)],
        "params": [Table()],
        "assumed_attackers": [Interval(int, -1, None, closed="left")],
        "client": [Options(source=_client_defense_names)],
        "client_params": [Table()],
    }
    # "num_attackers" read as the attacker population (attack.num_attackers); accepted, with a
    # DeprecationWarning, for one release
    renamed_parameters: ClassVar[dict[str, str]] = {"num_attackers": "assumed_attackers"}


@dataclass
class RunConfig:
    rounds: int = 100
    pretrain_rounds: int = 10  # clean rounds (plain aggregation, no attack); cached and reused
    eval_every: int = 1
    checkpoint_every: int = 10
    taus: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.4, 0.7])
    eval_batch_size: int = 500
    cache_dir: str = ""  # pre-training cache ("" = <cache root>/deepfl/pretrained, fldata.cache)
    deterministic: bool = True
    threads: int = 0  # torch.set_num_threads (0 = leave torch's default)
    progress: bool = True
    vectorise: bool = (
        False  # train a round's clients as one batched model (deepfl.vectorised; for GPUs,
    )
    # slower than one by one on CPU cores: bench/deepfl_round.py --compare)
    keep_checkpoints: list[int] = field(
        default_factory=list
    )  # also keep checkpoint-rNNNN.pt at these rounds

    parameter_constraints: ClassVar[Constraints] = {
        "rounds": POSITIVE_INT,
        "pretrain_rounds": NON_NEGATIVE_INT,
        "eval_every": POSITIVE_INT,
        "checkpoint_every": POSITIVE_INT,
        "taus": [ListOf(Interval(float, 0, 1, closed="both"), min_length=1)],
        "eval_batch_size": POSITIVE_INT,
        "cache_dir": [Text()],
        "deterministic": BOOLEAN,
        "threads": NON_NEGATIVE_INT,
        "progress": BOOLEAN,
        "vectorise": BOOLEAN,
        "keep_checkpoints": [ListOf(Interval(int, 0, None, closed="left"))],
    }


@dataclass
class ExperimentConfig:
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    benign: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    run: RunConfig = field(default_factory=RunConfig)

    parameter_constraints: ClassVar[Constraints] = {
        "seed": NON_NEGATIVE_INT,
        "device": [Text(r"auto|cpu|cuda(:[0-9]+)?", "auto, cpu, cuda or cuda:N")],
        "data": [Section(DataConfig)],
        "model": [Section(ModelConfig)],
        "benign": [Section(TrainConfig)],
        "attack": [Section(AttackConfig)],
        "server": [Section(ServerConfig)],
        "defense": [Section(DefenseConfig)],
        "run": [Section(RunConfig)],
    }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def run_name(self) -> str:
        """The default run folder name: ``<dataset>-<attack>-<server>-<client>-s<seed>``."""
        parts = (self.data.dataset, self.attack.kind, self.defense.server, self.defense.client)
        return "-".join(parts) + f"-s{self.seed}"

    def digest(self, *sections: str) -> str:
        """SHA-256 (hex, 16 chars) of the canonical JSON of the named top-level keys/sections."""
        full = self.to_dict()
        chosen = {name: full[name] for name in (sections or tuple(full))}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16]

    # Derived quantities used by the engine -------------------------------------------------
    @property
    def attack_start(self) -> int:
        return self.attack.start_round or self.run.pretrain_rounds + 1

    @property
    def attack_end(self) -> int:
        return self.attack.end_round or self.run.rounds

    @property
    def attackers_per_round(self) -> int:
        if self.attack.kind == "none":
            return 0
        return 1 if self.attack.kind == "single-shot" else self.attack.per_round

    @property
    def single_shot_rounds(self) -> list[int]:
        if self.attack.rounds:
            return sorted(self.attack.rounds)
        return [self.attack_start + 1 + 2 * k for k in range(self.attack.num_attackers)]


SECTIONS: dict[str, type] = {
    name: options[0].cls
    for name, options in ExperimentConfig.parameter_constraints.items()
    if isinstance(options[0], Section)
}

# Dataset-dependent defaults (ALGORITHMS.md): model, local epochs, poison count, attack schedule.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {
        "model": {"name": "cnn"},
        "benign": {"epochs": 1},
        "attack": {"epochs": 10, "num_poison": 20},
        "run": {"rounds": 100, "pretrain_rounds": 10},
    },
    "fashion-mnist": {
        "model": {"name": "cnn"},
        "benign": {"epochs": 1},
        "attack": {"epochs": 20, "num_poison": 20},
        "run": {"rounds": 300, "pretrain_rounds": 200},
    },
    "cifar10": {
        "model": {"name": "resnet18"},
        "benign": {"epochs": 2},
        "attack": {"epochs": 6, "num_poison": 5},
        "run": {"rounds": 300, "pretrain_rounds": 200},
    },
    "digits": {"model": {"name": "linear"}, "attack": {"trigger": "full"}},
}


def attack_defaults(merged: dict[str, Any]) -> dict[str, Any]:
    """Attack-kind defaults: single-shot is model replacement, scale = n / eta_g (released:
    10 / 0.1 = 100). The server keys it reads are validated first, so a bad one is reported as
    itself.
    """
    attack = merged.get("attack", {})
    if not isinstance(attack, dict) or attack.get("kind", AttackConfig.kind) != "single-shot":
        return {}
    server = validate_value("server", merged.get("server", {}), [Section(ServerConfig)])
    eta = server.global_lr if server.rule == "global-lr" else 1.0
    return {"attack": {"scale": float(server.clients_per_round) / eta}}


def _check_sections(raw: dict[str, Any]) -> None:
    """Refuse a layer whose top level is not a table, or that names an unknown section / key.

    A misspelled section with keys (``atack.kind``) is reported with the section it resembles.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"a config layer must be a table of keys (dict); got {raw!r}")
    allowed_top = list(ExperimentConfig.parameter_constraints)
    for key, value in raw.items():
        if key in allowed_top:
            continue
        close = difflib.get_close_matches(key, list(SECTIONS), n=1)
        if close and isinstance(value, dict):
            sub = next(iter(value), "")
            raise ConfigError(
                f"unknown key '{key}.{sub}'; did you mean [{close[0]}]? allowed keys in "
                f"[{close[0]}]: " + ", ".join(f.name for f in fields(SECTIONS[close[0]]))
            )
        validate_params(ExperimentConfig.parameter_constraints, {key: value}, where="the top level")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge two raw config dicts (sections merged key by key, other values replaced)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key in SECTIONS and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate a config from a raw (possibly partial) dict over the dataclass defaults.

    Every key is checked against the declared ``parameter_constraints`` (fldata.params), then the
    cross-field rules and the params of the selected components (:func:`validate`); the nested
    params are stored normalised (``"false"`` -> ``False``).
    """
    _check_sections(raw)
    values = validate_params(ExperimentConfig.parameter_constraints, raw, where="the top level")
    cfg = ExperimentConfig(**values)
    params, client_params, behaviour_params = _validate(cfg)
    cfg.defense.params, cfg.defense.client_params = params, client_params
    cfg.attack.behaviour_params = behaviour_params
    return cfg


def resolve(*layers: dict[str, Any]) -> ExperimentConfig:
    """Merge raw layers (lowest priority first), slot in the dataset and attack-kind defaults,
    validate.

    Those defaults go just above the dataclass defaults, so any layer that sets a key wins.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        _check_sections(layer)
        merged = merge(merged, layer)
    data, dataset = merged.get("data", {}), DataConfig.dataset
    if isinstance(data, dict):  # else from_dict reports the section itself
        dataset = validate_value(
            "data.dataset",
            data.get("dataset", dataset),
            DataConfig.parameter_constraints["dataset"],
        )
    defaults = merge(DATASET_DEFAULTS.get(dataset, {}), attack_defaults(merged))
    return from_dict(merge(defaults, merged))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(cfg: ExperimentConfig) -> None:
    """Reject impossible values with a one-line ``ConfigError`` saying what is allowed.

    Each field against its declared constraints, then the rules that relate fields, then the
    params of the selected server defense, client defense and attacker (deepfl.components).
    """
    _validate(cfg)


def _validate(cfg: ExperimentConfig) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """:func:`validate`; returns the normalised (defense.params, defense.client_params,
    attack.behaviour_params)."""
    from deepfl.components import checked_component_params

    validate_fields(cfg)
    _check_federation(cfg)
    _check_run(cfg.run)
    if cfg.attack.kind != "none":
        _check_attack(cfg)
    return checked_component_params(cfg)


def _check_federation(cfg: ExperimentConfig) -> None:
    """Seats per round fit in the population."""
    server = cfg.server
    _require(
        server.clients_per_round <= cfg.data.num_clients,
        f"server.clients_per_round must be in [1, data.num_clients={cfg.data.num_clients}], got "
        f"{server.clients_per_round}",
    )


def _check_run(run: RunConfig) -> None:
    """Pre-training fits in the run."""
    _require(
        run.pretrain_rounds <= run.rounds,
        f"run.pretrain_rounds must be in [0, run.rounds={run.rounds}], got {run.pretrain_rounds}",
    )


def _check_attack(cfg: ExperimentConfig) -> None:
    """Attackers, their rounds and their poison count fit the federation and the run."""
    attack, run = cfg.attack, cfg.run
    _require(
        1 <= attack.num_attackers < cfg.data.num_clients,
        f"attack.num_attackers must be in [1, data.num_clients-1={cfg.data.num_clients - 1}], got "
        f"{attack.num_attackers}",
    )
    seats = min(attack.num_attackers, cfg.server.clients_per_round)
    _require(
        1 <= cfg.attackers_per_round <= seats,
        "attack.per_round must be in [1, min(num_attackers, clients_per_round)], got "
        f"{attack.per_round}",
    )
    _require(
        cfg.attack_start > run.pretrain_rounds,
        f"attack.start_round must be after the clean pre-training (> {run.pretrain_rounds}), got "
        f"{attack.start_round}",
    )
    _require(
        cfg.attack_start <= cfg.attack_end <= run.rounds,
        f"attack rounds must satisfy start <= end <= run.rounds={run.rounds}, got "
        f"start={cfg.attack_start}, end={cfg.attack_end}",
    )
    if attack.kind == "single-shot":
        bad = [r for r in cfg.single_shot_rounds if not cfg.attack_start <= r <= cfg.attack_end]
        _require(
            not bad, f"attack.rounds must lie in [{cfg.attack_start}, {cfg.attack_end}], got {bad}"
        )
    _require(
        attack.num_poison <= attack.batch_size,
        f"attack.num_poison must be in [0, attack.batch_size={attack.batch_size}], got "
        f"{attack.num_poison}",
    )


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a raw config layer from a .toml or .json file."""
    path = Path(path)
    if path.suffix == ".toml":
        with path.open("rb") as handle:
            return tomllib.load(handle)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    raise ConfigError(f"config file must end in .toml or .json, got {path.name!r}")


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``"attack.kind=continuous"`` into ``{"attack": {"kind": "continuous"}}``.

    The value is parsed as JSON when possible (numbers, booleans, lists, objects), else kept a
    string.
    """
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. attack.kind=continuous), got {text!r}")
    key, raw_value = text.split("=", 1)
    try:
        value: Any = json.loads(raw_value)
    except json.JSONDecodeError:
        value = raw_value
    parts = key.strip().split(".")
    if len(parts) == 1:
        return {parts[0]: value}
    if len(parts) == 2:
        return {parts[0]: {parts[1]: value}}
    raise ConfigError(f"--set keys have the form key or section.key, got {key!r}")
