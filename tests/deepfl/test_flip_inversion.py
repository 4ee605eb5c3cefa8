"""FLIP trigger inversion and class distance on a model with a PLANTED DBA backdoor (real MNIST)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flip_fixtures import BackdooredSetup, backdoored_setup  # noqa: F401  (session fixture)

from deepfl.flip import FlipConfig, InversionRequest, invert, invert_abs_many, invert_many
from deepfl.flip.distance import pairs_by_distance, update_distance_matrix, warmup_distance_matrix
from deepfl.flip.inversion import SourceLossTracker, _per_source_variance

# Slow: every test uses the backdoored model fixture (~7 s to train).
pytestmark = pytest.mark.slow

CLIENT_SIZE = 600
TARGETS = (0, 1, 2, 3, 4)  # the backdoor target (0) and four others, to keep the test fast
CONFIG = FlipConfig(batch_size=16)


@pytest.fixture(scope="module")
def universal_results(backdoored_setup: BackdooredSetup):
    """The cached warm-up: one universal trigger per target, all of them in ONE batched
    inversion.
    """
    s = backdoored_setup
    images, labels = s.images[:CLIENT_SIZE], s.labels[:CLIENT_SIZE]
    requests = [InversionRequest(tuple(c for c in range(10) if c != t), t, seed=t) for t in TARGETS]
    return invert_many(s.model, images, labels, requests, config=CONFIG, steps=100)


def test_universal_inversion_recovers_planted_trigger(
    universal_results, backdoored_setup: BackdooredSetup
):
    truth = backdoored_setup.trigger.mask > 0
    result = universal_results[backdoored_setup.target]
    inside = float((result.trigger.mask * truth).sum() / result.trigger.mask.sum())
    area = float(truth.mean())
    print(
        f"mask mass inside the true trigger: {inside:.3f} (chance = area fraction {area:.3f}), "
        f"|m|_1 = {result.mask_l1:.1f}, attack acc = {result.attack_acc:.3f}"
    )
    assert result.success and result.attack_acc >= 0.9
    assert inside > 10 * area, "inverted mask should concentrate on the planted trigger's pixels"


def test_mask_size_distance_ranks_backdoor_target_closest(
    universal_results, backdoored_setup: BackdooredSetup
):
    target = backdoored_setup.target
    distance = warmup_distance_matrix(universal_results, 10, "mask_size")
    assert np.all(np.isnan(np.diag(distance)))
    print("mask L1 per target:", {r.target: round(r.mask_l1, 1) for r in universal_results})
    closest = pairs_by_distance(distance, "smallest")[:9]
    assert {t for _, t in closest} == {target}, (
        "the 9 pairs into the backdoor target must be the closest"
    )
    farthest = pairs_by_distance(distance, "largest")[0]
    assert farthest[1] != target


def test_loss_variance_distance_semantics(universal_results, backdoored_setup: BackdooredSetup):
    """Paper's distance: per-source loss variance. Flipping INTO the backdoor target is easy, so its
    column has a smaller mean loss variance than the typical other target."""
    distance = warmup_distance_matrix(universal_results, 10, "loss_variance")
    column_means = np.nanmean(distance[:, list(TARGETS)], axis=0)
    target = TARGETS.index(backdoored_setup.target)
    print(
        "mean loss variance per target:",
        dict(zip(TARGETS, np.round(column_means, 2), strict=True)),
    )
    assert np.all(np.isfinite(column_means))
    assert column_means[target] < np.median(np.delete(column_means, target))


def test_distance_update_moving_average(universal_results):
    distance = warmup_distance_matrix(universal_results, 10, "loss_variance")
    result = universal_results[3]
    old = distance[:, result.target].copy()
    updated = update_distance_matrix(distance, [result], "loss_variance", momentum=0.25)
    source = result.source_classes[0]
    expected = 0.75 * old[source] + 0.25 * result.per_source_loss_variance[source]
    assert updated[source, result.target] == pytest.approx(expected)
    untouched = np.ones_like(distance, dtype=bool)
    untouched[list(result.source_classes), result.target] = False
    np.testing.assert_array_equal(updated[untouched], distance[untouched])


def test_batched_inversion_equals_separate_inversions(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    images, labels = s.images[:300], s.labels[:300]
    requests = [
        InversionRequest((1, 2, 3), 0, seed=11),
        InversionRequest((4,), 7, seed=12),
        InversionRequest((5, 6), 9, seed=13),
    ]
    config = FlipConfig(batch_size=16, patience=3)
    batched = invert_many(s.model, images, labels, requests, config=config, steps=15)
    for request, together in zip(requests, batched, strict=True):
        alone = invert(
            s.model,
            images,
            labels,
            request.source_classes,
            request.target,
            config=config,
            steps=15,
            seed=request.seed,
        )
        np.testing.assert_allclose(together.trigger.mask, alone.trigger.mask, atol=1e-4)
        np.testing.assert_allclose(together.trigger.pattern, alone.trigger.pattern, atol=1e-4)
        assert together.success == alone.success
        assert together.attack_acc == pytest.approx(alone.attack_acc, abs=1e-6)


def test_inversion_rejects_bad_requests(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    with pytest.raises(ValueError, match="different from its target"):
        invert(s.model, s.images[:50], s.labels[:50], (0,), 0)
    keep = s.labels[:100] != 5
    with pytest.raises(ValueError, match="no local samples"):
        invert(s.model, s.images[:100][keep], s.labels[:100][keep], (5,), 1, steps=2)


def test_inversion_keeps_model_mode_and_weights(backdoored_setup: BackdooredSetup):
    model = backdoored_setup.clone_model()
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    invert(model, backdoored_setup.images[:64], backdoored_setup.labels[:64], (1, 2), 0, steps=3)
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


def test_sample_variance_reading_known_values():
    """Variance over samples (the other reading of the paper's distance): per step, the variance of
    the source's per-sample losses, averaged over the steps where it had >= 2 samples."""
    tracker = SourceLossTracker(
        steps=2, count=1, num_classes=2, device=torch.device("cpu"), dtype=torch.float64
    )
    owner = torch.zeros(3, dtype=torch.long)
    tracker.add(
        0, owner, torch.tensor([0, 0, 1]), torch.tensor([1.0, 3.0, 5.0], dtype=torch.float64)
    )
    tracker.add(
        1, owner, torch.tensor([0, 0, 0]), torch.tensor([2.0, 2.0, 8.0], dtype=torch.float64)
    )
    over_steps, over_samples = tracker.variances()
    assert over_samples[0, 0] == pytest.approx((np.var([1.0, 3.0]) + np.var([2.0, 2.0, 8.0])) / 2)
    assert np.isnan(over_samples[0, 1])  # class 1 never had 2 samples in a step
    assert over_steps[0, 0] == pytest.approx(np.var([2.0, 4.0]))


def test_per_source_variance_known_values():
    # 3 steps, 1 problem, 2 classes; class 1 absent at step 1.
    sums = torch.tensor([[2.0, 3.0], [4.0, 0.0], [6.0, 5.0]])
    counts = torch.tensor([[1.0, 1.0], [2.0, 0.0], [1.0, 1.0]])
    variance = _per_source_variance(sums, counts, 1, 2)
    np.testing.assert_allclose(variance[0], [np.var([2.0, 2.0, 6.0]), np.var([3.0, 5.0])])


def test_abs_inverter_candidates(backdoored_setup: BackdooredSetup):
    s = backdoored_setup
    config = FlipConfig(abs_steps=50, abs_num_candidates=3, batch_size=16)
    requests = [InversionRequest((1, 2, 3), s.target, seed=1), InversionRequest((4,), 5, seed=2)]
    candidates = invert_abs_many(s.model, s.images[:300], s.labels[:300], requests, config=config)
    assert [len(c) for c in candidates] == [3, 3]
    for group, request in zip(candidates, requests, strict=True):
        accs = [c.attack_acc for c in group]
        assert accs == sorted(accs, reverse=True)
        assert all(c.target == request.target and c.trigger.shape == (1, 28, 28) for c in group)
    sources = torch.isin(s.labels[:300], torch.tensor([1, 2, 3]))
    with torch.no_grad():
        unstamped = float((s.model(s.images[:300][sources]).argmax(1) == s.target).float().mean())
    print(
        f"ABS best attack acc toward the backdoor target: {candidates[0][0].attack_acc:.3f} "
        f"(unstamped: {unstamped:.3f}) after only 50 steps"
    )
    assert candidates[0][0].attack_acc > 0.3 > unstamped
    # ABS measures the same per-source loss variances as NC, so it feeds FLIP's distance matrix
    # (A.7)
    assert all(
        set(c.per_source_loss_variance) == set(r.source_classes)
        for c, r in zip([group[0] for group in candidates], requests, strict=True)
    )
