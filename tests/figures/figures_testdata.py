"""Synthetic result files that follow the schemas the figures read, and a PNG checker (test
helpers).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np


def _theorem1(rng: np.random.Generator) -> dict[str, Any]:
    """Dataset averages ordered like Theorem 1: lb <= lb_jensen <= actual <= min(ub, ub_r2)."""
    lb = -rng.uniform(0.5, 1.0)
    lb_jensen = lb + rng.uniform(0.05, 0.3)
    actual = lb_jensen + rng.uniform(0.05, 0.3)
    ub = actual + rng.uniform(0.1, 1.0)
    return {
        "lb": lb,
        "lb_jensen": lb_jensen,
        "actual": actual,
        "ub": ub,
        "ub_r2": ub + rng.uniform(-0.05, 0.5),
        "violations": 0,
    }


def _counts(rng: np.random.Generator) -> dict[str, int]:
    return {
        "n_acc": int(rng.integers(8000, 9000)),
        "n_asr": int(rng.integers(300, 6000)),
        "rejected_clean": int(rng.integers(0, 500)),
        "rejected_backdoor": int(rng.integers(0, 3000)),
    }


def make_theory_result(
    attack: str = "continuous", rounds: int = 4, seed: int = 0
) -> dict[str, Any]:
    """A schema-conforming theory.verify result; ``rounds=0`` omits the series (single round)."""
    rng = np.random.default_rng(seed)
    taus = [0.0, 0.3, 0.5, 0.9]
    corollary = []
    for (
        tau
    ) in taus:  # probe-pair counts (theory.corollary1): certified sets are subsets of actual ones
        no_defense, defense = _counts(rng), _counts(rng)
        newly = int(rng.integers(0, no_defense["n_asr"]))
        failing = 9020 - defense["n_asr"]
        corollary.append(
            {
                "tau": tau,
                "no_defense": no_defense,
                "defense": defense,
                "neutralised_actual": no_defense["n_asr"] - defense["n_asr"],
                "newly_neutralised_actual": newly,
                "certified_t1": {
                    "neutralised": failing // 4,
                    "newly_neutralised": 0,
                    "kept": 10,
                    "rejected": 1,
                },
                "certified_jensen": {
                    "neutralised": failing // 2,
                    "newly_neutralised": newly // 3,
                    "kept": defense["n_acc"] // 2,
                    "rejected": 2,
                },
                "sound": True,
            }
        )
    per_tau = []
    for (
        tau
    ) in taus:  # twin-pair counts (theory.analysis.threshold_metrics), rates = counts / totals
        entry: dict[str, Any] = {"tau": tau}
        for side in ("no_defense", "defense"):
            counts = _counts(rng)
            entry[side] = {"acc": counts["n_acc"] / 10000, "asr": counts["n_asr"] / 9020, **counts}
        per_tau.append(entry)
    metrics = {
        "no_defense": {"acc": 0.8812, "asr": 0.6123},
        "defense": {"acc": 0.8345, "asr": 0.0456},
        "tau": 0.3,
        "per_tau": per_tau,
        "clean_total": 10000,
        "backdoor_total": 9020,
    }
    theorem2 = {
        "eps_paper": None,
        "eps_paper_status": "undefined",
        "eps_A": 0.02,
        "premise_A": True,
        "eps_B": 0.05,
        "lbj0": 0.1,
        "h_l1": 3.0,
        "C_eps": 1.0,
        "C_simple": 1.2,
        "eps_for_C": 0.05,
        "delta_inf": 0.3,
        "inside_A": False,
        "inside_B": False,
        "model": "F-hat",
    }
    result = {
        "schema": "fliplab.theory.verify/1",
        "version": "0.1.0",
        "dataset": "mnist",
        "attack": attack,
        "seed": seed,
        "round": max(rounds, 1),
        "config": {},
        "taus": taus,
        "theorem1": {"clean": _theorem1(rng), "backdoor": _theorem1(rng)},
        "probe": {},
        "theorem2": theorem2,
        "corollary1": corollary,
        "metrics": metrics,
        "checks": [],
    }
    if rounds:
        result["series"] = [
            {
                "round": r,
                "theorem1": {"clean": _theorem1(rng), "backdoor": _theorem1(rng)},
                "theorem2": {
                    "eps_A": None if r == 2 else 10.0 ** rng.uniform(-3, -1),
                    "eps_B": 10.0 ** rng.uniform(-3, -1),
                    "delta_inf": 10.0 ** rng.uniform(-2, 0),
                    "eps_paper": -0.5 if r % 2 else None,
                },
                "metrics": metrics,
            }
            for r in range(1, rounds + 1)
        ]
    return result


def make_run_dir(
    root: Path,
    name: str,
    server: str = "fedavg",
    client: str = "none",
    attack: str = "continuous",
    rounds: int = 6,
    taus: tuple[float, ...] = (0.0, 0.3),
    final_acc: float = 0.9712,
    final_asr: float = 0.0123,
    confidences: bool = False,
    seed: int = 0,
    pretrain_rounds: int = 2,
    eval_every: int = 1,
) -> Path:
    """A run folder as deepfl/runner.py writes it: config.json, metrics.jsonl, summary.json[,
    confidences.npz].

    Rows of rounds that are not evaluated (``round % eval_every != 0`` and not the last) carry
    ``acc = asr = None``; attackers take part in every attack round (continuous) or in round
    ``pretrain_rounds + 2`` only (single-shot).
    """
    rng = np.random.default_rng(seed)
    run = root / name
    run.mkdir(parents=True)
    config = {
        "seed": seed,
        "data": {"dataset": "mnist"},
        "attack": {"kind": attack, "behaviour": "standard", "start_round": 0},
        "defense": {"server": server, "client": client, "client_params": {}},
        "run": {
            "rounds": rounds,
            "pretrain_rounds": pretrain_rounds,
            "taus": list(taus),
            "eval_every": eval_every,
        },
    }
    (run / "config.json").write_text(json.dumps(config))
    lines = []
    for r in range(1, rounds + 1):
        phase = "pretrain" if r <= pretrain_rounds else "attack"
        attacking = phase == "attack" and (attack == "continuous" or r == pretrain_rounds + 2)
        evaluated = r % eval_every == 0 or r == rounds
        row = {
            "round": r,
            "phase": phase,
            "clients": [0, 1, 2],
            "attackers": [0] if attacking else [],
            "accepted": None,
            "seconds": {"train": 0.1},
            "per_class_acc": None,
            "acc": {str(t): float(rng.uniform(0.8, 0.99)) for t in taus} if evaluated else None,
            "asr": {str(t): float(rng.uniform(0.0, 1.0)) for t in taus} if evaluated else None,
        }
        lines.append(json.dumps(row, sort_keys=True))
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    final = {
        "acc": {str(t): final_acc - 0.01 * i for i, t in enumerate(taus)},
        "asr": {str(t): final_asr / (1 + i) for i, t in enumerate(taus)},
        "per_class_acc": [0.9] * 10,
        "rejection_auc": 0.8,
    }
    summary = {
        "rounds": rounds,
        "final": final,
        "attack": attack,
        "defense": {"server": server, "client": client},
    }
    (run / "summary.json").write_text(json.dumps(summary))
    if confidences:
        np.savez_compressed(
            run / "confidences.npz",
            clean_confidence=rng.beta(8, 1, size=300),
            backdoor_confidence=rng.beta(2, 2, size=200),
            clean_labels=rng.integers(0, 10, 300),
        )
    return run


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; AssertionError if the file is not a PNG."""
    data = Path(path).read_bytes()
    assert len(data) > 1000, f"{path} is only {len(data)} bytes"
    assert data[:8] == PNG_SIGNATURE, f"{path} has no PNG signature"
    length, chunk_type = struct.unpack(">I4s", data[8:16])
    assert chunk_type == b"IHDR" and length == 13, f"{path} does not start with an IHDR chunk"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 0 and height > 0
    return width, height
