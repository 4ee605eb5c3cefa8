"""Tests for fldata.triggers: stamping formula (paper eq. 1), DBA bars, poisoning, random
triggers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fldata.triggers import (
    Trigger,
    apply_additive,
    dba_piece_boxes,
    dba_trigger,
    poison_batch,
    random_trigger,
    stamp,
)


def _random_trigger_arrays(
    rng: np.random.Generator, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    channels, height, width = shape
    return rng.uniform(size=(height, width)), rng.uniform(size=(channels, height, width))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_stamp_matches_formula_per_pixel_single_and_batch(shape: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    mask, pattern = _random_trigger_arrays(rng, shape)
    batch = rng.uniform(size=(5, *shape))
    stamped = stamp(batch, mask, pattern)
    # Check pixel (n, c, i, j) against the scalar formula at a few explicit positions.
    for n, c, i, j in [(0, 0, 0, 0), (4, shape[0] - 1, 7, 3), (2, 0, shape[1] - 1, shape[2] - 1)]:
        expected = (1 - mask[i, j]) * batch[n, c, i, j] + mask[i, j] * pattern[c, i, j]
        assert stamped[n, c, i, j] == pytest.approx(expected, abs=1e-15)
    # A single image gives the same as the corresponding batch row.
    np.testing.assert_allclose(stamp(batch[3], mask, pattern), stamped[3], atol=0)
    trigger = Trigger(mask=mask, pattern=pattern)
    np.testing.assert_allclose(trigger.stamp(batch), stamped, atol=0)


def test_mask_zero_is_identity_and_mask_one_gives_pattern() -> None:
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(4, 3, 8, 8))
    pattern = rng.uniform(size=(3, 8, 8))
    np.testing.assert_array_equal(Trigger(np.zeros((8, 8)), pattern).stamp(images), images)
    fully_masked = Trigger(np.ones((8, 8)), pattern).stamp(images)
    np.testing.assert_array_equal(fully_masked, np.broadcast_to(pattern, images.shape))


def test_stamp_does_not_modify_input_and_keeps_float32() -> None:
    images = np.random.default_rng(2).uniform(size=(3, 1, 28, 28)).astype(np.float32)
    before = images.copy()
    out = dba_trigger((1, 28, 28)).stamp(images)
    np.testing.assert_array_equal(images, before)
    assert out.dtype == np.float32


def test_apply_additive_is_plain_sum() -> None:
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=(6, 784)), rng.normal(size=784)
    shifted = apply_additive(x, t)
    assert shifted.shape == x.shape
    assert shifted[2, 5] == x[2, 5] + t[5]
    np.testing.assert_allclose(shifted - x, np.broadcast_to(t, x.shape), atol=1e-14)


def test_stamp_error_with_correct_mask_is_sample_independent() -> None:
    """THEORY.md section 8 check 10: with m_hat = m, delta_j = m * (p_hat - p) for every sample."""
    rng = np.random.default_rng(4)
    mask, pattern = _random_trigger_arrays(rng, (1, 28, 28))
    pattern_hat = rng.uniform(size=pattern.shape)
    images = rng.uniform(size=(7, 1, 28, 28))
    delta = stamp(images, mask, pattern_hat) - stamp(images, mask, pattern)
    expected = np.broadcast_to(mask * (pattern_hat - pattern), delta.shape)
    np.testing.assert_allclose(delta, expected, atol=1e-12)


EXPECTED_BARS = {
    (28, 28): [(0, range(0, 4)), (0, range(6, 10)), (3, range(0, 4)), (3, range(6, 10))],
    (32, 32): [(0, range(0, 6)), (0, range(9, 15)), (4, range(0, 6)), (4, range(9, 15))],
}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(28, 28), (32, 32)])
def test_dba_pieces_are_the_released_bars(size: tuple[int, int], channels: int) -> None:
    shape = (channels, *size)
    for piece, (row, cols) in enumerate(EXPECTED_BARS[size]):
        trigger = dba_trigger(shape, pieces=piece)
        expected = np.zeros(size)
        expected[row, list(cols)] = 1.0
        np.testing.assert_array_equal(trigger.mask, expected)
        np.testing.assert_array_equal(trigger.pattern, np.broadcast_to(expected, shape))
        assert trigger.shape == shape


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 8, 8)])
def test_dba_union_of_pieces_is_full_trigger(shape: tuple[int, int, int]) -> None:
    full = dba_trigger(shape)
    union = np.maximum.reduce([dba_trigger(shape, pieces=k).mask for k in range(4)])
    np.testing.assert_array_equal(union, full.mask)
    np.testing.assert_array_equal(dba_trigger(shape, pieces=(0, 1, 2, 3)).mask, full.mask)
    # Pieces are disjoint, so the full trigger has 4x a piece's pixel count.
    assert full.num_pixels() == 4 * dba_trigger(shape, pieces=0).num_pixels()
    pair = dba_trigger(shape, pieces=(1, 3))
    expected_pair = np.maximum(dba_trigger(shape, pieces=1).mask, dba_trigger(shape, pieces=3).mask)
    np.testing.assert_array_equal(pair.mask, expected_pair)


def test_dba_stamp_sets_trigger_pixels_to_one_and_leaves_others() -> None:
    images = np.random.default_rng(5).uniform(0.2, 0.8, size=(2, 3, 32, 32))
    stamped = dba_trigger((3, 32, 32)).stamp(images)
    assert np.all(stamped[:, :, 4, 9:15] == 1.0)
    assert np.all(stamped[:, :, 0, 0:6] == 1.0)
    untouched = np.ones((32, 32), bool)
    untouched[[0, 0, 4, 4], :] = True
    for row, cols in EXPECTED_BARS[(32, 32)]:
        untouched[row, list(cols)] = False
    np.testing.assert_array_equal(stamped[:, :, untouched], images[:, :, untouched])


@pytest.mark.parametrize("scale", [1, 2, 4, 6, 8])
def test_dba_scale_multiplies_pixel_count_and_keeps_gaps(scale: int) -> None:
    """Paper App. A.8 trigger sizes 1X..8X on MNIST: each bar becomes `scale` rows thick."""
    base = dba_trigger((1, 28, 28))
    scaled = dba_trigger((1, 28, 28), scale=scale)
    assert scaled.num_pixels() == scale * base.num_pixels()
    rows = np.flatnonzero(scaled.mask.any(axis=1))
    np.testing.assert_array_equal(rows, np.r_[0:scale, scale + 2 : 2 * scale + 2])
    cols = np.flatnonzero(scaled.mask.any(axis=0))
    np.testing.assert_array_equal(cols, np.r_[0:4, 6:10])
    # Piece 2 (bottom-left) starts right below the 2-row gap.
    assert dba_piece_boxes(28, 28, scale)[2] == (scale + 2, 2 * scale + 2, 0, 4)


def test_dba_scale_that_does_not_fit_raises() -> None:
    assert dba_trigger((1, 28, 28), scale=13).num_pixels() == 13 * 16
    with pytest.raises(ValueError, match="does not fit|needs"):
        dba_trigger((1, 28, 28), scale=14)
    with pytest.raises(ValueError, match="needs"):
        dba_trigger((3, 32, 32), scale=15)
    with pytest.raises(ValueError, match="scale"):
        dba_trigger((1, 28, 28), scale=0)


def test_dba_generic_layout_for_small_images() -> None:
    mask = dba_trigger((1, 8, 8)).mask
    expected = np.zeros((8, 8))
    expected[[0, 0, 2, 2], [0, 2, 0, 2]] = 1.0
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("pieces", [4, -1, (), (0, 5)])
def test_dba_bad_pieces_raise(pieces: object) -> None:
    with pytest.raises(ValueError, match="pieces"):
        dba_trigger((1, 28, 28), pieces=pieces)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mask", "pattern", "message"),
    [
        (np.zeros((4, 4, 1)), np.zeros((1, 4, 4)), "mask must be 2-D"),
        (np.zeros((4, 4)), np.zeros((4, 4)), "pattern must be 3-D"),
        (np.zeros((4, 4)), np.zeros((1, 4, 5)), "does not match"),
        (np.full((4, 4), 1.5), np.zeros((1, 4, 4)), r"allowed range is \[0, 1\]"),
        (np.zeros((4, 4)), np.full((1, 4, 4), -0.1), r"allowed range is \[0, 1\]"),
        (np.full((4, 4), np.nan), np.zeros((1, 4, 4)), "finite"),
    ],
)
def test_trigger_validation(mask: np.ndarray, pattern: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Trigger(mask=mask, pattern=pattern)


def test_trigger_equality_compares_arrays() -> None:
    assert dba_trigger((1, 28, 28)) == dba_trigger((1, 28, 28))
    assert dba_trigger((1, 28, 28), pieces=0) != dba_trigger((1, 28, 28), pieces=1)
    assert dba_trigger((1, 28, 28)) != dba_trigger((3, 28, 28))


def test_trigger_stores_float64_copies() -> None:
    mask = np.zeros((4, 4), dtype=np.float32)
    trigger = Trigger(mask=mask, pattern=np.zeros((1, 4, 4), dtype=np.float32))
    mask[0, 0] = 1.0
    assert trigger.mask[0, 0] == 0.0
    assert trigger.mask.dtype == np.float64 and trigger.pattern.dtype == np.float64


def test_stamp_rejects_wrong_shape_and_integer_images() -> None:
    trigger = dba_trigger((1, 28, 28))
    with pytest.raises(ValueError, match=r"\(C,H,W\)"):
        trigger.stamp(np.zeros((2, 3, 28, 28)))
    with pytest.raises(ValueError, match="floating point"):
        trigger.stamp(np.zeros((2, 1, 28, 28), dtype=np.uint8))


def test_flat_delta_support_matches_flattened_stamp_change() -> None:
    trigger = dba_trigger((3, 32, 32), pieces=2)
    support = trigger.flat_delta_support()
    assert support.shape == (3 * 32 * 32,) and support.dtype == bool
    assert support.sum() == 3 * trigger.num_pixels()
    # The coordinates a stamp can change are exactly the support (black image -> white bars).
    changed = (trigger.stamp(np.zeros((3, 32, 32))) != 0).reshape(-1)
    np.testing.assert_array_equal(changed, support)


def test_poison_batch_counts_labels_and_no_mutation() -> None:
    rng = np.random.default_rng(6)
    images = rng.uniform(size=(64, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, size=64)
    images_before, labels_before = images.copy(), labels.copy()
    trigger = dba_trigger((1, 28, 28), pieces=1)
    out_images, out_labels = poison_batch(images, labels, trigger, target=2, num_poison=20)
    np.testing.assert_array_equal(images, images_before)
    np.testing.assert_array_equal(labels, labels_before)
    assert np.all(out_labels[:20] == 2)
    np.testing.assert_array_equal(out_labels[20:], labels[20:])
    np.testing.assert_array_equal(out_images[:20], trigger.stamp(images[:20]))
    np.testing.assert_array_equal(out_images[20:], images[20:])
    assert out_images.dtype == np.float32 and out_labels.dtype == labels.dtype


def test_poison_batch_edge_counts() -> None:
    images = np.full((5, 1, 28, 28), 0.5)
    labels = np.arange(5)
    trigger = dba_trigger((1, 28, 28))
    _, none_labels = poison_batch(images, labels, trigger, target=9, num_poison=0)
    np.testing.assert_array_equal(none_labels, labels)
    all_images, all_labels = poison_batch(images, labels, trigger, target=9, num_poison=20)
    assert np.all(all_labels == 9) and np.all(all_images[:, 0, 0, :4] == 1.0)
    with pytest.raises(ValueError, match="num_poison"):
        poison_batch(images, labels, trigger, target=9, num_poison=-1)
    with pytest.raises(ValueError, match="labels"):
        poison_batch(images, labels[:3], trigger, target=9, num_poison=1)


def test_random_trigger_white_and_colourful() -> None:
    shape = (3, 32, 32)
    white = random_trigger(shape, num_pixels=24, colourful=False, seed=0)
    assert white.num_pixels() == 24
    np.testing.assert_array_equal(white.pattern, np.broadcast_to(white.mask, shape))
    colourful = random_trigger(shape, num_pixels=24, colourful=True, seed=0)
    on = colourful.mask > 0
    values = colourful.pattern[:, on]
    assert values.shape == (3, 24) and np.all((values >= 0) & (values <= 1))
    assert np.unique(values).size > 24  # not all white: independent colours per channel
    # Deterministic by seed, different across seeds.
    np.testing.assert_array_equal(
        random_trigger(shape, 24, True, seed=0).pattern, colourful.pattern
    )
    assert not np.array_equal(random_trigger(shape, 24, False, seed=1).mask, white.mask)
    with pytest.raises(ValueError, match="num_pixels"):
        random_trigger(shape, num_pixels=0, colourful=False, seed=0)
    with pytest.raises(ValueError, match="num_pixels"):
        random_trigger((1, 4, 4), num_pixels=17, colourful=False, seed=0)


@settings(max_examples=40, deadline=None)
@given(
    channels=st.sampled_from([1, 3]),
    height=st.integers(1, 6),
    width=st.integers(1, 6),
    batch=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_stamp_is_convex_combination(
    channels: int, height: int, width: int, batch: int, seed: int
) -> None:
    """Each stamped pixel lies between the image pixel and the pattern pixel (m in [0, 1])."""
    rng = np.random.default_rng(seed)
    mask, pattern = _random_trigger_arrays(rng, (channels, height, width))
    images = rng.uniform(size=(batch, channels, height, width))
    stamped = Trigger(mask, pattern).stamp(images)
    low, high = np.minimum(images, pattern), np.maximum(images, pattern)
    assert np.all(stamped >= low - 1e-12) and np.all(stamped <= high + 1e-12)


def test_torch_tensors_stamp_and_poison() -> None:
    import torch  # fldata stamps tensors for deepfl; torch (the deep extra) is in the test command

    trigger = dba_trigger((3, 32, 32), pieces=0)
    images_np = np.random.default_rng(7).uniform(size=(8, 3, 32, 32)).astype(np.float32)
    images = torch.from_numpy(images_np.copy())
    labels = torch.arange(8)
    # Free function with tensors converted by the caller.
    mask = torch.as_tensor(trigger.mask, dtype=images.dtype)
    pattern = torch.as_tensor(trigger.pattern, dtype=images.dtype)
    stamped = stamp(images, mask, pattern)
    assert isinstance(stamped, torch.Tensor)
    np.testing.assert_allclose(stamped.numpy(), trigger.stamp(images_np), atol=0)
    # Trigger.stamp converts itself.
    assert torch.equal(trigger.stamp(images), stamped)
    out_images, out_labels = poison_batch(images, labels, trigger, target=2, num_poison=5)
    assert isinstance(out_images, torch.Tensor) and out_images.dtype == torch.float32
    assert out_labels.tolist() == [2, 2, 2, 2, 2, 5, 6, 7]
    assert torch.equal(images, torch.from_numpy(images_np)) and labels.tolist() == list(range(8))
    assert torch.equal(out_images[:5], stamped[:5]) and torch.equal(out_images[5:], images[5:])
    # Additive form also works on tensors.
    assert torch.equal(apply_additive(images, pattern), images + pattern)


def test_trigger_holding_tensors() -> None:
    """deepfl builds a Trigger with mask/pattern already tensors on the training device."""
    import torch  # fldata stamps tensors for deepfl; torch (the deep extra) is in the test command

    base = dba_trigger((1, 28, 28), pieces=3)
    on_device = Trigger(
        mask=torch.as_tensor(base.mask, dtype=torch.float32),
        pattern=torch.as_tensor(base.pattern, dtype=torch.float32),
        name=base.name,
    )
    assert isinstance(on_device.mask, torch.Tensor) and on_device.shape == (1, 28, 28)
    assert on_device == base
    np.testing.assert_array_equal(on_device.flat_delta_support(), base.flat_delta_support())
    assert on_device.num_pixels() == base.num_pixels()
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    stamped = on_device.stamp(images)
    assert isinstance(stamped, torch.Tensor) and stamped.dtype == torch.float32
    np.testing.assert_allclose(stamped.numpy(), base.stamp(images.numpy()), atol=0)
    # numpy images with a tensor trigger give numpy back.
    assert isinstance(on_device.stamp(images.numpy()), np.ndarray)
    _, labels = poison_batch(
        images, torch.zeros(4, dtype=torch.long), on_device, target=7, num_poison=2
    )
    assert labels.tolist() == [7, 7, 0, 0]
    with pytest.raises(ValueError, match=r"allowed range is \[0, 1\]"):
        Trigger(mask=torch.full((28, 28), 2.0), pattern=torch.zeros(1, 28, 28))
    with pytest.raises(ValueError, match="does not match"):
        Trigger(mask=torch.zeros(28, 28), pattern=torch.zeros(1, 28, 27))
