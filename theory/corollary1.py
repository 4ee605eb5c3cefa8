"""Corollary 1 of FLIP (confidence-threshold rejection) and certified counts. Spec: THEORY.md
section 7.

* Paper (7.1): ``Conf(W,x) = \\max_k s_k(Wx)``; rejected iff ``Conf < \\tau``;
  ``R(W,S) = \\#\\{x: Conf < \\tau\\}``; "rejected by the defense" ``R(W',S) - R(W,S)`` (may be <
  0).
* Authors' code (7.2): correct iff ``\\arg\\max = label \\wedge Conf \\ge \\tau``, giving
  ``N^{acc}`` and ``N^{asr}`` (labels = target); computed by the single implementation
  :func:`fldata.metrics.threshold_counts`.
* Certified counts (7.3): with ``p = s(Wx)``, ``p' = s(W'x)``, ``u = (W'-W)x``,
  ``p'_k = p_k e^{u_k - \\Lambda}``, ``\\Lambda = \\log\\sum_j p_j e^{u_j}``, and
  ``\\min u \\le s^T u \\le \\Lambda \\le \\min(\\max u, s^T u + (\\max u - \\min u)^2/8)``. So
  Theorem 1 gives ``p'_k \\in [p_k e^{u_k-\\max u}, p_k e^{u_k-\\min u}]`` and the Jensen bracket
  (R1 upper, R2 lower, intersected with T1) ``[p_k e^{u_k-\\min(\\max u, s^Tu+(\\max u-\\min
  u)^2/8)}, p_k e^{u_k - s^T u}]``. A backdoor sample is certified neutralised if ``U_T < \\tau`` or
  ``U_T < \\max_{k\\ne T} L_k``; certified rejected if ``\\max_k U_k < \\tau``; a clean sample is
  certified kept if ``L_y \\ge \\tau`` and ``L_y > \\max_{k\\ne y} U_k``. Certified sets are subsets
  of the actual sets.
* Robust versions over the ``\\delta``-ball of the frozen model (7.3): Jensen route
  ``U^{rob}_T = p_T\\exp(-[a_i^Tu_i(0) - \\eta_a\\varepsilon\\|x^b_i\\|_1|a_i^T\\rho|])``, Theorem-1
  route ``p_T\\exp(\\max_k[u_{iT}(0)-u_{ik}(0)+\\eta_a\\varepsilon\\|x^b_i\\|_1 S_{kT}])``;
  certified iff ``< \\tau``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax

from fldata.metrics import threshold_counts
from theory.frozen import FrozenResidualModel
from theory.validation import (
    check_class,
    check_labels,
    check_matrix,
    check_same_shape,
    check_support,
)

BRACKETS: tuple[str, ...] = ("theorem1", "jensen")


@dataclass(frozen=True)
class ProbabilityBracket:
    """Elementwise ``lower <= s(W'x) <= upper`` for every sample and class, both (n, c)."""

    lower: np.ndarray
    upper: np.ndarray


def probability_bracket(
    logits: np.ndarray, logit_change: np.ndarray, kind: str = "theorem1"
) -> ProbabilityBracket:
    """Bracket on ``p' = s(z+u)`` from ``z = Wx`` and ``u = (W'-W)x`` (``kind``: ``"theorem1"`` or
    ``"jensen"``; formulas in the module docstring). Computed in log space."""
    if kind not in BRACKETS:
        raise ValueError(f"unknown bracket {kind!r}; choose one of {BRACKETS}")
    z, u = check_matrix("logits", logits), check_matrix("logit_change", logit_change)
    check_same_shape("logits", z, "logit_change", u)
    log_p = log_softmax(z, axis=1)
    u_min, u_max = u.min(axis=1, keepdims=True), u.max(axis=1, keepdims=True)
    if kind == "theorem1":
        lam_low, lam_high = u_min, u_max
    else:
        mean_u = np.sum(np.exp(log_p) * u, axis=1, keepdims=True)
        lam_low = mean_u
        lam_high = np.minimum(u_max, mean_u + (u_max - u_min) ** 2 / 8.0)
    # p'_k <= 1 always, so capping the log-bounds at 0 keeps them valid and avoids overflow.
    return ProbabilityBracket(
        lower=np.exp(np.minimum(log_p + u - lam_high, 0.0)),
        upper=np.exp(np.minimum(log_p + u - lam_low, 0.0)),
    )


def _best_other(values: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    """Row-wise ``max_{k != exclude_i} values_{ik}``."""
    masked = values.copy()
    masked[np.arange(len(values)), exclude] = -np.inf
    return masked.max(axis=1)


def certified_neutralised(bracket: ProbabilityBracket, target: int, tau: float) -> np.ndarray:
    """Backdoor samples certified not to be an attack success under ``W'``:
    ``U_T < \\tau`` or ``U_T < \\max_{k\\ne T} L_k``."""
    n, c = bracket.upper.shape
    target = check_class("target", target, c)
    upper_t = bracket.upper[:, target]
    best_other_lower = _best_other(bracket.lower, np.full(n, target))
    return (upper_t < tau) | (upper_t < best_other_lower)


def certified_rejected(bracket: ProbabilityBracket, tau: float) -> np.ndarray:
    """Samples certified rejected under ``W'``: ``\\max_k U_k < \\tau``."""
    return bracket.upper.max(axis=1) < tau


def certified_kept(bracket: ProbabilityBracket, labels: np.ndarray, tau: float) -> np.ndarray:
    """Clean samples certified accepted and correct under ``W'``:
    ``L_y \\ge \\tau`` and ``L_y > \\max_{k\\ne y} U_k``."""
    labels = check_labels(labels, bracket.lower.shape[0], bracket.lower.shape[1])
    lower_y = bracket.lower[np.arange(len(labels)), labels]
    return (lower_y >= tau) & (lower_y > _best_other(bracket.upper, labels))


def accepted_as(probs: np.ndarray, labels: np.ndarray, tau: float) -> np.ndarray:
    """Per-sample mask of the code semantics: ``\\arg\\max = label`` and ``Conf \\ge \\tau``
    (the per-sample form of :func:`fldata.metrics.threshold_counts`)."""
    return (probs.argmax(axis=1) == labels) & (probs.max(axis=1) >= tau)


def code_semantics_counts(
    probs_clean: np.ndarray,
    labels_clean: np.ndarray,
    probs_backdoor: np.ndarray,
    target: int,
    tau: float,
) -> dict[str, int]:
    """``N^{acc}``, ``N^{asr}`` and rejected counts of one model (THEORY.md 7.2) via
    :func:`fldata.metrics.threshold_counts`."""
    clean = threshold_counts(probs_clean, labels_clean, tau)
    backdoor = threshold_counts(probs_backdoor, np.full(len(probs_backdoor), target), tau)
    return {
        "n_acc": int(clean.accepted_correct),
        "n_asr": int(backdoor.accepted_correct),
        "rejected_clean": int(clean.rejected),
        "rejected_backdoor": int(backdoor.rejected),
    }


@dataclass(frozen=True)
class CorollaryCounts:
    """Corollary 1 at one ``\\tau`` for the pair ``(W, W')`` (no defense, defense)."""

    tau: float
    no_defense: dict[str, int]
    defense: dict[str, int]
    neutralised_actual: int  # N^asr(W) - N^asr(W')
    newly_neutralised_actual: int  # #(success under W and not under W')
    certified: dict[str, dict[str, int]]  # bracket kind -> counts
    sound: bool

    @property
    def paper_rejections(self) -> dict[str, int]:
        """Paper's count definition (7.1): ``R'_b - R_b`` and ``R'_c - R_c`` (either may be < 0)."""
        return {
            "backdoor": self.defense["rejected_backdoor"] - self.no_defense["rejected_backdoor"],
            "clean": self.defense["rejected_clean"] - self.no_defense["rejected_clean"],
        }


@dataclass(frozen=True)
class PairProbabilities:
    """What Corollary 1 needs of the pair ``(W, W')`` at every ``tau``: ``p = s(Wx)``, ``q =
    s(W'x)`` on the clean (``_c``) and backdoor (``_b``) sets, the brackets of each kind, and
    whether every bracket contains ``q`` (within 1e-12 relative)."""

    p_c: np.ndarray
    p_b: np.ndarray
    q_c: np.ndarray
    q_b: np.ndarray
    brackets: dict[str, tuple[ProbabilityBracket, ProbabilityBracket]]  # kind -> (backdoor, clean)
    brackets_contain_q: bool


def pair_probabilities(
    W: np.ndarray, W_prime: np.ndarray, X_clean: np.ndarray, X_backdoor: np.ndarray
) -> PairProbabilities:
    """``p``, ``q`` and the brackets from ``z = Wx`` and ``u = (W'-W)x`` (module docstring);
    independent of tau.
    """
    delta_W = W_prime - W
    z_c, z_b = X_clean @ W.T, X_backdoor @ W.T
    u_c, u_b = X_clean @ delta_W.T, X_backdoor @ delta_W.T
    p_c, p_b = np.exp(log_softmax(z_c, axis=1)), np.exp(log_softmax(z_b, axis=1))
    q_c, q_b = np.exp(log_softmax(z_c + u_c, axis=1)), np.exp(log_softmax(z_b + u_b, axis=1))
    brackets, contain = {}, True
    for kind in BRACKETS:
        brackets[kind] = (probability_bracket(z_b, u_b, kind), probability_bracket(z_c, u_c, kind))
        for bracket, q in zip(brackets[kind], (q_b, q_c), strict=True):
            contain &= bool(
                np.all(bracket.lower <= q * (1 + 1e-12))
                and np.all(q <= bracket.upper * (1 + 1e-12))
            )
    return PairProbabilities(
        p_c=p_c, p_b=p_b, q_c=q_c, q_b=q_b, brackets=brackets, brackets_contain_q=contain
    )


def corollary_counts(
    W: np.ndarray,
    W_prime: np.ndarray,
    X_clean: np.ndarray,
    y_clean: np.ndarray,
    X_backdoor: np.ndarray,
    target: int,
    tau: float,
    pair: PairProbabilities | None = None,
) -> CorollaryCounts:
    """Actual and certified counts at threshold ``tau`` (THEORY.md 7.2-7.3). ``sound`` is True iff
    every certified set is contained in the corresponding actual set and every bracket contains
    the true ``p'`` (within 1e-12 relative). ``pair``: :func:`pair_probabilities` of the same
    arguments, computed once for several ``tau``."""
    pair = pair_probabilities(W, W_prime, X_clean, X_backdoor) if pair is None else pair
    p_b, q_c, q_b = pair.p_b, pair.q_c, pair.q_b
    target_labels = np.full(len(X_backdoor), check_class("target", target, W.shape[0]))
    success_before = accepted_as(p_b, target_labels, tau)
    success_after = accepted_as(q_b, target_labels, tau)
    actual_neutralised = ~success_after
    actual_kept = accepted_as(q_c, y_clean, tau)
    actual_rejected = q_b.max(axis=1) < tau
    certified: dict[str, dict[str, int]] = {}
    sound = pair.brackets_contain_q
    for kind in BRACKETS:
        bracket_b, bracket_c = pair.brackets[kind]
        neutralised = certified_neutralised(bracket_b, target, tau)
        kept = certified_kept(bracket_c, y_clean, tau)
        rejected = certified_rejected(bracket_b, tau)
        certified[kind] = {
            "neutralised": int(neutralised.sum()),
            "newly_neutralised": int((neutralised & success_before).sum()),
            "kept": int(kept.sum()),
            "rejected": int(rejected.sum()),
        }
        sound &= bool(
            np.all(actual_neutralised[neutralised])
            and np.all(actual_kept[kept])
            and np.all(actual_rejected[rejected])
        )
    return CorollaryCounts(
        tau=float(tau),
        no_defense=code_semantics_counts(pair.p_c, y_clean, p_b, target, tau),
        defense=code_semantics_counts(q_c, y_clean, q_b, target, tau),
        neutralised_actual=int(success_before.sum() - success_after.sum()),
        newly_neutralised_actual=int((success_before & ~success_after).sum()),
        certified=certified,
        sound=sound,
    )


def robust_target_upper(
    model: FrozenResidualModel,
    W: np.ndarray,
    X_backdoor: np.ndarray,
    target: int,
    eps: float,
    route: str = "jensen",
    per_sample: bool = False,
    support: np.ndarray | None = None,
    block: int = 16,
) -> np.ndarray:
    """Upper bound on ``p'_T`` valid for every trigger error in the ``\\varepsilon``-ball of the
    frozen model (module docstring, THEORY.md 7.3). ``route`` is ``"jensen"`` or ``"theorem1"``."""
    if route not in ("jensen", "theorem1"):
        raise ValueError(f"unknown route {route!r}; choose 'jensen' or 'theorem1'")
    X = check_matrix("X_backdoor", X_backdoor)
    target = check_class("target", target, W.shape[0])
    support = check_support(support, X.shape[1])
    log_p = log_softmax(X @ W.T, axis=1)
    u0 = model.logit_change(X)
    norms = np.abs(X[:, support]).sum(axis=1)
    if route == "theorem1":
        spread = model.spread(per_sample)[:, target]
        exponent = np.max(
            u0[:, [target]] - u0 + model.eta_a * eps * norms[:, None] * spread[None, :], axis=1
        )
        return np.exp(log_p[:, target] + exponent)
    a = np.exp(log_p)
    a[:, target] -= 1.0
    if (
        per_sample
    ):  # |a_i^T r_j| summed over j, ``block`` rows of a at a time (small blocks stay in cache)
        sensitivity = np.concatenate(
            [_abs_row_sums(a[i : i + block] @ model.residuals.T) for i in range(0, len(X), block)]
        )
    else:
        sensitivity = np.abs(a @ model.rho)
    jensen_worst = np.einsum("ik,ik->i", a, u0) - model.eta_a * eps * norms * sensitivity
    return np.exp(log_p[:, target] - jensen_worst)


def _abs_row_sums(M: np.ndarray) -> np.ndarray:
    """``sum_j |M_ij|`` per row (``M`` overwritten with ``|M|``)."""
    return np.abs(M, out=M).sum(axis=1)


def robust_certified_counts(
    model: FrozenResidualModel,
    W: np.ndarray,
    X_backdoor: np.ndarray,
    target: int,
    eps_values: np.ndarray,
    tau: float,
    route: str = "jensen",
    per_sample: bool = False,
    support: np.ndarray | None = None,
) -> np.ndarray:
    """``\\#\\{i: U^{rob}_T(\\varepsilon) < \\tau\\}`` for each ``\\varepsilon`` (non-increasing in
    it).
    """
    return np.array(
        [
            int(
                (
                    robust_target_upper(
                        model, W, X_backdoor, target, float(e), route, per_sample, support
                    )
                    < tau
                ).sum()
            )
            for e in np.asarray(eps_values)
        ]
    )
