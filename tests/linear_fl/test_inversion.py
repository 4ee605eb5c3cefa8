"""Stamped-input identities, the inversion objective's analytic gradient, and trigger recovery."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import approx_fprime

from fldata.inversion import InversionResult
from fldata.triggers import Trigger, stamp
from linear_fl.attack import poisoned_gradient
from linear_fl.data import stamp_flat
from linear_fl.inversion import inversion_objective, invert_trigger
from linear_fl.model import augment, logits, mean_gradient, mean_loss
from linear_fl.stamped import augmented_mask_pattern, hardened_mean_gradient, stamped_logits
from linear_fl.trigger_error import linf_error, mask_overlap, per_sample_delta

SHAPE = (2, 3, 4)  # C, H, W: exercises the mask shared over channels


def _random_problem(seed=0, n=7, c=5):
    rng = np.random.default_rng(seed)
    d = int(np.prod(SHAPE))
    W = rng.normal(size=(c, d + 1))
    Xa = augment(rng.uniform(size=(n, d)))
    trig = Trigger(mask=rng.uniform(size=SHAPE[1:]), pattern=rng.uniform(size=SHAPE))
    return rng, W, Xa, trig


def test_fused_stamped_logits_and_gradient_match_explicit_stamping():
    rng, W, Xa, trig = _random_problem()
    y = rng.integers(0, W.shape[0], size=Xa.shape[0])
    Xhat = stamp_flat(Xa, trig, SHAPE)
    assert np.all(Xhat[:, -1] == 1.0)
    assert np.allclose(stamped_logits(W, Xa, trig), logits(W, Xhat), atol=1e-12)
    m_aug, mp_aug = augmented_mask_pattern(trig.mask, trig.pattern)
    fused = hardened_mean_gradient(W, Xa, y, m_aug, mp_aug, 0.7, 1.3)
    explicit = 0.7 * mean_gradient(W, Xa, y) + 1.3 * mean_gradient(W, Xhat, y)
    assert np.allclose(fused, explicit, atol=1e-12)


def test_inversion_objective_value_and_gradient():
    rng, W, Xa, _ = _random_problem(1)
    H, Wd = SHAPE[1:]
    v = rng.uniform(size=H * Wd + int(np.prod(SHAPE)))
    lam, target = 0.05, 3
    f, g = inversion_objective(v, W, Xa, target, SHAPE, lam)
    mask, pattern = v[: H * Wd].reshape(H, Wd), v[H * Wd :].reshape(SHAPE)
    pixels = Xa[:, :-1].reshape((-1, *SHAPE))
    stamped = augment(np.asarray(stamp(pixels, mask, pattern)).reshape(Xa.shape[0], -1))
    assert abs(f - (mean_loss(W, stamped, np.full(Xa.shape[0], target)) + lam * mask.sum())) < 1e-12
    num = approx_fprime(v, lambda u: inversion_objective(u, W, Xa, target, SHAPE, lam)[0], 1e-7)
    assert np.max(np.abs(num - g)) < 1e-5


def test_linf_error_is_exact_max_over_samples():
    rng, _, Xa, rec = _random_problem(2, n=50)
    true = Trigger(mask=(rng.uniform(size=SHAPE[1:]) > 0.6).astype(float), pattern=np.ones(SHAPE))
    delta = per_sample_delta(Xa, rec, true, SHAPE)
    assert np.all(delta[:, -1] == 0.0)
    pix = Xa[:, :-1]
    assert abs(linf_error(pix.min(0), pix.max(0), rec, true) - np.abs(delta).max()) < 1e-12
    iou, top = mask_overlap(true.mask, true.mask)
    assert iou == 1.0 and top == 1.0


@pytest.mark.slow
def test_inversion_recovers_a_known_backdoor(small_setup):
    """Implant a strong backdoor (target 0) by poisoned training, then invert every class blind."""
    s = small_setup
    grad = poisoned_gradient(
        s.malicious, s.true_trigger, s.image_shape, target=0, poison_fraction=20 / 64
    )
    W = s.W0.copy()
    for _ in range(40):
        W -= 1.0 * grad(W, np.arange(s.malicious.n))
    res = invert_trigger(
        W, s.benign.Xa[:600], s.benign.y[:600], s.image_shape, range(10), lambda_l1=0.03, maxiter=30
    )
    iou, top = mask_overlap(res.trigger.mask, s.true_trigger.mask)
    print(
        f"selected {res.selected_target} mask L1 {res.per_class[0].mask_l1:.1f} IoU {iou:.2f} "
        f"top-k {top:.2f}"
    )
    assert res.selected_target == 0
    assert top >= 0.75 and iou >= 0.5
    # label-specific source -> target inversion: only source-class samples, the source is not a
    # candidate
    pair = invert_trigger(
        W,
        s.benign.Xa[:600],
        s.benign.y[:600],
        s.image_shape,
        range(10),
        lambda_l1=0.03,
        maxiter=30,
        source=7,
    )
    assert 7 not in pair.per_class and pair.source == 7
    assert pair.selected_target == 0


def test_poisoned_gradient_matches_fldata_poison_batch():
    from fldata.triggers import dba_trigger, poison_batch
    from linear_fl.data import ClientData

    rng = np.random.default_rng(4)
    shape = (1, 28, 28)
    Xa = augment(rng.uniform(size=(64, 784)))
    y = rng.integers(0, 10, size=64)
    W = rng.normal(size=(10, 785)) * 0.1
    trig = dba_trigger(shape)
    grad = poisoned_gradient(ClientData(Xa, y), trig, shape, target=0, poison_fraction=20 / 64)
    for idx in (rng.permutation(64), rng.permutation(64)[:32]):
        images, labels = poison_batch(
            Xa[idx, :-1].reshape(-1, *shape), y[idx], trig, 0, round(20 / 64 * len(idx))
        )
        reference = mean_gradient(
            W, augment(np.asarray(images).reshape(len(idx), -1)), np.asarray(labels)
        )
        assert np.allclose(grad(W, idx), reference, atol=1e-13)


def test_every_candidate_is_the_shared_inversion_result_type(small_setup) -> None:
    """linear_fl's inverter returns fldata.inversion.InversionResult per candidate, as deepfl's."""
    s = small_setup
    X, y = s.benign.Xa[:200], s.benign.y[:200]
    universal = invert_trigger(s.W0, X, y, s.image_shape, [1, 2], 0.03, maxiter=3)
    for target, result in universal.per_class.items():
        assert isinstance(result, InversionResult) and result.target == target
        assert result.source_classes == tuple(int(c) for c in np.unique(y) if c != target)
        assert result.success == (result.attack_acc >= 0.5) and result.steps <= 3
        assert result.objective == pytest.approx(result.final_loss + 0.03 * result.mask_l1)
    pair = invert_trigger(s.W0, X, y, s.image_shape, [1, 2], 0.03, maxiter=3, source=2)
    assert list(pair.per_class) == [1] and pair.per_class[1].source_classes == (2,)
