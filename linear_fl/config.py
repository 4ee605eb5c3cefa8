"""Configuration of the linear FedAvg engine (THEORY.md section 10; every constant is a field).

One frozen dataclass, :class:`LinearFLConfig`, whose fields' constraints are
declared once (``parameter_constraints``, checked by :mod:`fldata.params`).
``from_dict`` rejects unknown keys and lists the allowed ones; ``__post_init__``
validates every value with a one-line ``ConfigError`` (a ValueError) that says
what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fldata.cache import cache_root
from fldata.datasets import DATASET_NAMES
from fldata.params import (
    BOOLEAN,
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    UNIT_FLOAT,
    Constraints,
    Interval,
    Options,
    Text,
    TupleOf,
    validate_fields,
    validate_params,
)
from fldata.triggers import NUM_DBA_PIECES

ENGINE_VERSION = "linear_fl-1"

WEIGHT_CONVENTIONS = ("equal", "samples")
ATTACKS = ("continuous", "single-shot")
LAMBDA_CONVENTIONS = {"paper": (1.0, 1.0), "union-mean": (0.5, 0.5)}
# Local epochs of the single-shot attacker when malicious_local_epochs is None (paper: E = 10 poison
# epochs).
SINGLE_SHOT_MALICIOUS_EPOCHS = 10
_DBA_PIECE = Interval(int, 0, NUM_DBA_PIECES - 1, closed="both")


@dataclass(frozen=True)
class LinearFLConfig:
    """All parameters of one twin experiment.

    Clients (THEORY.md section 2): benign ``B`` gets ``benign_fraction`` of the
    training set, malicious ``M`` the rest. Aggregation weights ``p_k``:
    ``"equal"`` (1/K each) or ``"samples"`` (n_k / n). Local training: ``lr``,
    ``local_epochs``, ``batch_size`` (``None`` = full batch; ``E=1`` full batch
    makes the closed form of ``Delta W`` exact). The malicious client has its
    own ``malicious_lr`` (``None`` = ``lr``), ``malicious_local_epochs`` and
    ``malicious_batch_size``. ``malicious_local_epochs=None`` resolves by attack
    (:attr:`effective_malicious_local_epochs`): 10 for single-shot (the paper's
    E = 10 poison epochs, ALGORITHMS.md), 1 for continuous.

    Attack (section 10): ``"continuous"`` poisons every round; ``"single-shot"``
    poisons only in ``attack_round`` (1-based round after pre-training;
    ``python -m theory.verify`` sets it to ``--round`` unless given) and
    multiplies its update ``W_M - W_t`` by ``scale`` (model replacement).
    ``scale=None`` (default) = ``1 / p_M`` (:meth:`replacement_factor`): then
    ``W_{t+1} = W_M^loc + p_B (W_B - W_t)``, the global model is replaced by the
    attacker's local model plus the benign update (Bagdasaryan et al.'s
    ``n / eta``; the released code scales by 100 = n / eta_g for 10 clients).
    With these defaults full MNIST gives no-defense ACC/ASR about 88/84 right
    after the attack round (paper Table 3: 88.43/64.48); ``scale=1`` or one
    epoch leaves ASR at a few percent (the single round is too weak).
    ``poison_fraction`` of every batch is stamped with the ground-truth DBA
    trigger (``trigger_pieces``, ``trigger_scale``) and relabelled ``target``.

    Defense (benign client): ``convention`` picks ``(lambda_c, lambda_a)``:
    ``"paper"`` = (1, 1), ``"union-mean"`` = (1/2, 1/2). Trigger inversion
    minimises ``mean CE + inversion_lambda_l1 * |m|_1`` with L-BFGS-B
    (``inversion_maxiter`` iterations per candidate class) on
    ``inversion_subsample`` local samples, over ``inversion_targets`` (``None``
    = every class; the defender does not know the attack target) or, if
    ``inversion_source`` is set, label-specific source -> target.

    ``max_train_samples`` / ``max_test_samples`` keep only the first N images
    (``None`` = all; small slices for tests).

    Pre-training: clean FedAvg (both clients benign) until the relative
    change of the global training loss is below ``pretrain_tol`` or
    ``pretrain_max_rounds``; cached under ``cache_dir`` (default
    ``$FLIPLAB_CACHE/linear_fl`` or ``~/.cache/fliplab/linear_fl``).
    """

    dataset: str = "mnist"
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    seed: int = 0
    target: int = 0
    benign_fraction: float = 0.5
    weights: str = "equal"
    lr: float = 0.3
    local_epochs: int = 1
    batch_size: int | None = None
    malicious_lr: float | None = None
    malicious_local_epochs: int | None = None
    malicious_batch_size: int | None = None
    attack: str = "continuous"
    attack_round: int = 1
    scale: float | None = None
    poison_fraction: float = 20 / 64
    trigger_pieces: int | tuple[int, ...] | None = None
    trigger_scale: int = 1
    convention: str = "paper"
    inversion_lambda_l1: float = 0.03
    inversion_maxiter: int = 10
    inversion_subsample: int = 1000
    inversion_targets: tuple[int, ...] | None = None
    inversion_source: int | None = None
    inversion_warm_start: bool = True
    inversion_success_threshold: float = 0.5
    pretrain_lr: float = 1.0
    pretrain_local_epochs: int = 1
    pretrain_batch_size: int | None = 1000
    pretrain_tol: float = 1e-3
    pretrain_max_rounds: int = 50
    cache_dir: str | None = None
    use_cache: bool = True

    parameter_constraints: ClassVar[Constraints] = {
        "dataset": [Options(*DATASET_NAMES)],
        "max_train_samples": (*POSITIVE_INT, None),
        "max_test_samples": (*POSITIVE_INT, None),
        "seed": NON_NEGATIVE_INT,
        "target": NON_NEGATIVE_INT,
        "benign_fraction": [Interval(float, 0, 1, closed="neither")],
        "weights": [Options(*WEIGHT_CONVENTIONS)],
        "lr": POSITIVE_FLOAT,
        "local_epochs": POSITIVE_INT,
        "batch_size": (*POSITIVE_INT, None),
        "malicious_lr": (*POSITIVE_FLOAT, None),
        "malicious_local_epochs": (*POSITIVE_INT, None),
        "malicious_batch_size": (*POSITIVE_INT, None),
        "attack": [Options(*ATTACKS)],
        "attack_round": POSITIVE_INT,
        "scale": [Interval(float, None, None), None],
        "poison_fraction": UNIT_FLOAT,
        "trigger_pieces": [_DBA_PIECE, TupleOf(_DBA_PIECE, min_length=1), None],
        "trigger_scale": POSITIVE_INT,
        "convention": [Options(*LAMBDA_CONVENTIONS)],
        "inversion_lambda_l1": NON_NEGATIVE_FLOAT,
        "inversion_maxiter": POSITIVE_INT,
        "inversion_subsample": POSITIVE_INT,
        "inversion_targets": [TupleOf(Interval(int, 0, None, closed="left")), None],
        "inversion_source": (*NON_NEGATIVE_INT, None),
        "inversion_warm_start": BOOLEAN,
        "inversion_success_threshold": UNIT_FLOAT,
        "pretrain_lr": POSITIVE_FLOAT,
        "pretrain_local_epochs": POSITIVE_INT,
        "pretrain_batch_size": (*POSITIVE_INT, None),
        "pretrain_tol": POSITIVE_FLOAT,
        "pretrain_max_rounds": POSITIVE_INT,
        "cache_dir": [Text(), None],
        "use_cache": BOOLEAN,
    }

    def __post_init__(self) -> None:
        validate_fields(self)

    # ----------------------------------------------------------------- helpers
    @classmethod
    def allowed_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LinearFLConfig:
        """Build a config from a mapping; an unknown key or a bad value raises ``ConfigError``
        (a ValueError) naming the key and what is allowed."""
        return cls(**validate_params(cls.parameter_constraints, values, where="LinearFLConfig"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        return {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()
        }

    def replace(self, **changes: Any) -> LinearFLConfig:
        """Copy with some fields changed (validated like ``from_dict``)."""
        return self.from_dict({**dataclasses.asdict(self), **changes})

    @property
    def lambdas(self) -> tuple[float, float]:
        """``(lambda_c, lambda_a)`` of THEORY.md section 2 for ``convention``."""
        return LAMBDA_CONVENTIONS[self.convention]

    @property
    def effective_malicious_lr(self) -> float:
        return self.lr if self.malicious_lr is None else self.malicious_lr

    @property
    def effective_malicious_local_epochs(self) -> int:
        """``malicious_local_epochs``, or if ``None``: 10 for single-shot (paper E = 10), 1 for
        continuous.
        """
        if self.malicious_local_epochs is not None:
            return self.malicious_local_epochs
        return SINGLE_SHOT_MALICIOUS_EPOCHS if self.attack == "single-shot" else 1

    def replacement_factor(self, p_M: float) -> float:
        """Single-shot model-replacement factor: ``scale``, or if ``None`` ``1 / p_M`` (then
        ``W_M^loc`` replaces ``W_t`` in the aggregate)."""
        if not 0.0 < p_M <= 1.0:
            raise ValueError(f"p_M must lie in (0, 1], got {p_M}")
        return 1.0 / p_M if self.scale is None else float(self.scale)

    def resolved_cache_dir(self) -> Path:
        """``cache_dir`` if set, else ``$FLIPLAB_CACHE/linear_fl``, else
        ``~/.cache/fliplab/linear_fl``.
        """
        if self.cache_dir is not None:
            return Path(self.cache_dir).expanduser()
        return cache_root() / "linear_fl"

    def pretrain_fields(self) -> dict[str, Any]:
        """The fields that determine the pre-trained model (the cache key's config part)."""
        keys = (
            "dataset",
            "max_train_samples",
            "seed",
            "benign_fraction",
            "weights",
            "pretrain_lr",
            "pretrain_local_epochs",
            "pretrain_batch_size",
            "pretrain_tol",
            "pretrain_max_rounds",
        )
        return {k: getattr(self, k) for k in keys}
