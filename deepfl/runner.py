"""The round loop of a deep federated run, with checkpoint/resume and the pre-training cache.

Round r (1-based): the schedule (deepfl.attacks) picks the participants; each client starts from
the global state G, trains locally (benign: the client defense; attacker: its behaviour with its
trigger piece) and reports Delta_i = w_i - G (attackers' Delta scaled by ``attack.scale``); the
server aggregates (deepfl.server) and applies G <- G + eta_g * agg. Rounds 1..pretrain_rounds are
clean pre-training (no attack, plain fedavg, no client defense); their result is cached under a
key of the pre-training-relevant config, so runs that differ only in the attack phase (defense,
attack kind, ...) start their attack from the same converged model.

Run directory: config.json (resolved config), metrics.jsonl (one line per round), checkpoint.pt
(every ``checkpoint_every`` rounds and at the end), checkpoint-rNNNN.pt (kept at the rounds of
``run.keep_checkpoints``, e.g. for the theory probe), confidences.npz (final evaluation),
summary.json and run.lock. ``Experiment(cfg, run_dir).run()`` continues from checkpoint.pt when
present, holding the folder's lock (deepfl.rundir) for the whole run.
deepfl.flower runs the same steps on Flower: clients through ``train_client``, the server through
``aggregate_round``, ``record_evaluation``, ``append_row`` and ``finish``.

Reliability: checkpoints and cache entries are hash-checked and read with ``weights_only=True``
(deepfl.checkpoint); the cache lives under the user cache root (fldata.cache), and a damaged
entry is rebuilt with a warning; a resume checks the config and restores every metrics row
(deepfl.resume); a round whose aggregate (or new global model) is not finite is refused: the
global model is kept and the row says ``"refused"``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from deepfl import checkpoint
from deepfl.attacks import AttackSchedule, RoundPlan, attacker_trigger
from deepfl.checkpoint import DamagedFileError
from deepfl.client import (
    LocalTrainer,
    NoClientDefense,
    RoundContext,
    build_attacker,
    build_client_defense,
    trigger_on_device,
)
from deepfl.config import ConfigError, ExperimentConfig, from_dict
from deepfl.defenses import REGISTRY
from deepfl.defenses.base import AggregationContext, Aggregator, NonFiniteUpdatesError
from deepfl.evaluate import DivergedModelError, Evaluation, evaluate
from deepfl.federation import Federation, build_federation
from deepfl.flat import FlatState
from deepfl.io import (
    append_jsonl,
    read_jsonl,
    save_npz_atomic,
    write_json_atomic,
    write_jsonl_atomic,
)
from deepfl.machine import cpu_fingerprint, device_name
from deepfl.models import build_model
from deepfl.resume import check_same_config, decode_rows, encode_rows, reconcile_metrics
from deepfl.rundir import hold_run_dir, remove_leftover_temps
from deepfl.seeding import (
    CLIENT_TRAINING,
    MODEL_INIT,
    SERVER_TRAINING,
    derive_seed,
    torch_generator,
)
from deepfl.server import aggregate, build_aggregator, per_client_diagnostics, server_learning_rate
from deepfl.vectorised import NotVectorisable, VectorisedTrainer, round_groups, train_groups
from fldata.cache import cache_root
from fldata.evaluation import EvaluationResult
from fldata.metrics import auc

LOGGER = logging.getLogger("deepfl")
CACHE_VERSION = 3  # bump when the engine changes what a pre-training produces
CONFIG_NAME, METRICS_NAME, SUMMARY_NAME, CONFIDENCES_NAME = (
    "config.json",
    "metrics.jsonl",
    "summary.json",
    "confidences.npz",
)
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cuda' / 'cuda:N' must be available (ConfigError
    otherwise).
    """
    if not DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {name!r} requested but CUDA is not available; use --device cpu or auto"
        )
    return device


def override_threads(threads: int | None) -> None:
    """``deepfl.run --threads``: torch threads of this process over the config's ``run.threads``.
    Threads say how a run executes, not what it computes (like the device), so a resumed run
    takes the command's value, not the one stored in its folder; the stored config is unchanged."""
    if threads:
        torch.set_num_threads(threads)


def configure_torch(cfg: ExperimentConfig, device: torch.device) -> None:
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    if cfg.run.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def pretrain_cache_dir(cfg: ExperimentConfig) -> Path:
    """The pre-training cache folder: ``run.cache_dir`` if set, else ``<cache
    root>/deepfl/pretrained``.
    """
    return (
        Path(cfg.run.cache_dir).expanduser()
        if cfg.run.cache_dir
        else cache_root() / "deepfl" / "pretrained"
    )


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config stored in a run directory."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: --resume needs a run directory created by deepfl.run"
        )
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedFileError(f"{path} cannot be read as JSON: {error}") from None
    return from_dict(raw)


def read_as_today(stored: dict[str, Any]) -> dict[str, Any] | None:
    """A config stored by an older fliplab as this version reads it (renamed keys mapped, fields
    added since at their defaults), or None if it can no longer be read."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return from_dict(stored).to_dict()
        except (ConfigError, TypeError, ValueError):
            return None


def check_resumable(run_dir: Path, cfg: ExperimentConfig) -> None:
    """Before any data is read: the run's checkpoint loads safely and was written with this config.

    Raises DamagedFileError or deepfl.resume.ConfigMismatchError; nothing to check without a
    checkpoint.
    """
    path = run_dir / checkpoint.CHECKPOINT_NAME
    if path.exists():
        state = checkpoint.load(path, torch.device("cpu"), require_hash=False)
        check_same_config(state, cfg.to_dict(), cfg.digest(), str(run_dir), read_as_today)


def max_asr(rows: list[dict[str, Any]], tau: float) -> float | None:
    """The largest ASR(tau) over the evaluated metrics ``rows`` (None if none was evaluated)."""
    return max(
        (EvaluationResult.from_dict(row).asr_at(tau) for row in rows if row["asr"]), default=None
    )


class Experiment:
    """One federated run bound to a run directory."""

    def __init__(
        self, cfg: ExperimentConfig, run_dir: str | Path, device: torch.device | None = None
    ) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = device or resolve_device(cfg.device)
        configure_torch(cfg, self.device)
        attack_defense = REGISTRY[cfg.defense.server]
        self.needs_server_update = bool(attack_defense.needs_server_update)
        self.federation: Federation = build_federation(
            cfg, self.device, with_root_set=self.needs_server_update
        )
        fed = self.federation

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, MODEL_INIT))
            self.model = build_model(
                cfg.model.name, fed.image_shape, fed.num_classes, cfg.model.resnet_width
            )
        self.model.to(self.device)
        self.flat = FlatState(self.model)
        self.global_state = self.flat.get()

        self.schedule = AttackSchedule(cfg)
        self.benign_trainer = LocalTrainer(cfg.benign)
        self.attack_trainer = LocalTrainer(cfg.attack.train_config())
        self.test_trigger = fed.eval_sets.trigger
        self.client_defense = build_client_defense(
            cfg.defense.client,
            cfg.defense.client_params,
            self.test_trigger if cfg.attack.kind != "none" else None,
            dataset=cfg.data.dataset,
        )
        self.attacker = build_attacker(
            cfg.attack.behaviour, cfg.attack.behaviour_params, self.client_defense
        )
        self.triggers = [
            trigger_on_device(attacker_trigger(cfg, fed.image_shape, k), self.device)
            for k in range(len(self.schedule.attacker_ids))
        ]
        num_attackers = (
            cfg.defense.assumed_attackers
            if cfg.defense.assumed_attackers >= 0
            else cfg.attackers_per_round
        )
        self.aggregator = build_aggregator(
            cfg, cfg.defense.server, cfg.defense.params, num_attackers
        )
        self.pretrain_aggregator = build_aggregator(cfg, "fedavg", {}, 0)
        self.output_layer = self.flat.output_layer_slice()
        self.sample_counts = torch.tensor(
            [len(c) for c in fed.clients], dtype=torch.float32, device=self.device
        )
        self.client_states: dict[int, dict] = {}
        self.attacker_states: dict[int, dict] = {}
        self.pretrain_cache_hit = False
        self.metrics_rows: list[
            dict[str, Any]
        ] = []  # rows of rounds 1..current, as in metrics.jsonl
        self.vectorised = self._vectorised_trainer() if cfg.run.vectorise else None

    def _vectorised_trainer(self) -> VectorisedTrainer | None:
        """The batched trainer of ``run.vectorise``, or None (logged) when the model cannot be
        vectorised.
        """
        try:
            trainer = VectorisedTrainer(self.model)
            trainer.probe(self.federation.image_shape, self.federation.num_classes, self.device)
            return trainer
        except NotVectorisable as error:
            LOGGER.warning("run.vectorise: %s; training clients sequentially", error)
            return None

    # ----------------------------------------------------------------------------- pre-training
    # cache
    def pretrain_key(self) -> str:
        """Digest of everything that determines the clean pre-trained model and its metric lines."""
        cfg = self.cfg
        server = cfg.server
        relevant = {
            "version": CACHE_VERSION,
            "seed": cfg.seed,
            "device": self.device.type,
            "data": cfg.to_dict()["data"],
            "model": cfg.to_dict()["model"],
            "benign": cfg.to_dict()["benign"],
            "server": {
                "clients_per_round": server.clients_per_round,
                "rule": server.rule,
                "pretrain_lr": server.pretrain_lr,
            },
            "root_set_size": server.root_set_size,
            "pretrain_rounds": cfg.run.pretrain_rounds,
            "eval_every": cfg.run.eval_every,
            "taus": cfg.run.taus,
            "target": cfg.attack.target,
            "trigger_scale": cfg.attack.trigger_scale,
        }
        if (
            self.vectorised is not None
        ):  # batched kernels round differently from sequential training
            relevant["vectorise"] = True
        return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:20]

    def _cache_path(self) -> Path:
        return pretrain_cache_dir(self.cfg) / f"pretrained-{self.pretrain_key()}.pt"

    def _save_pretrain_cache(self) -> None:
        """Store the pre-trained model and its metric rows; a cache that cannot be written only
        costs time.
        """
        rows = [row for row in self.metrics_rows if row["phase"] == "pretrain"]
        try:
            checkpoint.save_atomic(
                self._cache_path(),
                {
                    "global_state": self.global_state.cpu(),
                    "metrics": rows,
                    "key": self.pretrain_key(),
                },
            )
        except OSError as error:
            LOGGER.warning(
                "could not write the pre-training cache %s (%s)", self._cache_path(), error
            )

    def _read_pretrain_cache(self, path: Path) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """The cached global state and metric rows, checked against this run (DamagedFileError if
        unusable).
        """
        entry = checkpoint.load(path, self.device)
        state, rows = entry.get("global_state"), entry.get("metrics")
        if entry.get("key") != self.pretrain_key():
            raise DamagedFileError(
                f"{path} belongs to key {entry.get('key')!r}, not {self.pretrain_key()!r}"
            )
        if (
            not isinstance(state, torch.Tensor)
            or state.shape != self.global_state.shape
            or not bool(torch.isfinite(state).all())
        ):
            raise DamagedFileError(
                f"{path} does not hold a finite global state of {self.global_state.numel()} values"
            )
        if not isinstance(rows, list) or [row.get("round") for row in rows] != list(
            range(1, self.cfg.run.pretrain_rounds + 1)
        ):
            raise DamagedFileError(
                f"{path} does not hold the metric rows of rounds 1..{self.cfg.run.pretrain_rounds}"
            )
        return state.to(device=self.device, dtype=self.global_state.dtype), rows

    def _load_pretrain_cache(self) -> bool:
        """Start from the cached pre-training when a sound entry exists; a damaged one is removed
        and rebuilt.
        """
        path = self._cache_path()
        if not path.exists():
            return False
        try:
            self.global_state, rows = self._read_pretrain_cache(path)
        except DamagedFileError as error:
            LOGGER.warning(
                "ignoring the damaged pre-training cache entry (%s); rebuilding it", error
            )
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        self.metrics_rows = rows
        write_jsonl_atomic(self.run_dir / METRICS_NAME, rows)
        return True

    # ----------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, round_index: int, name: str = checkpoint.CHECKPOINT_NAME) -> None:
        checkpoint.save_atomic(
            self.run_dir / name,
            {
                "round": round_index,
                "global_state": self.global_state,
                "client_states": self.client_states,
                "attacker_states": self.attacker_states,
                "defense_state": self.aggregator.state_dict(),
                "rng": checkpoint.rng_state(self.device),
                "seed": self.cfg.seed,
                "config_digest": self.cfg.digest(),
                "config_json": json.dumps(self.cfg.to_dict(), sort_keys=True),
                "metrics_jsonl": encode_rows(
                    [row for row in self.metrics_rows if row["round"] <= round_index]
                ),
            },
        )

    def _resume(self) -> int:
        """Load checkpoint.pt if present; return the last completed round (0 if starting fresh).

        Refuses a config that differs from the checkpoint's and restores metrics rows 1..R from the
        checkpoint's copy when ``metrics.jsonl`` lost or changed any (deepfl.resume).
        """
        path = self.run_dir / checkpoint.CHECKPOINT_NAME
        metrics_path = self.run_dir / METRICS_NAME
        if not path.exists():
            self.metrics_rows = []
            write_jsonl_atomic(metrics_path, [])
            return 0
        state = checkpoint.load(path, self.device, require_hash=False)
        check_same_config(
            state,
            self.cfg.to_dict(),
            self.cfg.digest(),
            str(self.run_dir),
            read_as_today,
        )
        done = int(state["round"])
        self.metrics_rows = reconcile_metrics(
            read_jsonl(metrics_path),
            decode_rows(state.get("metrics_jsonl")),
            done,
            str(metrics_path),
        )
        self.global_state = state["global_state"].to(self.device)
        self.client_states = state["client_states"]
        self.attacker_states = state["attacker_states"]
        self.aggregator.load_state_dict(state["defense_state"])
        checkpoint.restore_rng_state(state["rng"], self.device)
        write_jsonl_atomic(metrics_path, self.metrics_rows)
        return done

    # ----------------------------------------------------------------------------- one round
    def new_updates(self, plan: RoundPlan) -> torch.Tensor:
        """An empty (clients of ``plan``, d) update matrix on the run's device."""
        return torch.empty(len(plan.clients), self.flat.layout.size, device=self.device)

    def _train_clients(
        self, plan: RoundPlan, trained: tuple[torch.Tensor, set[int]] | None = None
    ) -> torch.Tensor:
        """Every client's update of ``plan`` (rows in ``plan.clients`` order). ``trained``: an
        update matrix whose rows in the set are already trained (by a batched population of seeds,
        deepfl.population); otherwise the vectorisable clients train here as one batched model."""
        cfg, fed = self.cfg, self.federation
        if trained is not None:
            updates, done = trained
        else:
            updates, done = self.new_updates(plan), set()
            if self.vectorised is not None:  # the rest (FLIP, adaptive attackers) one by one below
                done = train_groups(
                    self.vectorised, round_groups(self, plan), self.global_state, updates
                )
        contexts = {
            client: RoundContext(
                plan.round,
                client,
                fed.num_classes,
                self.device,
                torch_generator(cfg.seed, plan.round, client, CLIENT_TRAINING),
            )
            for client in plan.clients
        }
        self._prepare_benign(plan, contexts)
        for row, client in enumerate(plan.clients):
            if row in done:
                continue
            self.flat.set(self.global_state)
            ctx = contexts[client]
            data = fed.clients[client]
            scale = 1.0
            if client in plan.attackers:
                index = plan.attackers[client]
                self.attacker.train(
                    self.model,
                    data,
                    self.attacker_states.setdefault(client, {}),
                    self.attack_trainer,
                    ctx,
                    self.triggers[index],
                    cfg.attack.target,
                    cfg.attack.num_poison,
                )
                scale = cfg.attack.scale
            elif plan.phase == "pretrain":
                NoClientDefense().train(self.model, data, {}, self.benign_trainer, ctx)
            else:
                self.client_defense.train(
                    self.model,
                    data,
                    self.client_states.setdefault(client, {}),
                    self.benign_trainer,
                    ctx,
                )
            torch.sub(self.flat.get(), self.global_state, out=updates[row])
            if scale != 1.0:
                updates[row] *= scale
        return updates

    def train_client(self, plan: RoundPlan, client: int) -> torch.Tensor:
        """The update (d,) that ``client`` of ``plan`` reports, computed exactly as in the round
        loop (its persistent state is read from and written to ``client_states`` /
        ``attacker_states``)."""
        attackers = {client: plan.attackers[client]} if client in plan.attackers else {}
        return self._train_clients(RoundPlan(plan.round, plan.phase, [client], attackers))[0]

    def _prepare_benign(self, plan: RoundPlan, contexts: dict[int, RoundContext]) -> None:
        """Optional client-defense hook ``prepare_round(model, datas, states, contexts, trainer)``:
        all benign clients of an attack-phase round at once, on the global model, before any of them
        trains (FLIP batches their trigger inversions); their ``train`` calls follow as usual."""
        prepare = getattr(self.client_defense, "prepare_round", None)
        benign = [client for client in plan.clients if client not in plan.attackers]
        if prepare is None or plan.phase == "pretrain" or not benign:
            return
        self.flat.set(self.global_state)
        prepare(
            self.model,
            [self.federation.clients[c] for c in benign],
            [self.client_states.setdefault(c, {}) for c in benign],
            [contexts[c] for c in benign],
            self.benign_trainer,
        )

    def _server_update(self, round_index: int) -> torch.Tensor:
        """FLTrust's g0: the global model trained on the root set with the benign settings."""
        assert self.federation.root is not None
        self.flat.set(self.global_state)
        self.benign_trainer.train(
            self.model,
            self.federation.root,
            generator=torch_generator(self.cfg.seed, round_index, SERVER_TRAINING),
        )
        return self.flat.get() - self.global_state

    def run_round(
        self,
        round_index: int,
        trained: tuple[torch.Tensor, set[int]] | None = None,
        trained_seconds: float = 0.0,
    ) -> dict[str, Any]:
        """Train, aggregate and apply one round; return its metrics row (without evaluation).
        ``trained`` / ``trained_seconds``: rows already trained elsewhere and this run's share of
        their time (see :meth:`_train_clients`)."""
        plan = self.schedule.plan(round_index)
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        updates = self._train_clients(plan, trained)
        seconds["train"] = time.perf_counter() - start + trained_seconds
        return self.aggregate_round(plan, updates, seconds)

    def aggregate_round(
        self, plan: RoundPlan, updates: torch.Tensor, seconds: dict[str, float]
    ) -> dict[str, Any]:
        """Aggregate ``updates`` (one row per client of ``plan.clients``, in that order) and apply
        the result to the global state; return the round's metrics row (without evaluation)."""
        round_index = plan.round
        attack_phase = plan.phase == "attack"
        server_update = None
        if attack_phase and self.needs_server_update:
            start = time.perf_counter()
            server_update = self._server_update(round_index)
            seconds["server_update"] = time.perf_counter() - start

        start = time.perf_counter()
        context = AggregationContext(
            client_ids=list(plan.clients),
            sample_counts=self.sample_counts[plan.clients],
            global_params=self.global_state,
            server_update=server_update,
            output_layer=self.output_layer,
        )
        aggregator = self.aggregator if attack_phase else self.pretrain_aggregator
        accepted, refused = self._aggregate_and_apply(aggregator, updates, context, plan)
        seconds["aggregate"] = time.perf_counter() - start
        row = {
            "round": round_index,
            "phase": plan.phase,
            "clients": list(plan.clients),
            "attackers": sorted(plan.attackers),
            "accepted": accepted,
            "seconds": seconds,
            "acc": None,
            "asr": None,
            "per_class_acc": None,
        }
        if refused:
            row["refused"] = refused
        elif attack_phase:
            diagnostics = per_client_diagnostics(aggregator.last_info, len(plan.clients))
            if diagnostics:
                row["aggregation"] = diagnostics
        return row

    def _aggregate_and_apply(
        self,
        aggregator: Aggregator,
        updates: torch.Tensor,
        context: AggregationContext,
        plan: RoundPlan,
    ) -> tuple[list[int], str | None]:
        """G <- G + eta_g * agg, unless agg or the new G is not finite: then G is kept and the round
        refused.

        Returns the accepted client ids ([] when refused) and the refusal reason (None when
        applied). A non-finite global model would poison every later round, so it is never
        installed.
        """
        try:
            result, accepted = aggregate(aggregator, updates, context, plan.clients)
        except NonFiniteUpdatesError:
            accepted, reason = [], "every update non-finite"
        else:
            server_lr = server_learning_rate(self.cfg, plan.phase)
            candidate = self.global_state + server_lr * result.to(self.global_state.dtype)
            if bool(torch.isfinite(candidate).all()):
                self.global_state = candidate
                return accepted, None
            accepted, reason = [], "non-finite aggregate"
        LOGGER.warning(
            "round %d refused (%s): the global model of round %d is kept",
            plan.round,
            reason,
            plan.round - 1,
        )
        return accepted, reason

    def evaluate(self) -> Evaluation:
        self.flat.set(self.global_state)
        return evaluate(
            self.model, self.federation.eval_sets, self.cfg.run.taus, self.cfg.run.eval_batch_size
        )

    def is_evaluation_round(self, round_index: int) -> bool:
        return round_index % self.cfg.run.eval_every == 0 or round_index == self.cfg.run.rounds

    def record_evaluation(self, row: dict[str, Any]) -> Evaluation:
        """Evaluate the global model and put ACC/ASR (every tau), per-class ACC and the time into
        ``row``.
        """
        start = time.perf_counter()
        try:
            evaluation = self.evaluate()
        except DivergedModelError as error:
            raise DivergedModelError(
                f"round {row['round']}: {error}; rows of rounds 1..{row['round'] - 1} are in "
                f"{self.run_dir / METRICS_NAME}"
            ) from None
        row["seconds"]["evaluate"] = time.perf_counter() - start
        row.update(evaluation.result.to_dict())  # acc, asr ({str(tau): rate}) and per_class_acc
        return evaluation

    def append_row(self, row: dict[str, Any]) -> None:
        """Append ``row`` to metrics.jsonl and to ``metrics_rows`` (as read back from the file)."""
        append_jsonl(self.run_dir / METRICS_NAME, row)
        self.metrics_rows.append(json.loads(json.dumps(row, sort_keys=True)))

    # ----------------------------------------------------------------------------- whole run
    def run(self, stop_after: int | None = None) -> dict[str, Any] | None:
        """Run (or continue) to ``run.rounds``; return the summary, or None if stopped at
        ``stop_after``.
        """
        with hold_run_dir(self.run_dir):
            remove_leftover_temps(self.run_dir)
            return self._run_locked(stop_after)

    def _run_locked(self, stop_after: int | None) -> dict[str, Any] | None:
        """:meth:`run`'s body, called with the run folder's lock held."""
        done = self.open_run()
        last = self.last_round(stop_after)
        evaluation = None
        bar = tqdm(
            range(done + 1, last + 1),
            initial=done,
            total=self.cfg.run.rounds,
            desc="rounds",
            disable=not self.cfg.run.progress,
            dynamic_ncols=True,
        )
        for round_index in bar:
            evaluated = self.close_round(self.run_round(round_index), last, bar)
            evaluation = evaluated if evaluated is not None else evaluation
        bar.close()
        return self.close_run(last, evaluation)

    def open_run(self) -> int:
        """Resume (or start) the run: store its config, take the pre-training cache when it fits;
        return the last round done."""
        cfg = self.cfg
        done = self._resume()
        write_json_atomic(self.run_dir / CONFIG_NAME, cfg.to_dict())
        if done == 0 and cfg.run.pretrain_rounds and self._load_pretrain_cache():
            self.pretrain_cache_hit = True
            done = cfg.run.pretrain_rounds
            self._save_checkpoint(done)
            if done in cfg.run.keep_checkpoints:
                self._save_checkpoint(done, checkpoint.kept_name(done))
        return done

    def last_round(self, stop_after: int | None) -> int:
        """The round this invocation stops after: ``run.rounds`` or ``stop_after`` if earlier."""
        return self.cfg.run.rounds if stop_after is None else min(stop_after, self.cfg.run.rounds)

    def close_round(
        self, row: dict[str, Any], last: int, bar: tqdm | None = None
    ) -> Evaluation | None:
        """Evaluate (on evaluation rounds), record the row, cache and checkpoint; return the
        evaluation, if any."""
        cfg, round_index, evaluation = self.cfg, row["round"], None
        if self.is_evaluation_round(round_index):
            evaluation = self.record_evaluation(row)
            tau = cfg.run.taus[0]
            acc, asr = evaluation.result.rates_at(tau)
            if bar is not None:
                bar.set_postfix({f"ACC@{tau}": f"{acc:.3f}", f"ASR@{tau}": f"{asr:.3f}"})
        self.append_row(row)
        if round_index == cfg.run.pretrain_rounds and not self.pretrain_cache_hit:
            self._save_pretrain_cache()
        if round_index % cfg.run.checkpoint_every == 0 or round_index == last:
            self._save_checkpoint(round_index)
        if round_index in cfg.run.keep_checkpoints:
            self._save_checkpoint(round_index, checkpoint.kept_name(round_index))
        return evaluation

    def close_run(self, last: int, evaluation: Evaluation | None) -> dict[str, Any] | None:
        """The summary when ``last`` is the run's last round (None when stopped earlier)."""
        if last < self.cfg.run.rounds:
            return None
        return self.finish(evaluation if evaluation is not None else self.evaluate())

    def finish(self, evaluation: Evaluation) -> dict[str, Any]:
        """Write confidences.npz and summary.json from the final ``evaluation`` and
        ``metrics_rows``.
        """
        arrays = evaluation.confidences()
        save_npz_atomic(
            self.run_dir / CONFIDENCES_NAME,
            {**arrays, "clean_labels": self.federation.eval_sets.clean_labels},
        )
        rows = self.metrics_rows
        totals: dict[str, float] = {}
        for row in rows:
            for part, value in row["seconds"].items():
                totals[part] = totals.get(part, 0.0) + value
        summary = {
            "rounds": self.cfg.run.rounds,
            "final": {
                **evaluation.result.to_dict(),
                "rejection_auc": auc(arrays["clean_confidence"], arrays["backdoor_confidence"]),
            },
            "max_asr": {"tau": self.cfg.run.taus[0], "value": max_asr(rows, self.cfg.run.taus[0])},
            "attack": self.cfg.attack.kind,
            "defense": {"server": self.cfg.defense.server, "client": self.cfg.defense.client},
            "attacker_ids": self.schedule.attacker_ids,
            "pretrain_cache": {"key": self.pretrain_key(), "hit": self.pretrain_cache_hit},
            "device": str(self.device),
            "device_name": device_name(self.device),
            "cpu": cpu_fingerprint(),
            "seconds_total": totals,
            "config_digest": self.cfg.digest(),
        }
        write_json_atomic(self.run_dir / SUMMARY_NAME, summary)
        artifacts = getattr(
            self.client_defense, "run_artifacts", None
        )  # e.g. FLIP's flip_triggers.npz
        for name, arrays in (artifacts(self.client_states) if artifacts else {}).items():
            save_npz_atomic(self.run_dir / name, arrays)
        return summary
