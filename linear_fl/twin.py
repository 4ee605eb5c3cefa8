"""Twin runs: the same FedAvg attack process without and with the FLIP defense (THEORY.md section
10).

:func:`prepare` builds a :class:`Setup` (data split, clients, test sets, true
trigger, pre-trained ``W_0`` from the cache). :func:`run_twin` runs ``rounds``
attack rounds twice from ``W_0``; each twin gets its own copy of the role
streams spawned from the seed (:func:`linear_fl.data.role_streams`), so the
random draws of both twins are identical and their only difference is the
benign client's hardening. Round ``r`` (1-based) poisons if the attack is
continuous or ``r == attack_round`` (single-shot, update scaled by the
replacement factor ``scale``, default ``1 / p_M``; see :class:`LinearFLConfig`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fldata.datasets import load_dataset
from fldata.metrics import accuracy, attack_success_rate
from fldata.partition import two_client_split
from fldata.triggers import Trigger

from .attack import backdoor_test_set, malicious_update, true_trigger
from .config import LinearFLConfig
from .data import ClientData, augmented_images, data_fingerprint, role_streams
from .defense import benign_update, recover_trigger
from .inversion import NeuralCleanseChoice
from .model import softmax_probs
from .pretrain import PretrainResult, pretrain
from .server import aggregation_weights, fedavg
from .training import LocalTraining
from .trigger_error import TriggerError, trigger_error


@dataclass(frozen=True)
class Setup:
    """Everything both twins share. Arrays are float64 and augmented with the bias 1."""

    config: LinearFLConfig
    image_shape: tuple[int, int, int]
    num_classes: int
    benign: ClientData
    malicious: ClientData
    weights: np.ndarray  # (p_B, p_M)
    test_Xa: np.ndarray  # clean test set (all test images)
    test_y: np.ndarray
    backdoor_Xa: np.ndarray  # S_b: test images with label != target, true trigger stamped
    backdoor_indices: np.ndarray  # their indices in the test set (attack label = target)
    true_trigger: Trigger
    W0: np.ndarray  # converged clean pre-trained model
    pretrain: PretrainResult
    benign_indices: np.ndarray  # training-set indices of the benign client
    malicious_indices: np.ndarray
    benign_pixel_min: np.ndarray = field(repr=False)  # per-coordinate range (for ||delta||_inf)
    benign_pixel_max: np.ndarray = field(repr=False)

    @property
    def p_B(self) -> float:
        return float(self.weights[0])

    @property
    def p_M(self) -> float:
        return float(self.weights[1])

    def malicious_training(self) -> LocalTraining:
        cfg = self.config
        return LocalTraining(
            cfg.effective_malicious_lr,
            cfg.effective_malicious_local_epochs,
            cfg.malicious_batch_size,
        )

    def poisons_in(self, round_index: int) -> bool:
        """Whether the malicious client poisons in round ``round_index`` (1-based, after
        pre-training).
        """
        return self.config.attack == "continuous" or round_index == self.config.attack_round

    def replacement_scale(self, round_index: int) -> float:
        """Model-replacement factor of the malicious update in that round: ``scale`` (``None`` = ``1
        / p_M``) in the single-shot attack round, 1 otherwise."""
        single = self.config.attack == "single-shot" and round_index == self.config.attack_round
        return self.config.replacement_factor(self.p_M) if single else 1.0

    def malicious_model(
        self,
        W_t: np.ndarray,
        round_index: int,
        rng: np.random.Generator,
        attack: LinearFLConfig | None = None,
    ) -> np.ndarray:
        """The malicious client's submitted model ``W_M`` for round ``round_index`` from ``W_t``
        (:func:`linear_fl.attack.malicious_update` with this setup's data, trigger and schedule;
        ``attack`` overrides the config that gives the target and the poison fraction)."""
        cfg = attack or self.config
        return malicious_update(
            W_t,
            self.malicious,
            self.malicious_training(),
            rng,
            self.true_trigger,
            self.image_shape,
            cfg.target,
            cfg.poison_fraction,
            self.poisons_in(round_index),
            self.replacement_scale(round_index),
        )


def prepare(config: LinearFLConfig | dict[str, Any] | None = None) -> Setup:
    """Load the data, split it between the clients, build test sets and the true trigger, pre-train
    ``W_0``.
    """
    cfg = config if isinstance(config, LinearFLConfig) else LinearFLConfig.from_dict(config or {})
    ds = load_dataset(cfg.dataset)
    channels, height, width = (int(s) for s in ds.image_shape)
    image_shape = (channels, height, width)
    if not 0 <= cfg.target < ds.num_classes:
        raise ValueError(
            f"target must be a class of {cfg.dataset} (0..{ds.num_classes - 1}), got {cfg.target}"
        )
    x_train, y_train = (
        ds.x_train[: cfg.max_train_samples],
        np.asarray(ds.y_train[: cfg.max_train_samples], np.int64),
    )
    x_test, test_y = (
        ds.x_test[: cfg.max_test_samples],
        np.asarray(ds.y_test[: cfg.max_test_samples], np.int64),
    )
    benign_idx, malicious_idx = two_client_split(len(y_train), cfg.seed, cfg.benign_fraction)
    benign = ClientData(augmented_images(x_train, benign_idx), y_train[benign_idx])
    malicious = ClientData(augmented_images(x_train, malicious_idx), y_train[malicious_idx])
    weights = aggregation_weights([benign.n, malicious.n], cfg.weights)
    fingerprint = data_fingerprint(x_train, y_train, np.asarray(benign_idx))
    pre = pretrain(cfg, [benign, malicious], weights, ds.num_classes, fingerprint)
    trig = true_trigger(image_shape, cfg.trigger_pieces, cfg.trigger_scale)
    test_Xa = augmented_images(x_test)
    backdoor_Xa, backdoor_idx = backdoor_test_set(test_Xa, test_y, trig, image_shape, cfg.target)
    pixels = benign.Xa[:, :-1]
    return Setup(
        config=cfg,
        image_shape=image_shape,
        num_classes=ds.num_classes,
        benign=benign,
        malicious=malicious,
        weights=weights,
        test_Xa=test_Xa,
        test_y=test_y,
        backdoor_Xa=backdoor_Xa,
        backdoor_indices=backdoor_idx,
        true_trigger=trig,
        W0=pre.W,
        pretrain=pre,
        benign_indices=np.asarray(benign_idx),
        malicious_indices=np.asarray(malicious_idx),
        benign_pixel_min=pixels.min(axis=0),
        benign_pixel_max=pixels.max(axis=0),
    )


def evaluate(setup: Setup, W: np.ndarray, tau: float = 0.0) -> tuple[float, float]:
    """``(ACC on the clean test set, ASR on S_b)`` with confidence threshold ``tau``
    (fldata.metrics).
    """
    acc = accuracy(softmax_probs(W, setup.test_Xa), setup.test_y, tau)
    asr = attack_success_rate(softmax_probs(W, setup.backdoor_Xa), setup.config.target, tau)
    return float(acc), float(asr)


@dataclass
class Trajectory:
    """One twin's history. ``globals[r]`` = global model after ``r`` attack rounds (``globals[0] =
    W_0``); ``client_models[r-1]`` = ``{"benign": W_B, "malicious": W_M}`` submitted in round ``r``;
    ``accuracy[r]``, ``asr[r]`` evaluate ``globals[r]``. Defense twin only:
    ``recovered_triggers[r-1]``, ``trigger_errors[r-1]`` (``max_j ||delta_j||_inf``),
    ``trigger_details[r-1]`` and ``inversions[r-1]``."""

    defended: bool
    globals: list[np.ndarray] = field(default_factory=list)
    client_models: list[dict[str, np.ndarray]] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    asr: list[float] = field(default_factory=list)
    recovered_triggers: list[Trigger] = field(default_factory=list)
    trigger_errors: list[float] = field(default_factory=list)
    trigger_details: list[TriggerError] = field(default_factory=list)
    inversions: list[NeuralCleanseChoice] = field(default_factory=list)


@dataclass
class TwinResult:
    setup: Setup
    nodef: Trajectory
    defense: Trajectory
    timings: dict[
        str, float
    ]  # seconds spent in training, inversion, evaluation (summed over twins and threads)

    @property
    def rounds(self) -> int:
        return len(self.nodef.globals) - 1

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Stacked arrays of both trajectories (models, client models, triggers, metrics) for
        ``save_state``.
        """
        out: dict[str, np.ndarray] = {}
        for name, traj in (("nodef", self.nodef), ("defense", self.defense)):
            out[f"{name}_globals"] = np.stack(traj.globals)
            out[f"{name}_accuracy"] = np.asarray(traj.accuracy)
            out[f"{name}_asr"] = np.asarray(traj.asr)
            if traj.client_models:
                for role in ("benign", "malicious"):
                    out[f"{name}_{role}_models"] = np.stack([m[role] for m in traj.client_models])
        d = self.defense
        if d.recovered_triggers:
            out["recovered_masks"] = np.stack([t.mask for t in d.recovered_triggers])
            out["recovered_patterns"] = np.stack([t.pattern for t in d.recovered_triggers])
            out["trigger_linf"] = np.asarray(d.trigger_errors)
            out["trigger_iou"] = np.asarray([e.iou for e in d.trigger_details])
            out["trigger_topk_overlap"] = np.asarray([e.topk_overlap for e in d.trigger_details])
            out["selected_targets"] = np.asarray([e.selected_target for e in d.trigger_details])
        out["true_mask"] = np.asarray(self.setup.true_trigger.mask, dtype=np.float64)
        out["true_pattern"] = np.asarray(self.setup.true_trigger.pattern, dtype=np.float64)
        out["backdoor_indices"] = self.setup.backdoor_indices
        out["benign_indices"] = self.setup.benign_indices
        return out

    def save(self, path: str) -> None:
        """Write :meth:`to_arrays` with the config and seed as ``path.npz`` + ``path.json``."""
        from .state import save_state

        cfg = self.setup.config
        save_state(
            path,
            self.to_arrays(),
            {
                "config": cfg.to_dict(),
                "seed": cfg.seed,
                "rounds": self.rounds,
                "timings": self.timings,
            },
        )


class _Twin:
    """One twin's mutable run state (its own streams and warm starts). Each phase returns its
    seconds.
    """

    def __init__(self, setup: Setup, defended: bool, evaluate: bool = True) -> None:
        self.setup, self.defended, self.evaluate = setup, defended, evaluate
        self.streams = role_streams(setup.config.seed)
        self.trajectory = Trajectory(defended=defended, globals=[setup.W0.copy()])
        self.warm: dict[int, tuple[np.ndarray, np.ndarray]] | None = None

    def malicious(self, round_index: int, W_t: np.ndarray) -> tuple[np.ndarray, float]:
        """The malicious client's submission in round ``round_index`` from ``W_t`` (its own
        stream).
        """
        t0 = time.perf_counter()
        W_M = self.setup.malicious_model(W_t, round_index, self.streams["malicious"])
        return W_M, time.perf_counter() - t0

    def invert(
        self, W_t: np.ndarray, helper: ThreadPoolExecutor | None = None
    ) -> tuple[Trigger, float]:
        """Defense twin: the benign client's trigger inversion against ``W_t``, recorded in the
        trajectory (``helper``'s thread may take candidate classes,
        :func:`linear_fl.parallel.run_shared`)."""
        s, traj, t0 = self.setup, self.trajectory, time.perf_counter()
        inv = recover_trigger(
            W_t,
            s.benign,
            s.config,
            s.image_shape,
            s.num_classes,
            self.streams["inversion"],
            self.warm,
            helper,
        )
        self.warm = inv.warm_starts()
        err = trigger_error(
            inv.trigger, s.true_trigger, s.benign_pixel_min, s.benign_pixel_max, inv.selected_target
        )
        traj.inversions.append(inv)
        traj.recovered_triggers.append(inv.trigger)
        traj.trigger_details.append(err)
        traj.trigger_errors.append(err.linf)
        return inv.trigger, time.perf_counter() - t0

    def benign_and_aggregate(
        self, W_t: np.ndarray, W_M: np.ndarray, recovered: Trigger | None
    ) -> float:
        """Benign local model (hardened if ``recovered``), FedAvg with ``W_M``; returns the seconds
        taken.
        """
        s, traj, t0 = self.setup, self.trajectory, time.perf_counter()
        W_B = benign_update(W_t, s.benign, s.config, self.streams["benign"], recovered)
        traj.globals.append(
            fedavg(W_t, [W_B, W_M], s.weights, names=("benign client", "malicious client"))
        )
        traj.client_models.append({"benign": W_B, "malicious": W_M})
        return time.perf_counter() - t0

    def record_metrics(self, W: np.ndarray) -> float:
        """ACC/ASR of ``W`` appended to the trajectory (skipped when ``evaluate`` is False)."""
        t0 = time.perf_counter()
        if self.evaluate:
            acc, asr = evaluate(self.setup, W)
            self.trajectory.accuracy.append(acc)
            self.trajectory.asr.append(asr)
        return time.perf_counter() - t0

    def step(self, round_index: int) -> dict[str, float]:
        """One whole round in the calling thread; returns the seconds per phase."""
        W_t = self.trajectory.globals[-1]
        W_M, t_mal = self.malicious(round_index, W_t)
        recovered, t_inv = self.invert(W_t) if self.defended else (None, 0.0)
        t_train = t_mal + self.benign_and_aggregate(W_t, W_M, recovered)
        return {
            "training": t_train,
            "inversion": t_inv,
            "evaluation": self.record_metrics(self.trajectory.globals[-1]),
        }


def _add(total: dict[str, float], part: dict[str, float]) -> None:
    for key, seconds in part.items():
        total[key] += seconds


def _run_rounds(
    twins: list[_Twin],
    rounds: int,
    timings: dict[str, float],
    progress: bool,
    background: ThreadPoolExecutor | None,
) -> None:
    """Rounds 1..rounds of both twins. With ``background``, the no-defense twin's rounds run in
    that one-thread executor (in submission order), which also takes candidate classes of the
    inversion when free, while this thread inverts, trains the defense twin's malicious update and
    hardens: every computation, its inputs and its random stream (one per role) are those of the
    sequential run."""
    nodef, defense = twins
    pending = []
    for r in tqdm(range(1, rounds + 1), desc="twin rounds", disable=not progress):
        if background is None:
            _add(timings, nodef.step(r))
            _add(timings, defense.step(r))
            continue
        W_t = defense.trajectory.globals[-1]
        recovered, t_inv = defense.invert(W_t, background)
        pending.append(background.submit(nodef.step, r))
        W_M, t_mal = defense.malicious(r, W_t)  # here: waiting for the busy helper would idle
        t_train = t_mal + defense.benign_and_aggregate(W_t, W_M, recovered)
        _add(
            timings,
            {
                "training": t_train,
                "inversion": t_inv,
                "evaluation": defense.record_metrics(defense.trajectory.globals[-1]),
            },
        )
    for future in pending:
        _add(timings, future.result())


def run_twin(
    setup: Setup, rounds: int, progress: bool = True, evaluate: bool = True, threads: int = 2
) -> TwinResult:
    """Run ``rounds`` attack rounds without (``nodef``) and with (``defense``) FLIP hardening from
    ``W_0``.

    ``evaluate=False`` skips the per-round ACC/ASR (``Trajectory.accuracy``/``asr`` stay empty).
    ``threads=2`` runs the no-defense twin in a second thread, which also takes candidate classes
    of the defense twin's inversion when free;
    ``threads=1`` runs everything in this one. The results are bitwise the same (the tests check
    it). ``timings`` sums each phase's seconds over both threads.
    """
    if not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an int >= 0, got {rounds!r}")
    if threads not in (1, 2):
        raise ValueError(f"threads must be 1 or 2, got {threads!r}")
    twins = [
        _Twin(setup, defended=False, evaluate=evaluate),
        _Twin(setup, defended=True, evaluate=evaluate),
    ]
    timings = {"training": 0.0, "inversion": 0.0, "evaluation": 0.0}
    for twin in twins:
        timings["evaluation"] += twin.record_metrics(setup.W0)
    if threads == 1:
        _run_rounds(twins, rounds, timings, progress, None)
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodef-twin") as background:
            _run_rounds(twins, rounds, timings, progress, background)
    return TwinResult(
        setup=setup, nodef=twins[0].trajectory, defense=twins[1].trajectory, timings=timings
    )
