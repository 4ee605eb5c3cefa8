"""Shared machinery of the server-side defenses (robust aggregation rules).

Every defense is a small callable class registered under its paper name with
:func:`register`.  The engine builds it from a config dict,
``REGISTRY[name](num_attackers=f, **params)``, and calls it on the stacked,
flattened client updates ``(n, d)``; the result is one update-space vector
``(d,)`` that the engine applies as ``global += server_lr * result``
(deepfl/CONTRACT.md, "Server defenses").

The base class does what all rules share:

* parameter validation at construction: every rule declares its constructor
  params' constraints once (``parameter_constraints``, :mod:`fldata.params`),
  and its ``__init__`` receives only values that satisfy them; an unknown
  keyword or a bad value raises ``ConfigError`` (a ValueError and a
  TypeError) naming the param and what is allowed. The declaration also lets
  a config be checked without building the rule (deepfl.components), together
  with :meth:`Aggregator.check_setting`, the rule's conditions on ``n`` and ``f``;
* input validation at call time (2-D float tensor, context fields of length
  ``n``);
* exclusion of rows containing NaN/inf, with a logged warning and
  ``last_info["excluded_nonfinite"]``; all rows bad raises ``ValueError``.
  An excluded row is treated as a detected Byzantine update, so the number of
  attackers assumed among the remaining rows drops by the number excluded
  (never below 0); otherwise a single NaN sent by an attacker could make a
  rule's ``n``-versus-``f`` precondition fail and stop the run;
* bookkeeping of ``last_accepted`` (row indices of the *original* input) and
  ``last_info``;
* float64 arithmetic: the rows (and the context's vectors) reach
  :meth:`Aggregator._aggregate` as float64, and the result goes back to the
  input dtype. A finite float32 row can be as large as 3.4e38, so its squared
  norm, its distances and the sum of a few such rows overflow float32 (Krum then
  compared NaN scores and kept a 1e20 row; RFA returned NaN). In float64 every
  such quantity stays finite; an aggregate too large for the input dtype comes
  back as inf, and the engine refuses it. Rules built only on order statistics
  (median, trimmed mean) set ``float64_inputs = False``, sort in the input dtype
  (sorting cannot overflow; float64 sorts are slower) and accumulate in float64.

Subclasses implement :meth:`Aggregator._aggregate` on clean rows only.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from deepfl.registry import Registry
from fldata.params import NON_NEGATIVE_INT, Constraints, Interval, validated_init

LOGGER = logging.getLogger("deepfl.defenses")

# The server defenses by name (deepfl.registry: ``REGISTRY[name]`` is the one lookup).
REGISTRY: Registry[type[Aggregator]] = Registry("server defense")

# A generator seed: the range torch.Generator.manual_seed accepts (SeededAggregator's ``seed``).
SEED: tuple[Interval, ...] = (Interval(int, -(2**63), 2**64 - 1, closed="both"),)


class NonFiniteUpdatesError(ValueError):
    """Every update row of a call contains NaN or inf: there is nothing to aggregate."""


AggregatorT = TypeVar("AggregatorT", bound=type["Aggregator"])


def register(name: str) -> Callable[[AggregatorT], AggregatorT]:
    """Class decorator: add an :class:`Aggregator` subclass to :data:`REGISTRY` as ``name``."""

    def decorate(cls: AggregatorT) -> AggregatorT:
        REGISTRY.add(name, cls)
        cls.name = name
        return cls

    return decorate


@dataclass(frozen=True)
class AggregationContext:
    """Optional per-round inputs some defenses need (all fields may be ``None``).

    Attributes:
        client_ids: id of the client behind each row (FoolsGold's history key).
        sample_counts: ``(n,)`` local dataset sizes (weighted FedAvg, RFA's ``a_i``).
        global_params: ``(d,)`` flattened current global model (FLAME clusters models
            ``global_params + update_i``).
        server_update: ``(d,)`` the server's own update on its root set (FLTrust's ``g_0``).
        output_layer: the coordinates of the last layer inside a flattened update
            (FoolsGold's default similarity features).
    """

    client_ids: list[int] | None = None
    sample_counts: Tensor | None = None
    global_params: Tensor | None = None
    server_update: Tensor | None = None
    output_layer: slice | None = None

    def validate(self, num_rows: int, dim: int) -> None:
        """Raise ``ValueError`` if a per-row field does not have ``num_rows`` entries or a vector is
        not ``(dim,)``.
        """
        if self.client_ids is not None and len(self.client_ids) != num_rows:
            raise ValueError(
                f"context.client_ids has {len(self.client_ids)} entries; expected one per update "
                f"row ({num_rows})"
            )
        if self.client_ids is not None and len(set(self.client_ids)) != num_rows:
            raise ValueError("context.client_ids must be distinct (one row per client per round)")
        if self.sample_counts is not None:
            if self.sample_counts.shape != (num_rows,):
                raise ValueError(
                    f"context.sample_counts has shape {tuple(self.sample_counts.shape)}; expected "
                    f"({num_rows},)"
                )
            if bool((self.sample_counts < 0).any()) or not bool(
                torch.isfinite(self.sample_counts).all()
            ):
                raise ValueError("context.sample_counts must be finite and non-negative")
        for field_name in ("global_params", "server_update"):
            vector = getattr(self, field_name)
            if vector is None:
                continue
            if vector.shape != (dim,):
                raise ValueError(
                    f"context.{field_name} has shape {tuple(vector.shape)}; expected ({dim},)"
                )
            if not bool(torch.isfinite(vector).all()):
                raise ValueError(f"context.{field_name} contains NaN or inf")

    def in_float64(self) -> AggregationContext:
        """The context with its tensors in float64 (the dtype :meth:`Aggregator._aggregate` works
        in).
        """

        def double(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.double()

        return replace(
            self,
            sample_counts=double(self.sample_counts),
            global_params=double(self.global_params),
            server_update=double(self.server_update),
        )

    def subset(self, rows: list[int]) -> AggregationContext:
        """The context restricted to the given rows (per-row fields only)."""
        client_ids = None if self.client_ids is None else [self.client_ids[i] for i in rows]
        sample_counts = None if self.sample_counts is None else self.sample_counts[rows]
        return replace(self, client_ids=client_ids, sample_counts=sample_counts)


@dataclass
class AggregationResult:
    """What a rule's ``_aggregate`` returns: the estimate, the kept rows (or ``None``) and
    diagnostics.
    """

    update: Tensor
    accepted: list[int] | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Aggregator:
    """Base class of all server-side aggregation rules.

    Subclasses set their parameters in ``__init__`` (keyword arguments with the
    original paper's defaults, first one ``num_attackers``), declare each one's
    constraints in ``parameter_constraints`` and implement :meth:`_aggregate`
    (and :meth:`check_setting` if the rule needs enough rows for its ``f``).
    Every ``__init__`` is wrapped by :func:`fldata.params.validated_init`.

    Attributes:
        name: registry name (set by :func:`register`).
        needs_server_update: True if the engine must compute ``context.server_update``.
        last_accepted: row indices (of the last call's input) the rule kept, or ``None``
            when the rule does not select rows.
        last_info: diagnostics of the last call (scores, weights, ``excluded_nonfinite``...).
    """

    name: ClassVar[str] = "aggregator"
    needs_server_update: ClassVar[bool] = False
    parameter_constraints: ClassVar[Constraints] = {"num_attackers": NON_NEGATIVE_INT}
    float64_inputs: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = validated_init(cls.__dict__["__init__"])  # type: ignore[method-assign]

    @validated_init
    def __init__(self, num_attackers: int = 0) -> None:
        self.num_attackers = num_attackers
        self.last_accepted: list[int] | None = None
        self.last_info: dict[str, Any] = {}

    def __repr__(self) -> str:
        params = ", ".join(
            f"{p}={getattr(self, p)!r}"
            for p in inspect.signature(type(self).__init__).parameters
            if p != "self" and hasattr(self, p)
        )
        return f"{type(self).__name__}({params})"

    def __call__(self, updates: Tensor, context: AggregationContext | None = None) -> Tensor:
        """Aggregate ``updates`` ``(n, d)`` into one update ``(d,)`` of the same dtype and
        device.
        """
        if not isinstance(updates, Tensor) or updates.ndim != 2 or not updates.is_floating_point():
            raise ValueError(
                f"{self.name}: updates must be a floating-point tensor of shape (n, d); got "
                f"{type(updates).__name__} {getattr(updates, 'shape', '')} "
                f"{getattr(updates, 'dtype', '')}"
            )
        num_rows, dim = updates.shape
        input_dtype = updates.dtype
        if num_rows == 0 or dim == 0:
            raise ValueError(
                f"{self.name}: need at least one update row and one coordinate; got shape "
                f"{tuple(updates.shape)}"
            )
        context = context if context is not None else AggregationContext()
        context.validate(num_rows, dim)

        finite_rows = torch.isfinite(updates).all(dim=1)
        excluded = torch.nonzero(~finite_rows).flatten().tolist()
        if len(excluded) == num_rows:
            raise NonFiniteUpdatesError(
                f"{self.name}: all {num_rows} updates contain NaN or inf; nothing to aggregate"
            )
        kept_rows = torch.nonzero(finite_rows).flatten().tolist()
        if excluded:
            LOGGER.warning(
                "%s: excluding %d update row(s) with NaN/inf values: rows %s%s",
                self.name,
                len(excluded),
                excluded,
                ""
                if context.client_ids is None
                else f" (client ids {[context.client_ids[i] for i in excluded]})",
            )
            updates = updates[kept_rows]
            context = context.subset(kept_rows)
        num_attackers = max(0, self.num_attackers - len(excluded))

        if self.float64_inputs:
            updates, context = updates.double(), context.in_float64()
        result = self._aggregate(updates, context, num_attackers)

        if result.update.shape != (dim,):
            raise RuntimeError(
                f"{self.name}: internal error, aggregate has shape {tuple(result.update.shape)}"
            )
        self.last_accepted = (
            None if result.accepted is None else [kept_rows[i] for i in result.accepted]
        )
        self.last_info = {
            **result.info,
            "excluded_nonfinite": excluded,
            "num_attackers_used": num_attackers,
        }
        return result.update.to(input_dtype)

    def _aggregate(
        self, updates: Tensor, context: AggregationContext, num_attackers: int
    ) -> AggregationResult:
        """Aggregate finite rows; ``num_attackers`` is the assumed count among them."""
        raise NotImplementedError

    @classmethod
    def default_params(cls) -> dict[str, Any]:
        """The constructor's defaults, ``{param: default}`` (without ``num_attackers``)."""
        parameters = inspect.signature(cls.__init__).parameters
        return {
            name: p.default
            for name, p in parameters.items()
            if name not in ("self", "num_attackers")
        }

    @classmethod
    def check_setting(cls, num_rows: int, num_attackers: int, params: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` if the rule with ``params`` (all of them, defaults filled in)
        cannot aggregate ``num_rows`` updates assuming ``num_attackers`` among them. Lets a
        config be refused before any data is read; rules with no such condition accept all."""

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a checkpoint (empty for stateless rules)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(
                f"{self.name} is stateless; got non-empty state with keys {sorted(state)}"
            )


class SeededAggregator(Aggregator):
    """An aggregator that draws random numbers (DnC's coordinate subsample, FLAME's noise) from its
    own ``torch.Generator`` seeded by ``seed``; the generator state is its checkpointed state, so a
    resumed run draws the same numbers."""

    def _seed_generator(self, seed: int) -> None:
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)

    def state_dict(self) -> dict[str, Any]:
        """``{"generator": state}``."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the generator."""
        if set(state) != {"generator"}:
            raise ValueError(
                f"{self.name}: state must have exactly the key 'generator'; got {sorted(state)}"
            )
        self.generator.set_state(state["generator"])


# ----------------------------------------------------------------------------- shared math


def pairwise_squared_distances(updates: Tensor) -> Tensor:
    r"""Squared Euclidean distances :math:`D_{ij} = \lVert x_i - x_j \rVert_2^2` of the rows, ``(n,
    n)``.

    One Gram-matrix product, :math:`D_{ij} = G_{ii} + G_{jj} - 2 G_{ij}` with
    :math:`G = \tilde X \tilde X^\top`, on rows centred on the row of smallest norm
    first (distances are unchanged and cancellation error is smaller: the Gram entries
    are about as large as the distances; centring on the mean instead lets one huge
    row shift every row far from the origin and bury the small distances in rounding
    error); clamped at 0 with an exact zero diagonal.
    """
    reference = updates[int(torch.argmin(updates.norm(dim=1)))]
    centred = updates - reference
    gram = centred @ centred.T
    sq_norms = gram.diagonal()
    distances = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * gram).clamp_min_(0.0)
    distances = 0.5 * (
        distances + distances.T
    )  # exact symmetry, whatever the matmul's summation order
    distances.fill_diagonal_(0.0)
    return distances


def cosine_similarity_matrix(rows: Tensor) -> Tensor:
    r"""Cosine similarities :math:`C_{ij} = \langle x_i, x_j\rangle / (\lVert x_i\rVert \lVert
    x_j\rVert)`, ``(n, n)``.

    A zero row has similarity 0 with every row (and itself).
    """
    norms = rows.norm(dim=1)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    unit = rows / safe[:, None]
    return (unit @ unit.T).clamp_(-1.0, 1.0)


def coordinate_median(rows: Tensor) -> Tensor:
    r"""Coordinate-wise median of the rows, ``(d,)``; the mean of the two middle values when ``n``
    is even.

    (``torch.median`` returns the lower middle value for even ``n``; Yin et al.
    2018 use the usual median.)  Uses a sort, not ``torch.quantile``, which
    refuses inputs above 16M entries.

    The two middle values are averaged in float64 (their float32 sum can overflow); the
    result has the input dtype.
    """
    num_rows = rows.shape[0]
    ordered = rows.sort(dim=0).values
    middle = num_rows // 2
    if num_rows % 2 == 1:
        return ordered[middle]
    return (0.5 * (ordered[middle - 1].double() + ordered[middle].double())).to(rows.dtype)


def count_from_fraction(fraction: float, total: int) -> int:
    """``floor(fraction * total)`` robust to float error (0.1 * 30 counts 3, not 2)."""
    return int(math.floor(fraction * total + 1e-9))
