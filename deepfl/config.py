"""Typed, validated configuration of a deep federated run (ALGORITHMS.md, "Federated setup").

A config is a tree of sections (``[data]``, ``[model]``, ...) plus a few top-level keys. It is
built in layers, each overriding the previous one:

    dataclass defaults (the paper's MNIST setting)
    < dataset defaults (DATASET_DEFAULTS[data.dataset]: model, epochs, poison count, schedule)
    < preset (deepfl.presets)  < config file (TOML or JSON)  < CLI flags  < ``--set key=value``

Every layer passes through the same checks: an unknown key or section, a value of the wrong type
or an impossible value raises ``ConfigError`` (a ValueError) whose message lists what is allowed.
The fully resolved config is what a run directory stores (``config.json``).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any



class ConfigError(ValueError):
    """A config key or value is not allowed; the message says what is."""


@dataclass
class DataConfig:
    dataset: str = "mnist"
    train_limit: int = 0          # use a fixed random subset of N training images (0 = all)
    test_limit: int = 0           # use a fixed random subset of N test images (0 = all)
    num_clients: int = 100
    partition: str = "dirichlet"  # "dirichlet" | "iid"
    alpha: float = 0.5            # Dirichlet concentration
    min_client_size: int = 1      # redraw the Dirichlet split until every client has this many samples


@dataclass
class ModelConfig:
    name: str = "cnn"             # "cnn" | "resnet18" | "linear"
    resnet_width: int = 32        # 32 = released half-width ResNet-18, 64 = standard width


@dataclass
class TrainConfig:
    """Local SGD of one client: lr, momentum, weight decay, mini-batch size, epochs."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    epochs: int = 1


@dataclass
class AttackConfig:
    kind: str = "continuous"      # "none" | "single-shot" | "continuous"
    selection: str = "schedule"   # "schedule": scheduled attackers join; "random": attackers join when sampled
    num_attackers: int = 4        # attacker clients in the population
    per_round: int = 4            # attackers joining each attack round ("schedule"); single-shot forces 1
    start_round: int = 0          # first attack round (0 = pretrain_rounds + 1)
    end_round: int = 0            # last attack round (0 = last round)
    rounds: list[int] = field(default_factory=list)  # single-shot attack rounds ([] = start+1, start+3, ...)
    scale: float = 1.0            # factor applied to an attacker's update (single-shot default n / eta_g)
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    epochs: int = 10              # poison epochs
    num_poison: int = 20          # first num_poison samples of every mini-batch are poisoned
    trigger: str = "dba"          # "dba": attacker k trains with piece k mod 4 | "full"
    trigger_scale: int = 1        # trigger size (paper A.8)
    target: int = 2
    behaviour: str = "standard"   # "standard" | "adaptive" (deepfl.flip)
    behaviour_params: dict[str, Any] = field(default_factory=dict)

    def train_config(self) -> TrainConfig:
        return TrainConfig(self.lr, self.momentum, self.weight_decay, self.batch_size, self.epochs)


@dataclass
class ServerConfig:
    clients_per_round: int = 10
    rule: str = "global-lr"       # "global-lr": global += eta_g * agg | "sample-weighted": FedAvg by sample count
    global_lr: float = 0.1        # eta_g of the "global-lr" rule
    pretrain_lr: float = 1.0      # eta_g during clean pre-training (1 = plain mean; converges in few rounds)
    root_set_size: int = 100      # FLTrust root set, always removed from client data (same clients for every defense)


@dataclass
class DefenseConfig:
    server: str = "fedavg"        # a name in deepfl.defenses.REGISTRY
    params: dict[str, Any] = field(default_factory=dict)
    num_attackers: int = -1       # f given to the server defense (-1 = attackers per attack round)
    client: str = "none"          # a name in deepfl.client.CLIENT_DEFENSES ("none" | "flip")
    client_params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    rounds: int = 100
    pretrain_rounds: int = 10     # clean rounds (plain aggregation, no attack); cached and reused
    eval_every: int = 1
    checkpoint_every: int = 10
    taus: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.4, 0.7])
    eval_batch_size: int = 500
    cache_dir: str = ".cache/deepfl/pretrained"
    deterministic: bool = True
    threads: int = 0              # torch.set_num_threads (0 = leave torch's default)
    progress: bool = True


@dataclass
class ExperimentConfig:
    seed: int = 0
    device: str = "auto"          # "auto" | "cpu" | "cuda" | "cuda:N"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    benign: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

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
    name: tp for name, tp in typing.get_type_hints(ExperimentConfig).items() if name not in ("seed", "device")
}

# Dataset-dependent defaults (ALGORITHMS.md): model, local epochs, poison count, attack schedule.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "mnist": {"model": {"name": "cnn"}, "benign": {"epochs": 1},
              "attack": {"epochs": 10, "num_poison": 20}, "run": {"rounds": 100, "pretrain_rounds": 10}},
    "fashion-mnist": {"model": {"name": "cnn"}, "benign": {"epochs": 1},
                      "attack": {"epochs": 20, "num_poison": 20}, "run": {"rounds": 300, "pretrain_rounds": 200}},
    "cifar10": {"model": {"name": "resnet18"}, "benign": {"epochs": 2},
                "attack": {"epochs": 6, "num_poison": 5}, "run": {"rounds": 300, "pretrain_rounds": 200}},
    "digits": {"model": {"name": "linear"}, "attack": {"trigger": "full"}},
}

def attack_defaults(merged: dict[str, Any]) -> dict[str, Any]:
    """Attack-kind defaults: single-shot is model replacement, scale = n / eta_g (released: 10 / 0.1 = 100)."""
    if merged.get("attack", {}).get("kind", AttackConfig.kind) != "single-shot":
        return {}
    server = {**dataclasses.asdict(ServerConfig()), **merged.get("server", {})}
    eta = server["global_lr"] if server["rule"] == "global-lr" else 1.0
    return {"attack": {"scale": float(server["clients_per_round"]) / eta}}


CHOICES: dict[str, tuple[str, ...]] = {
    "data.partition": ("dirichlet", "iid"),
    "model.name": ("cnn", "resnet18", "linear"),
    "attack.kind": ("none", "single-shot", "continuous"),
    "attack.selection": ("schedule", "random"),
    "attack.trigger": ("dba", "full"),
    "attack.behaviour": ("standard", "adaptive"),
    "server.rule": ("global-lr", "sample-weighted"),
}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Return ``value`` coerced to annotation ``tp`` (int -> float allowed) or raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list of {_type_name(item_tp)}, got {value!r}")
        return [_check_value(f"{key}[{i}]", item, item_tp) for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table/dict, got {value!r}")
        return copy.deepcopy(value)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _check_value(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be one of {typing.get_args(tp)}, got {value!r}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{key} must be of type {_type_name(tp)}, got {value!r}")


def _build_section(cls: type, name: str, data: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown key '{name}.{unknown[0]}'; allowed keys in [{name}]: {', '.join(allowed)}")
    return cls(**{key: _check_value(f"{name}.{key}", value, hints[key]) for key, value in data.items()})


def _check_sections(raw: dict[str, Any]) -> None:
    allowed_top = ["seed", "device", *SECTIONS]
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"[{key}] must be a table of keys, got {value!r}")
            continue
        if key in ("seed", "device"):
            continue
        close = difflib.get_close_matches(key, list(SECTIONS), n=1)
        if close and isinstance(value, dict):
            sub = next(iter(value), "")
            raise ConfigError(
                f"unknown key '{key}.{sub}'; did you mean [{close[0]}]? allowed keys in [{close[0]}]: "
                + ", ".join(f.name for f in fields(SECTIONS[close[0]]))
            )
        raise ConfigError(f"unknown key '{key}'; allowed top-level keys: {', '.join(allowed_top)}")


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
    """Build and validate a config from a raw (possibly partial) dict over the dataclass defaults."""
    _check_sections(raw)
    kwargs: dict[str, Any] = {}
    if "seed" in raw:
        kwargs["seed"] = _check_value("seed", raw["seed"], int)
    if "device" in raw:
        kwargs["device"] = _check_value("device", raw["device"], str)
    for name, cls in SECTIONS.items():
        kwargs[name] = _build_section(cls, name, raw.get(name, {}))
    cfg = ExperimentConfig(**kwargs)
    validate(cfg)
    return cfg


def resolve(*layers: dict[str, Any]) -> ExperimentConfig:
    """Merge raw layers (lowest priority first), slot in the dataset and attack-kind defaults, validate.

    Those defaults go just above the dataclass defaults, so any layer that sets a key wins.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        _check_sections(layer)
        merged = merge(merged, layer)
    from fldata.datasets import DATASET_NAMES

    dataset = merged.get("data", {}).get("dataset", DataConfig.dataset)
    if dataset not in DATASET_NAMES:
        raise ConfigError(f"data.dataset must be one of {', '.join(DATASET_NAMES)}, got {dataset!r}")
    defaults = merge(DATASET_DEFAULTS.get(dataset, {}), attack_defaults(merged))
    return from_dict(merge(defaults, merged))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(cfg: ExperimentConfig) -> None:
    """Reject impossible values with a message saying what is allowed."""
    from fldata.datasets import DATASET_NAMES

    as_dict = cfg.to_dict()
    for dotted, allowed in CHOICES.items():
        section, key = dotted.split(".")
        value = as_dict[section][key]
        _require(value in allowed, f"{dotted} must be one of {', '.join(allowed)}, got {value!r}")
    _require(cfg.data.dataset in DATASET_NAMES,
             f"data.dataset must be one of {', '.join(DATASET_NAMES)}, got {cfg.data.dataset!r}")
    _require(cfg.device == "auto" or cfg.device == "cpu" or cfg.device.startswith("cuda"),
             f"device must be auto, cpu, cuda or cuda:N, got {cfg.device!r}")
    _require(cfg.data.train_limit >= 0 and cfg.data.test_limit >= 0, "data.train_limit/test_limit must be >= 0 (0 = all)")
    _require(cfg.data.num_clients >= 1, f"data.num_clients must be >= 1, got {cfg.data.num_clients}")
    _require(cfg.data.alpha > 0, f"data.alpha must be > 0, got {cfg.data.alpha}")
    _require(cfg.data.min_client_size >= 0, "data.min_client_size must be >= 0")
    for name, train in (("benign", cfg.benign), ("attack", cfg.attack)):
        _require(train.lr > 0, f"{name}.lr must be > 0, got {train.lr}")
        _require(0 <= train.momentum < 1, f"{name}.momentum must be in [0, 1), got {train.momentum}")
        _require(train.weight_decay >= 0, f"{name}.weight_decay must be >= 0")
        _require(train.batch_size >= 1, f"{name}.batch_size must be >= 1")
        _require(train.epochs >= 1, f"{name}.epochs must be >= 1")
    server, attack, run = cfg.server, cfg.attack, cfg.run
    _require(1 <= server.clients_per_round <= cfg.data.num_clients,
             f"server.clients_per_round must be in [1, data.num_clients={cfg.data.num_clients}], "
             f"got {server.clients_per_round}")
    _require(server.global_lr > 0 and server.pretrain_lr > 0, "server.global_lr and server.pretrain_lr must be > 0")
    _require(server.root_set_size >= 1, "server.root_set_size must be >= 1")
    _require(run.rounds >= 1, f"run.rounds must be >= 1, got {run.rounds}")
    _require(0 <= run.pretrain_rounds <= run.rounds,
             f"run.pretrain_rounds must be in [0, run.rounds={run.rounds}], got {run.pretrain_rounds}")
    _require(run.eval_every >= 1 and run.checkpoint_every >= 1, "run.eval_every and run.checkpoint_every must be >= 1")
    _require(len(run.taus) >= 1 and all(0.0 <= t <= 1.0 for t in run.taus), f"run.taus must be values in [0, 1], got {run.taus}")
    _require(run.eval_batch_size >= 1 and run.threads >= 0, "run.eval_batch_size must be >= 1 and run.threads >= 0")
    if attack.kind != "none":
        _require(1 <= attack.num_attackers < cfg.data.num_clients,
                 f"attack.num_attackers must be in [1, data.num_clients-1={cfg.data.num_clients - 1}], "
                 f"got {attack.num_attackers}")
        _require(1 <= cfg.attackers_per_round <= min(attack.num_attackers, server.clients_per_round),
                 f"attack.per_round must be in [1, min(num_attackers, clients_per_round)], got {attack.per_round}")
        _require(cfg.attack_start > run.pretrain_rounds,
                 f"attack.start_round must be after the clean pre-training (> {run.pretrain_rounds}), "
                 f"got {attack.start_round}")
        _require(cfg.attack_start <= cfg.attack_end <= run.rounds,
                 f"attack rounds must satisfy start <= end <= run.rounds={run.rounds}, "
                 f"got start={cfg.attack_start}, end={cfg.attack_end}")
        if attack.kind == "single-shot":
            bad = [r for r in cfg.single_shot_rounds if not cfg.attack_start <= r <= cfg.attack_end]
            _require(not bad, f"attack.rounds must lie in [{cfg.attack_start}, {cfg.attack_end}], got {bad}")
        _require(attack.scale > 0, "attack.scale must be > 0")
        _require(0 <= attack.num_poison <= attack.batch_size,
                 f"attack.num_poison must be in [0, attack.batch_size={attack.batch_size}], got {attack.num_poison}")
        _require(attack.trigger_scale >= 1, "attack.trigger_scale must be >= 1")
    _require(attack.target >= 0, f"attack.target must be a class index >= 0, got {attack.target}")


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

    The value is parsed as JSON when possible (numbers, booleans, lists, objects), else kept a string.
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
