"""Random instances for the theory property tests (hypothesis draws the seed, scales and sizes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from theory.frozen import HardeningRound


@dataclass(frozen=True)
class PairInstance:
    W: np.ndarray
    delta_W: np.ndarray
    X: np.ndarray
    y: np.ndarray


@st.composite
def pair_instances(
    draw, max_classes: int = 12, max_dim: int = 8, max_samples: int = 20
) -> PairInstance:
    """Models and samples over wide scales: weight and update scales 1e-3 .. 1e2, inputs 1e-2 ..
    1e1.
    """
    seed = draw(st.integers(0, 2**32 - 1))
    c = draw(st.integers(2, max_classes))
    d = draw(st.integers(1, max_dim))
    n = draw(st.integers(1, max_samples))
    w_scale = 10.0 ** draw(st.floats(-3, 2))
    dw_scale = 10.0 ** draw(st.floats(-3, 2))
    x_scale = 10.0 ** draw(st.floats(-2, 1))
    rng = np.random.default_rng(seed)
    return PairInstance(
        W=w_scale * rng.standard_normal((c, d)),
        delta_W=dw_scale * rng.standard_normal((c, d)),
        X=x_scale * rng.standard_normal((n, d)),
        y=rng.integers(0, c, n),
    )


def hardening_round(
    rng: np.random.Generator,
    c: int = 4,
    d: int = 6,
    n_B: int = 12,
    w_scale: float = 1.0,
    eps: float = 0.05,
    shared: bool = True,
    eta: float = 0.5,
    p_B: float = 0.5,
    convention: tuple[float, float] = (1.0, 1.0),
) -> HardeningRound:
    """A synthetic benign hardening round: inputs in [0,1] with a bias column (last, never
    perturbed), a true trigger stamped on the first two pixels, and a recovered trigger error of
    size eps."""
    X = np.concatenate([rng.uniform(0, 1, (n_B, d)), np.ones((n_B, 1))], axis=1)
    X_true = X.copy()
    X_true[:, :2] = 1.0
    if shared:
        delta = np.append(rng.uniform(-eps, eps, d), 0.0)
        X_hat = X_true + delta
    else:
        X_hat = X_true + np.concatenate(
            [rng.uniform(-eps, eps, (n_B, d)), np.zeros((n_B, 1))], axis=1
        )
    return HardeningRound(
        W_start=w_scale * rng.standard_normal((c, d + 1)),
        X_clean=X,
        y=rng.integers(0, c, n_B),
        X_true=X_true,
        X_hat=X_hat,
        eta=eta,
        p_B=p_B,
        lambda_c=convention[0],
        lambda_a=convention[1],
    )


@dataclass(frozen=True)
class BackdoorScenario:
    rnd: HardeningRound
    W: np.ndarray  # the no-defense model whose softmax enters T2-B and the corollary
    X_backdoor: np.ndarray  # test inputs stamped with the true trigger (bias column last)
    X_test: np.ndarray
    y_test: np.ndarray
    target: int
    support: np.ndarray  # every coordinate but the bias


def backdoor_scenario(
    rng: np.random.Generator,
    c: int = 4,
    d: int = 6,
    n_B: int = 40,
    n_test: int = 30,
    eta: float = 0.5,
    backdoor_strength: float = 6.0,
    shared: bool = True,
    eps: float = 0.0,
) -> BackdoorScenario:
    """A backdoored global model: the two trigger pixels push the target logit up, so the benign
    client's true-trigger residuals lower the target logit most (the T2-A premise tends to hold)."""
    target = int(rng.integers(0, c))
    W = 0.5 * rng.standard_normal((c, d + 1))
    W[target, :2] += backdoor_strength
    X = np.concatenate([rng.uniform(0, 1, (n_B, d)), np.ones((n_B, 1))], axis=1)
    X_true = X.copy()
    X_true[:, :2] = 1.0
    if shared:
        X_hat = X_true + np.append(rng.uniform(-eps, eps, d), 0.0)
    else:
        X_hat = X_true + np.concatenate(
            [rng.uniform(-eps, eps, (n_B, d)), np.zeros((n_B, 1))], axis=1
        )
    rnd = HardeningRound(
        W_start=W,
        X_clean=X,
        y=rng.integers(0, c, n_B),
        X_true=X_true,
        X_hat=X_hat,
        eta=eta,
        p_B=0.5,
    )
    X_test = np.concatenate([rng.uniform(0, 1, (n_test, d)), np.ones((n_test, 1))], axis=1)
    X_backdoor = X_test.copy()
    X_backdoor[:, :2] = 1.0
    support = np.ones(d + 1, dtype=bool)
    support[-1] = False
    return BackdoorScenario(
        rnd=rnd,
        W=W,
        X_backdoor=X_backdoor,
        X_test=X_test,
        y_test=rng.integers(0, c, n_test),
        target=target,
        support=support,
    )
