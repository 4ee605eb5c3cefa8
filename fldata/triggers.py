"""Backdoor triggers and how they are applied to images (paper eq. 1; THEORY.md section 2).

A trigger is a mask ``m`` in [0,1]^(H x W), shared over channels, and a pattern ``p`` in
[0,1]^(C x H x W). Stamping an image ``x`` (float, in [0,1], channel-first) gives

    A_{m,p}(x) = (1 - m) * x + m * p                         (paper eq. 1)

for a single image (C,H,W) or a batch (N,C,H,W); ``m`` broadcasts over channels and batch.
The theory's proof uses the additive form ``A_t(x) = x + t`` (:func:`apply_additive`).

numpy and torch. This module never imports torch. :func:`stamp` and :func:`apply_additive` use
only arithmetic and broadcasting, so they work unchanged on torch tensors when the caller passes
mask and pattern as tensors of the same device/dtype, e.g.
``stamp(x, torch.as_tensor(trig.mask, dtype=x.dtype, device=x.device), torch.as_tensor(...))``.
:meth:`Trigger.stamp` and :func:`poison_batch` do that conversion themselves (duck-typed through
``tensor.new_tensor``), so ``trigger.stamp(tensor_batch)`` also works; a :class:`Trigger` may also
hold tensors directly (built once on the training device, then used without per-batch copies).

Ground-truth triggers: :func:`dba_trigger` (the 4-piece DBA bars of the released code, scalable
for paper App. A.8) and :func:`random_trigger` (random white / colourful shapes, paper App. A.12).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

__all__ = [
    "Trigger",
    "stamp",
    "apply_additive",
    "dba_trigger",
    "dba_piece_boxes",
    "poison_batch",
    "random_trigger",
]


def _is_tensor(values: Any) -> bool:
    """True for torch tensors (duck-typed, so this module never imports torch)."""
    return hasattr(values, "detach") and hasattr(values, "new_tensor")


def _to_numpy(values: Any) -> np.ndarray:
    """A numpy view/copy of ``values`` (torch tensors are detached and moved to the CPU)."""
    return values.detach().cpu().numpy() if _is_tensor(values) else np.asarray(values)


def _validated_values(values: Any, what: str, ndim: int, layout: str) -> Any:
    """Check ``values`` (numpy-like or tensor): ``ndim`` dims, finite, in [0, 1].

    numpy-like input is returned as a private float64 copy; tensors are returned unchanged.
    """
    array = _to_numpy(values)
    if array.ndim != ndim:
        raise ValueError(f"Trigger {what} must be {ndim}-D {layout}; got shape {array.shape}.")
    if array.dtype.kind not in "fiub":
        raise ValueError(f"Trigger {what} must be numeric in [0, 1]; got dtype {array.dtype}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"Trigger {what} contains NaN or inf; all entries must be finite in [0, 1]."
        )
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"Trigger {what} has values in [{array.min():g}, "
            f"{array.max():g}]; allowed range is [0, 1]."
        )
    return values if _is_tensor(values) else np.array(array, dtype=np.float64, copy=True)


@dataclass(frozen=True, eq=False)
class Trigger:
    """A stamp trigger ``(m, p)``: ``A_{m,p}(x) = (1 - m) * x + m * p`` (paper eq. 1).

    Attributes:
        mask: (H, W) in [0, 1], shared over channels.
        pattern: (C, H, W) in [0, 1].
        name: free-form label used in logs and saved results.

    The constructor validates shapes and ranges (``ValueError`` naming the problem). numpy-like
    inputs are stored as private float64 copies (not flagged read-only, so ``torch.as_tensor``
    accepts them without a warning); treat them as immutable. torch tensors (e.g. a trigger
    pre-moved to the GPU) are stored as given; :meth:`stamp` then uses them without a copy when
    the images have the same device and dtype.
    """

    mask: np.ndarray
    pattern: np.ndarray
    name: str = "trigger"

    def __post_init__(self) -> None:
        mask = _validated_values(self.mask, "mask", 2, "(H, W)")
        pattern = _validated_values(self.pattern, "pattern", 3, "(C, H, W)")
        if tuple(pattern.shape[1:]) != tuple(mask.shape):
            raise ValueError(
                f"Trigger pattern (C, H, W) = {tuple(pattern.shape)} does not match mask (H, W) = "
                f"{tuple(mask.shape)}: H and W must be equal."
            )
        if min(pattern.shape) < 1:
            raise ValueError(
                f"Trigger must have C, H, W >= 1; got pattern shape {tuple(pattern.shape)}."
            )
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "pattern", pattern)

    def __eq__(self, other: object) -> bool:
        """Equal iff same name and element-wise identical mask and pattern."""
        if not isinstance(other, Trigger):
            return NotImplemented
        return (
            self.name == other.name
            and np.array_equal(_to_numpy(self.mask), _to_numpy(other.mask))
            and np.array_equal(_to_numpy(self.pattern), _to_numpy(other.pattern))
        )

    __hash__ = None  # type: ignore[assignment]  # holds mutable arrays

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape (C, H, W) this trigger applies to."""
        channels, height, width = self.pattern.shape
        return int(channels), int(height), int(width)

    def stamp(self, images: Any) -> Any:
        """Return ``(1 - m) * x + m * p`` for one image (C,H,W) or a batch (N,C,H,W).

        Accepts a float numpy array or a float torch tensor; mask and pattern are converted to
        the images' type, dtype and device, so the result has them too. The input is not modified.
        """
        _check_image_shape(images, self.shape)
        mask, pattern = _like(images, self.mask), _like(images, self.pattern)
        return stamp(images, mask, pattern)

    def flat_delta_support(self) -> np.ndarray:
        """Boolean (C*H*W,) numpy vector, True where ``m > 0`` (the mask broadcast over channels).

        Flattened in C order of (C, H, W), i.e. the layout of ``image.reshape(-1)``: the
        coordinates a stamped-input error ``delta`` can touch when the mask is right
        (THEORY.md sections 2 and 6.6).
        """
        positive = _to_numpy(self.mask) > 0
        return np.broadcast_to(positive, (self.shape[0], *positive.shape)).reshape(-1).copy()

    def num_pixels(self) -> int:
        """Number of (H, W) positions with ``m > 0``."""
        return int(np.count_nonzero(_to_numpy(self.mask)))


def stamp(images: Any, mask: Any, pattern: Any) -> Any:
    """``A_{m,p}(x) = (1 - m) * x + m * p`` (paper eq. 1), broadcasting over leading dims.

    Args:
        images: (C,H,W) or (N,C,H,W), float, numpy or torch.
        mask: (H, W), same array library as ``images``.
        pattern: (C, H, W), same array library as ``images``.

    Pure arithmetic: no validation and no copy of the input, so it also works on torch tensors
    (convert mask/pattern with ``torch.as_tensor(..., dtype=x.dtype, device=x.device)``).
    """
    return (1 - mask) * images + mask * pattern


def apply_additive(images: Any, t: Any) -> Any:
    """The theory's additive trigger ``A_t(x) = x + t`` (THEORY.md section 2), no clipping.

    ``t`` must broadcast against the trailing dims of ``images`` (e.g. (C,H,W) for images, or
    (d,) for flattened inputs). Works on numpy arrays and torch tensors.
    """
    return images + t


# --- DBA-style ground-truth trigger --------------------------------------------------------------

# Canonical layouts of the released code (ALGORITHMS.md "Federated setup"):
# (bar length, column gap between the two bars of a row, row gap between the two bar rows).
#  28x28: bars at (row 0, cols 0-3), (0, 6-9), (3, 0-3), (3, 6-9)  -> length 4, col gap 2, row gap 2
# 32x32: bars at (row 0, cols 0-5), (0, 9-14), (4, 0-5), (4, 9-14) -> length 6, col gap 3, row gap 3
_DBA_LAYOUTS: dict[tuple[int, int], tuple[int, int, int]] = {
    (28, 28): (4, 2, 2),
    (32, 32): (6, 3, 3),
}
NUM_DBA_PIECES = 4


def _dba_layout(height: int, width: int) -> tuple[int, int, int]:
    """Canonical layout for 28x28 and 32x32; proportional to the 28x28 one otherwise."""
    if (height, width) in _DBA_LAYOUTS:
        return _DBA_LAYOUTS[(height, width)]
    # Generic rule (documented in dba_trigger): scale the 28x28 layout by the image size.
    length = max(1, round(4 * width / 28))
    col_gap = max(1, round(2 * width / 28))
    row_gap = max(1, round(2 * height / 28))
    return length, col_gap, row_gap


def dba_piece_boxes(height: int, width: int, scale: int = 1) -> list[tuple[int, int, int, int]]:
    """Pixel boxes ``(row_start, row_stop, col_start, col_stop)`` (half-open) of the 4 DBA pieces.

    Piece order: 0 = top-left, 1 = top-right, 2 = bottom-left, 3 = bottom-right.
    See :func:`dba_trigger` for the layout and the meaning of ``scale``.

    Raises:
        ValueError: if ``scale < 1`` or the scaled trigger does not fit in ``height x width``.
    """
    _require_int(scale, "scale (trigger size 1X, 2X, ...)", minimum=1)
    if height < 1 or width < 1:
        raise ValueError(f"image height and width must be >= 1; got {height}x{width}.")
    length, col_gap, row_gap = _dba_layout(height, width)
    thickness = int(scale)
    needed_rows = 2 * thickness + row_gap
    needed_cols = 2 * length + col_gap
    if needed_rows > height or needed_cols > width:
        largest = (height - row_gap) // 2 if needed_cols <= width else 0
        hint = (
            f"the largest scale that fits is {largest}"
            if largest >= 1
            else "no scale fits this image"
        )
        raise ValueError(
            f"DBA trigger at scale {scale} needs {needed_rows}x{needed_cols} pixels (bars "
            f"{thickness}x{length}, row gap {row_gap}, column gap {col_gap}) but the image is "
            f"{height}x{width}; {hint}."
        )
    top, bottom = 0, thickness + row_gap
    left, right = 0, length + col_gap
    return [
        (row, row + thickness, col, col + length) for row in (top, bottom) for col in (left, right)
    ]


def dba_trigger(
    image_shape: tuple[int, int, int],
    pieces: int | tuple[int, ...] | None = None,
    scale: int = 1,
) -> Trigger:
    """The DBA-style distributed trigger of the released code (ALGORITHMS.md "Federated setup").

    Four horizontal bars, pixels set to 1.0 on all channels (mask 1, pattern 1 there):

    * 28x28 (MNIST, F-MNIST): 1x4 bars at (row 0, cols 0-3), (0, 6-9), (3, 0-3), (3, 6-9);
    * 32x32 (CIFAR-10): 1x6 bars at (row 0, cols 0-5), (0, 9-14), (4, 0-5), (4, 9-14);
    * other sizes (e.g. 8x8 digits): the 28x28 layout scaled proportionally, i.e. bar length
      ``max(1, round(4W/28))``, column gap ``max(1, round(2W/28))``, row gap ``max(1,
      round(2H/28))``.

    Trigger size (paper App. A.8, sizes 1X, 2X, 4X, 6X, 8X): ``scale = s`` multiplies the pixel
    count of every piece by ``s`` by making each bar ``s`` rows thick; bar length and the gaps
    between bars stay fixed, so the second row of bars starts at row ``s + row_gap``.
    (Scaling the bar length instead would not fit 8X on a 28x28 image: 8 * 4 = 32 > 28.)
    With this rule 28x28 images fit up to 13X and 32x32 images up to 14X.

    Args:
        image_shape: (C, H, W) of the images.
        pieces: None -> all 4 pieces (the test-time trigger); int k in 0..3 -> piece k only
            (attacker k's local trigger in the DBA split); tuple of ints -> the union of those
            pieces.
        scale: integer trigger size multiplier >= 1.

    Raises:
        ValueError: bad shape, bad piece index, scale < 1, or the scaled trigger does not fit.
    """
    channels, height, width = _validated_image_shape(image_shape)
    boxes = dba_piece_boxes(height, width, scale)
    if pieces is None:
        selected: tuple[int, ...] = tuple(range(NUM_DBA_PIECES))
    elif isinstance(pieces, (int, np.integer)) and not isinstance(pieces, bool):
        selected = (int(pieces),)
    else:
        selected = tuple(int(k) for k in cast("Iterable[int]", pieces))
    if not selected or any(k < 0 or k >= NUM_DBA_PIECES for k in selected):
        raise ValueError(
            f"pieces must be None, an int in 0..{NUM_DBA_PIECES - 1}, or a non-empty tuple of such "
            f"ints; got {pieces!r}."
        )
    mask = np.zeros((height, width))
    for k in selected:
        row_start, row_stop, col_start, col_stop = boxes[k]
        mask[row_start:row_stop, col_start:col_stop] = 1.0
    pattern = np.broadcast_to(mask, (channels, height, width))
    piece_name = "all" if pieces is None else "+".join(str(k) for k in selected)
    return Trigger(mask=mask, pattern=pattern, name=f"dba[{piece_name}]x{scale}")


def random_trigger(
    image_shape: tuple[int, int, int], num_pixels: int, colourful: bool, seed: int
) -> Trigger:
    """A random-shape trigger for the oracle baselines of paper App. A.12 (Table 10).

    ``num_pixels`` distinct (H, W) positions drawn uniformly without replacement with
    ``np.random.default_rng(seed)``; mask 1 there. Pattern: 1.0 on all channels ("random white")
    or, if ``colourful``, an independent Uniform[0, 1] value per channel and pixel ("random
    colourful"). Pass ``num_pixels = dba_trigger(shape).num_pixels()`` to match the
    ground-truth trigger's size.

    Raises:
        ValueError: if ``num_pixels`` is not in 1..H*W or the shape is invalid.
    """
    channels, height, width = _validated_image_shape(image_shape)
    _require_int(num_pixels, "num_pixels", minimum=1)
    if num_pixels > height * width:
        raise ValueError(f"num_pixels must be in 1..{height * width} (H*W); got {num_pixels}.")
    rng = np.random.default_rng(seed)
    positions = rng.choice(height * width, size=int(num_pixels), replace=False)
    flat_mask = np.zeros(height * width)
    flat_mask[positions] = 1.0
    mask = flat_mask.reshape(height, width)
    if colourful:
        pattern = rng.uniform(0.0, 1.0, size=(channels, height, width)) * mask
        name = f"random-colourful[{num_pixels}]"
    else:
        pattern = np.broadcast_to(mask, (channels, height, width))
        name = f"random-white[{num_pixels}]"
    return Trigger(mask=mask, pattern=pattern, name=name)


# --- Poisoning -----------------------------------------------------------------------------------


def poison_batch(
    images: Any, labels: Any, trigger: Trigger, target: int, num_poison: int
) -> tuple[Any, Any]:
    """Stamp the FIRST ``num_poison`` samples of a batch and relabel them to ``target``.

    The released code poisons the first 20 of every 64-sample batch (MNIST/F-MNIST), 5 of 64 on
    CIFAR-10 (ALGORITHMS.md "Federated setup"). If the batch has fewer than ``num_poison``
    samples, all of them are poisoned.

    Args:
        images: (N, C, H, W) float numpy array or torch tensor.
        labels: (N,) integer numpy array or torch tensor.
        trigger: the trigger to stamp.
        target: the attack's target label.
        num_poison: how many leading samples to poison (>= 0).

    Returns:
        ``(images', labels')``: new arrays/tensors of the input types (``.clone()`` for tensors,
        ``.copy()`` for arrays); the inputs are not modified.
    """
    _require_int(num_poison, "num_poison", minimum=0)
    _require_int(target, "target (class index)", minimum=0)
    if len(images.shape) != 4:
        raise ValueError(
            f"poison_batch expects a batch (N, C, H, W); got images of shape {tuple(images.shape)}."
        )
    if tuple(labels.shape) != (images.shape[0],):
        raise ValueError(
            f"labels must have shape (N,) = ({images.shape[0]},) to match images; got "
            f"{tuple(labels.shape)}."
        )
    poisoned_images, poisoned_labels = _copy(images), _copy(labels)
    count = min(int(num_poison), int(images.shape[0]))
    if count:
        poisoned_images[:count] = trigger.stamp(images[:count])
        poisoned_labels[:count] = int(target)
    return poisoned_images, poisoned_labels


# --- helpers -------------------------------------------------------------------------------------


def _require_int(value: Any, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")


def _validated_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"image_shape must be (C, H, W) with all entries >= 1; got {tuple(image_shape)}."
        )
    return shape  # type: ignore[return-value]


def _check_image_shape(images: Any, expected: tuple[int, int, int]) -> None:
    shape = tuple(int(s) for s in images.shape)
    if len(shape) not in (3, 4) or shape[-3:] != expected:
        raise ValueError(
            f"images must have shape (C,H,W) or (N,C,H,W) with (C,H,W) = {expected}; got {shape}."
        )
    is_float = (
        images.is_floating_point()
        if hasattr(images, "is_floating_point")
        else (np.issubdtype(np.asarray(images).dtype, np.floating))
    )
    if not is_float:
        raise ValueError(
            f"images must be floating point in [0, 1] (got dtype {images.dtype}); convert uint8 "
            "images with fldata.datasets.to_float_chw first."
        )


def _like(images: Any, values: Any) -> Any:
    """``values`` converted to the array type, dtype and device of ``images`` (torch duck-typed).

    No copy when they already match (a tensor trigger on the images' device, or float64 arrays).
    """
    if _is_tensor(images):
        if _is_tensor(values):
            return values.to(device=images.device, dtype=images.dtype)
        return images.new_tensor(values)
    return _to_numpy(values).astype(images.dtype, copy=False)


def _copy(array: Any) -> Any:
    return array.clone() if hasattr(array, "clone") else np.array(array, copy=True)
