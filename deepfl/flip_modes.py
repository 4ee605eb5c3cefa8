"""The field values of FLIP's three named modes and its per-data-set defaults (issue 17); torch-free
(outside the deepfl.flip package) so that the reproduction grid and figures import it without torch.

A mode is a set of :class:`~deepfl.flip.config.FlipConfig` field values; a run selects one with
``defense.client_params = {"mode": "paper" | "release" | "fliplab", ...}`` (other keys override
single fields). The values depend on the run's data set (``data.dataset``) where the paper or the
released code uses different constants per data set. The classmethods ``FlipConfig.paper``,
``FlipConfig.release`` and ``FlipConfig.fliplab`` document where every value comes from; this
module only holds the numbers, so the docs table (``docs/flip_modes.md``, written by
:func:`mode_table`) is generated from the same source.

Released code: ``invert_MNIST.py`` / ``invert_FashionMNIST.py`` / ``invert_CIFAR.py`` of
github.com/KaiyuanZh/FLIP (``trigger_fast_train``), read for behaviour only.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MODES", "DEFAULT_MODE", "dataset_family", "dataset_fields", "mode_fields", "mode_table"]

MODES: tuple[str, ...] = ("paper", "release", "fliplab")
DEFAULT_MODE = "fliplab"
DATASET_FAMILIES: tuple[str, ...] = ("mnist", "fashion-mnist", "cifar10")

# Per-data-set constants shared by every mode (released code; the paper states the thresholds only
# in words): NC's attack-success threshold (Trigger(attack_succ_threshold=...)), the confidence
# threshold tau of the continuous attack (paper App. A.9: 0.3 on MNIST; CIFAR-10: the release's
# config comment "continuous attack: 0.4"), and the release's in-place stamping portion.
_DATASET_FIELDS: dict[str, dict[str, Any]] = {
    "mnist": {"attack_success_threshold": 0.9, "rejection_tau": 0.3, "replace_portion": 0.5},
    "fashion-mnist": {
        "attack_success_threshold": 0.9,
        "rejection_tau": 0.3,
        "replace_portion": 0.6,
    },
    "cifar10": {"attack_success_threshold": 0.85, "rejection_tau": 0.4, "replace_portion": 0.9},
}

# The released code's per-data-set constants (trigger_fast_train): label_grt_min's size_min, Adam's
# learning_rate, epochs (capped by max_steps = 10 warm-up + 100 = 110 batch steps), the mask cap
# (28*28/8, 32*32*3/4 over 3 channels = 1/4 of the pixels), the universal trigger_steps of the
# warm-up and the first trigger_steps of a pair.
_RELEASE_FIELDS: dict[str, dict[str, Any]] = {
    "mnist": {
        "min_samples_per_label": 1,
        "hardening_lr": 0.01,
        "hardening_epochs": 10,
        "max_mask_fraction": 0.125,
        "warmup_steps": 400,
        "pair_steps": 200,
    },
    "fashion-mnist": {
        "min_samples_per_label": 1,
        "hardening_lr": 0.01,
        "hardening_epochs": 5,
        "max_mask_fraction": 0.125,
        "warmup_steps": 600,
        "pair_steps": 400,
    },
    "cifar10": {
        "min_samples_per_label": 5,
        "hardening_lr": 0.001,
        "hardening_epochs": 8,
        "max_mask_fraction": 0.25,
        "warmup_steps": 600,
        "pair_steps": 200,
    },
}

_PAPER: dict[str, Any] = {
    "warm_start_from_universal": False,
    "harden_with_universal": False,
    "distance": "loss_variance",
    "pair_priority": "largest",
    "pairs_per_round": None,
    "pair_schedule": "rotate",
    "pair_hold_batches": 1,
    "exploration_prob": 0.0,
    "min_samples_per_label": 5,
    "symmetric_rule": "client",
    "focus_smallest_universal": 0,
    "max_mask_fraction": 1.0,
    "augment_mode": "append",
    "num_augmented": 64,
    "hardening_optimizer": "sgd",
}

_RELEASE: dict[str, Any] = {
    "warm_start_from_universal": True,
    "harden_with_universal": True,
    "distance": "mask_growth",
    "pair_priority": "largest",
    "pairs_per_round": 5,
    "pair_schedule": "rotate",
    "pair_hold_batches": 2,
    "exploration_prob": 0.3,
    "symmetric_rule": "batch",
    "focus_smallest_universal": 0,
    "augment_mode": "replace",
    "hardening_optimizer": "adam",
    "hardening_betas": (0.5, 0.9),
    "hardening_weight_decay": 0.0,
    "hardening_max_steps": 110,
}

_FLIPLAB: dict[str, Any] = {}  # the dataclass defaults (FlipConfig()) are fliplab's values


def dataset_family(dataset: str | None) -> str:
    """``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``: whose constants a data set takes.

    ``None`` (no run context) and the grey-scale sets without constants of their own (``digits``)
    take MNIST's."""
    return dataset if dataset in DATASET_FAMILIES else "mnist"


def dataset_fields(dataset: str | None) -> dict[str, Any]:
    """The per-data-set fields every mode shares (threshold, tau, replacement portion)."""
    return dict(_DATASET_FIELDS[dataset_family(dataset)])


def mode_fields(mode: str, dataset: str | None = None) -> dict[str, Any]:
    """All fields ``mode`` sets on ``dataset`` (the rest keep the dataclass defaults)."""
    if mode not in MODES:
        raise ValueError(f"unknown FLIP mode {mode!r}; allowed: {', '.join(MODES)}")
    fields = dataset_fields(dataset)
    if mode == "paper":
        fields.update(_PAPER)
    elif mode == "release":
        fields.update(_RELEASE)
        fields.update(_RELEASE_FIELDS[dataset_family(dataset)])
    else:
        fields.update(_FLIPLAB)
    return fields


def mode_table(configs: dict[str, dict[str, Any]], defaults: dict[str, Any]) -> str:
    """Markdown table of the fields on which ``configs`` (column name -> ``to_dict()``) differ.

    ``defaults`` (the dataclass defaults) is shown as the first column for reference."""
    names = list(configs)
    keys = [key for key in defaults if len({repr(c[key]) for c in configs.values()}) > 1]
    lines = ["| field | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key in keys:
        lines.append(
            f"| `{key}` | " + " | ".join(_cell(configs[name][key]) for name in names) + " |"
        )
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_cell(v) for v in value) + ")"
    if value is None:
        return "None"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
