"""The three versions of the probe round (:mod:`deepfl.probe`) and their assembly into a
:class:`theory.deep.state.DeepProbeState` (float64 numpy arrays; issue 15)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepfl.client import LocalData
from deepfl.flip.hardening import StampDirection, stamped_pool
from deepfl.lastlayer import (
    features_with_bias,
    float64_copy,
    network_logits,
    only_output_layer_trains,
    output_matrix,
    set_output_matrix,
)
from deepfl.probe import CHUNK, FlipPlan, ProbeRound, load_round_start
from deepfl.runner import resolve_device
from theory.deep.state import DeepProbeState

Updates = dict[int, torch.Tensor]


def _last_layer_updates(
    probe: ProbeRound, model: nn.Module, clients: list[int], step: Callable[[LocalData, int], None]
) -> Updates:
    """``\\Delta_i = W_i - W_R`` of the output layer (float64) for each client, every client
    starting from ``W_R``.
    """
    W_start = output_matrix(model)
    updates = {}
    for client in clients:
        set_output_matrix(model, W_start)
        step(probe.data(client, torch.float64), client)
        updates[client] = probe.scaled(client, torch.as_tensor(output_matrix(model) - W_start))
    set_output_matrix(model, W_start)
    return updates


def sgd_round(
    probe: ProbeRound, model: nn.Module, plans: dict[int, FlipPlan]
) -> tuple[Updates, np.ndarray, np.ndarray]:
    """(a) with the engine's SGD: attacker updates (shared), and ``W^{nd}_{R+1}``, ``W^{d}_{R+1}``
    (output layers).
    """
    W_start = output_matrix(model)
    with only_output_layer_trains(model):
        attack = _last_layer_updates(
            probe,
            model,
            list(probe.plan.attackers),
            lambda data, c: probe.train_attacker(model, data, c),
        )
        nodef = _last_layer_updates(
            probe, model, probe.benign, lambda data, c: probe.train_benign(model, data, c, None)
        )
        fdef = _last_layer_updates(
            probe, model, probe.benign, lambda data, c: probe.train_benign(model, data, c, plans[c])
        )
    shape = W_start.shape
    W_nodef = W_start + probe.aggregated({**attack, **nodef}).numpy().reshape(shape)
    W_def = W_start + probe.aggregated({**attack, **fdef}).numpy().reshape(shape)
    return attack, W_nodef, W_def


def full_batch_step(
    model: nn.Module, parts: list[tuple[torch.Tensor, torch.Tensor]], lr: float
) -> None:
    """One gradient step ``W <- W - lr \\nabla_W \\sum_p mean_{(x,y) \\in part p} CE(f(x), y)`` on
    the trainable parameters (the probe protocol, paper convention ``\\lambda_c = \\lambda_a = 1``);
    the gradient is accumulated over chunks of :data:`CHUNK` images, in eval mode."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = None
    was_training = model.training
    model.eval()
    for images, labels in parts:
        for start in range(0, len(labels), CHUNK):
            logits = model(images[start : start + CHUNK])
            loss = F.cross_entropy(logits, labels[start : start + CHUNK], reduction="sum") / len(
                labels
            )
            loss.backward()
    model.train(was_training)
    with torch.no_grad():
        for p in params:
            assert p.grad is not None, "every trainable parameter gets a gradient from the loss"
            p.sub_(lr * p.grad)
            p.grad = None


def hardening_pool(
    probe: ProbeRound, data: LocalData, plan: FlipPlan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The client's hardening samples: each local sample of a stamping direction's sources stamped
    with each of its inverted triggers (true labels; :func:`deepfl.flip.hardening.stamped_pool`),
    and the same samples stamped with the true trigger, in the same order: ``(x_hat, x_true,
    y)``."""
    x_hat, y = stamped_pool(data.images, data.labels, plan.directions)
    true = [
        StampDirection(d.sources, (probe.true_trigger,) * len(d.triggers)) for d in plan.directions
    ]
    x_true, y_true = stamped_pool(data.images, data.labels, true)
    assert torch.equal(y, y_true)
    return x_hat, x_true, y


def protocol_round(
    probe: ProbeRound, model: nn.Module, plans: dict[int, FlipPlan], attack: Updates
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(a) under the probe protocol: ``W^{nd}_{R+1}``, ``W^{d}_{R+1}`` and the hardening pairs in
    feature space (``pool_*`` arrays of :class:`DeepProbeState`)."""
    W_start, lr = output_matrix(model), probe.cfg.benign.lr
    nodef: Updates = {}
    fdef: Updates = {}
    pools: list[dict[str, np.ndarray]] = []
    with only_output_layer_trains(model):
        for index, client in enumerate(probe.benign):
            data = probe.data(client, torch.float64)
            x_hat, x_true, y = hardening_pool(probe, data, plans[client])
            for updates, parts in (
                (nodef, [(data.images, data.labels)]),
                (fdef, [(data.images, data.labels)] + ([(x_hat, y)] if len(y) else [])),
            ):
                set_output_matrix(model, W_start)
                full_batch_step(model, parts, lr)
                updates[client] = torch.as_tensor(output_matrix(model) - W_start)
            set_output_matrix(model, W_start)
            error = (x_hat - x_true).abs().flatten(1).amax(dim=1) if len(y) else x_hat.new_zeros(0)
            pools.append(
                {
                    "pool_X_true": features_with_bias(model, x_true, CHUNK),
                    "pool_X_hat": features_with_bias(model, x_hat, CHUNK),
                    "pool_y": y.cpu().numpy(),
                    "pool_client": np.full(len(y), index, dtype=np.int64),
                    "pool_input_error": error.double().cpu().numpy(),
                }
            )
    shape = W_start.shape
    W_nodef = W_start + probe.aggregated({**attack, **nodef}).numpy().reshape(shape)
    W_def = W_start + probe.aggregated({**attack, **fdef}).numpy().reshape(shape)
    pool = {key: np.concatenate([p[key] for p in pools]) for key in pools[0]} if pools else {}
    return W_nodef, W_def, pool


def full_round(probe: ProbeRound, plans: dict[int, FlipPlan]) -> tuple[torch.Tensor, torch.Tensor]:
    """(b) the engine's round, all layers training (float32): ``G^{nd}_{R+1}`` and ``G^{d}_{R+1}``
    as flat state vectors; the attackers' updates are computed once and used in both."""
    exp, G = probe.exp, probe.start.global_state

    def updates(clients: list[int], step: Callable[[LocalData, int], None]) -> Updates:
        out = {}
        for client in clients:
            exp.flat.set(G)
            step(probe.data(client), client)
            out[client] = probe.scaled(client, exp.flat.get() - G)
        return out

    attack = updates(
        list(probe.plan.attackers), lambda data, c: probe.train_attacker(exp.model, data, c)
    )
    nodef = updates(probe.benign, lambda data, c: probe.train_benign(exp.model, data, c, None))
    fdef = updates(probe.benign, lambda data, c: probe.train_benign(exp.model, data, c, plans[c]))
    exp.flat.set(G)
    return (
        G + probe.aggregated({**attack, **nodef}, G).to(G.dtype),
        G + probe.aggregated({**attack, **fdef}, G).to(G.dtype),
    )


def _full_arrays(
    probe: ProbeRound, G_nodef: torch.Tensor, G_def: torch.Tensor
) -> dict[str, np.ndarray]:
    """Float64 logits, features at ``G^{nd}_{R+1}`` and output layers of the two full models."""
    exp, sets = probe.exp, probe.exp.federation.eval_sets
    arrays: dict[str, np.ndarray] = {}
    for name, state in (("nodef", G_nodef), ("def", G_def)):
        exp.flat.set(state)
        model = float64_copy(exp.model)
        arrays[f"full_W_{name}"] = output_matrix(model)
        for part, images in (("clean", sets.clean_images), ("backdoor", sets.backdoor_images)):
            arrays[f"full_logits_{name}_{part}"] = network_logits(model, images, CHUNK)
            if name == "nodef":
                arrays[f"full_X_{part}"] = features_with_bias(model, images, CHUNK)
    exp.flat.set(probe.start.global_state)
    return arrays


def _logit_error(
    model: nn.Module,
    images: list[torch.Tensor],
    features: list[np.ndarray],
    matrices: list[np.ndarray],
) -> float:
    """``max |network logits - W \\tilde\\phi|`` over the evaluation sets and the given output
    layers (the features-frozen check of part a); restores the model's output layer."""
    W_start, error = output_matrix(model), 0.0
    for W in matrices:
        set_output_matrix(model, W)
        for batch, X in zip(images, features, strict=True):
            error = max(
                error, float(np.abs(network_logits(model, batch, CHUNK) - X @ W.T).max(initial=0.0))
            )
    set_output_matrix(model, W_start)
    return error


def _empty_pool(D: int) -> dict[str, np.ndarray]:
    return {
        "pool_X_true": np.zeros((0, D)),
        "pool_X_hat": np.zeros((0, D)),
        "pool_y": np.zeros(0, dtype=np.int64),
        "pool_client": np.zeros(0, dtype=np.int64),
        "pool_input_error": np.zeros(0),
    }


def _meta(
    probe: ProbeRound,
    run_dir: Path,
    plans: dict[int, FlipPlan],
    weights: np.ndarray,
    seconds: dict[str, float],
) -> dict[str, Any]:
    cfg, plan = probe.cfg, probe.plan
    return {
        "run_dir": str(run_dir),
        "round": probe.start.round_index,
        "probe_round": probe.round,
        "source": probe.start.source,
        "seed": cfg.seed,
        "dataset": cfg.data.dataset,
        "attack": cfg.attack.kind,
        "model": cfg.model.name,
        "run_client_defense": cfg.defense.client,
        "flip_params": probe.flip_params,
        "clients": list(plan.clients),
        "attackers": sorted(plan.attackers),
        "benign": probe.benign,
        "poisoned": bool(plan.attackers),
        "weights": weights.tolist(),
        "server_lr": probe.server_lr,
        "benign_lr": cfg.benign.lr,
        "lambdas": [1.0, 1.0],
        "feature_layer": "input of model.output_layer",
        "directions": {
            str(c): [
                {
                    "sources": None if d.sources is None else list(d.sources),
                    "triggers": len(d.triggers),
                }
                for d in plans[c].directions
            ]
            for c in probe.benign
        },
        "seconds": seconds,
        "config": cfg.to_dict(),
    }


def probe_round(
    run_dir: str | Path,
    round_index: int,
    flip_params: dict[str, Any] | None = None,
    replay_dir: str | Path | None = None,
    device: str | None = None,
    progress: bool = False,
) -> DeepProbeState:
    """Run the probe of round ``round_index + 1`` of the run in ``run_dir`` (module
    :mod:`deepfl.probe`) and return every number the theory check needs, as float64 numpy arrays."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    torch_device = resolve_device(device) if device else None
    start = load_round_start(run_dir, round_index, replay_dir, torch_device)
    probe = ProbeRound(
        start, flip_params, torch_device or resolve_device(start.cfg.device), Path(run_dir)
    )
    seconds["load"] = time.perf_counter() - started
    probe.exp.flat.set(start.global_state)
    model = float64_copy(probe.exp.model)
    sets = probe.exp.federation.eval_sets
    X_clean, X_backdoor = (
        features_with_bias(model, images, CHUNK)
        for images in (sets.clean_images, sets.backdoor_images)
    )
    plans = probe.flip_plans(progress)
    seconds["inversion"] = time.perf_counter() - started - seconds["load"]
    attack, sgd_nodef, sgd_def = sgd_round(probe, model, plans)
    protocol_nodef, protocol_def, pool = protocol_round(probe, model, plans, attack)
    G_nodef, G_def = full_round(probe, plans)
    weights = probe.weights()
    benign_weights = np.array([weights[probe.plan.clients.index(c)] for c in probe.benign])
    error = _logit_error(
        model,
        [sets.clean_images, sets.backdoor_images],
        [X_clean, X_backdoor],
        [sgd_nodef, sgd_def],
    )
    seconds["total"] = time.perf_counter() - started
    return DeepProbeState(
        X_clean=X_clean,
        y_clean=np.asarray(sets.clean_labels),
        X_backdoor=X_backdoor,
        W_start=output_matrix(model),
        sgd_W_nodef=sgd_nodef,
        sgd_W_def=sgd_def,
        protocol_W_nodef=protocol_nodef,
        protocol_W_def=protocol_def,
        **(pool or _empty_pool(X_clean.shape[1])),
        benign_weights=benign_weights,
        **_full_arrays(probe, G_nodef, G_def),
        target=int(probe.cfg.attack.target),
        eta=float(probe.cfg.benign.lr),
        sgd_logit_error=error,
        meta=_meta(probe, Path(run_dir), plans, weights, seconds),
    )
