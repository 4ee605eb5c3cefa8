"""Helpers shared by the linear_fl tests: a small real-MNIST slice configuration."""

from __future__ import annotations

from linear_fl.config import LinearFLConfig

SMALL = dict(
    max_train_samples=4000,
    max_test_samples=1000,
    inversion_subsample=400,
    inversion_maxiter=8,
    pretrain_max_rounds=30,
)


def small_config(cache_dir: str, **changes) -> LinearFLConfig:
    return LinearFLConfig(cache_dir=cache_dir, **{**SMALL, **changes})
